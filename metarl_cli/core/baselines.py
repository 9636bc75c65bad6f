"""The linear feature baseline used by MAML (Duan et al., 2016; Finn et al., 2017).

Features per step: [clip(obs, -10, 10), clip(obs)^2, t/100, (t/100)^2, (t/100)^3, 1]; the
weights are a ridge regression of the discounted returns, fitted per task on that task's
episodes and evaluated on the same episodes.
"""

from __future__ import annotations

import torch


def linear_features(obs: torch.Tensor) -> torch.Tensor:
    """Feature vectors for (..., T, obs_dim) observations, shape (..., T, 2 obs_dim + 4)."""
    o = obs.clamp(-10.0, 10.0)
    t = torch.arange(obs.shape[-2], dtype=obs.dtype, device=obs.device) / 100.0
    t = t.view(*([1] * (obs.dim() - 2)), -1, 1).expand(*obs.shape[:-1], 1)
    return torch.cat([o, o**2, t, t**2, t**3, torch.ones_like(t)], dim=-1)


def fit_linear_baseline(obs: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor,
                        reg: float = 1e-5, retries: int = 5) -> torch.Tensor:
    """Fit one linear baseline per task and return its values on the same steps.

    Shapes: obs (N, R, T, d), returns and mask (N, R, T) -> values (N, R, T). A task's ridge
    term grows tenfold while its solve fails or is not finite (a singular design matrix).
    """
    feats = linear_features(obs).double() * mask.double().unsqueeze(-1)
    n, r, t, k = feats.shape
    x = feats.reshape(n, r * t, k)
    y = (returns.double() * mask.double()).reshape(n, r * t, 1)
    xtx, xty = x.transpose(1, 2) @ x, x.transpose(1, 2) @ y
    weights = torch.stack([_ridge_solve(a, b, reg, retries)
                           for a, b in zip(xtx, xty, strict=True)])
    return (x @ weights).reshape(n, r, t).to(returns.dtype) * mask


def _ridge_solve(xtx: torch.Tensor, xty: torch.Tensor, reg: float, retries: int
                 ) -> torch.Tensor:
    """(X^T X + reg I)^-1 X^T y for one task.

    One task at a time: torch 2.13's CPU build raises from a batched LU solve of matrices of
    about 200 rows and more (the Ant's 214 features) once the intra-op thread count has been
    changed, as the sampler does ("Pivots given to lu_solve must all be greater or equal to
    1", with oneMKL's DLASWP complaints); the solve of a single matrix is unaffected.
    """
    eye = torch.eye(xtx.shape[-1], dtype=xtx.dtype, device=xtx.device)
    for attempt in range(retries):
        weights, info = torch.linalg.solve_ex(xtx + reg * 10**attempt * eye, xty)
        if not info.any() and torch.isfinite(weights).all():
            return weights
    raise FloatingPointError("linear baseline: ridge regression has no finite solution")

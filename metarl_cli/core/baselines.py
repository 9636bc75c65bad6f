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

    Shapes: obs (N, R, T, d), returns and mask (N, R, T) -> values (N, R, T). The ridge term
    grows tenfold while the solve fails or is not finite (a singular design matrix).
    """
    feats = linear_features(obs).double() * mask.double().unsqueeze(-1)
    n, r, t, k = feats.shape
    x = feats.reshape(n, r * t, k)
    y = (returns.double() * mask.double()).reshape(n, r * t, 1)
    xtx, xty = x.transpose(1, 2) @ x, x.transpose(1, 2) @ y
    eye = torch.eye(k, dtype=xtx.dtype, device=xtx.device)
    for attempt in range(retries):
        weights, info = torch.linalg.solve_ex(xtx + reg * 10**attempt * eye, xty)
        if not info.any() and torch.isfinite(weights).all():
            break
    else:
        raise FloatingPointError("linear baseline: ridge regression has no finite solution")
    return (x @ weights).reshape(n, r, t).to(returns.dtype) * mask

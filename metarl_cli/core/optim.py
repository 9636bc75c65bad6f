"""Trust-region machinery: conjugate gradient, Hessian-vector products, the TRPO step.

The TRPO step (Schulman et al., 2015) solves H x = -g by conjugate gradient, where H is the
Hessian of the mean KL and g the gradient of the surrogate loss, scales the step to the KL
bound and backtracks until the loss improves and the KL stays within the bound.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch.nn.utils import parameters_to_vector, vector_to_parameters


def conjugate_gradient(matvec: Callable[[torch.Tensor], torch.Tensor], b: torch.Tensor,
                       iters: int, residual_tol: float = 1e-10) -> torch.Tensor:
    """Approximately solve A x = b for a symmetric positive-definite A given as a product."""
    x = torch.zeros_like(b)
    r = b.clone()
    p = b.clone()
    rr = r @ r
    for _ in range(iters):
        if rr < residual_tol:
            break
        ap = matvec(p)
        alpha = rr / (p @ ap)
        x += alpha * p
        r -= alpha * ap
        rr_new = r @ r
        p = r + (rr_new / rr) * p
        rr = rr_new
    return x


def hessian_vector_product(scalar: torch.Tensor, params: Sequence[torch.Tensor]
                           ) -> Callable[[torch.Tensor], torch.Tensor]:
    """v -> (d^2 scalar / d params^2) v, reusing one first-order graph."""
    grads = torch.autograd.grad(scalar, params, create_graph=True)
    flat = torch.cat([g.reshape(-1) for g in grads])

    def product(v: torch.Tensor) -> torch.Tensor:
        hv = torch.autograd.grad(flat @ v, params, retain_graph=True)
        return torch.cat([h.reshape(-1) for h in hv]).detach()

    return product


def trpo_step(params: Sequence[torch.Tensor],
              loss_fn: Callable[[bool], torch.Tensor],
              kl_fn: Callable[[bool], torch.Tensor],
              max_kl: float, cg_iters: int = 10, cg_damping: float = 1e-5,
              line_search_steps: int = 15, backtrack_ratio: float = 0.8) -> dict[str, float]:
    """One constrained step on ``params`` in place; returns what happened.

    ``loss_fn(differentiable)`` and ``kl_fn(differentiable)`` recompute the surrogate loss and
    the mean KL from the current parameter values; with ``differentiable=False`` they may skip
    building higher-order graphs (used for the line search).
    A step whose line search never finds an improving point within the KL bound is not
    applied (``optim/accepted`` = 0).
    """
    loss = loss_fn(True)
    grads = torch.autograd.grad(loss, params)
    g = torch.cat([gr.reshape(-1) for gr in grads]).detach()
    curvature = hessian_vector_product(kl_fn(True), params)

    def hvp(v: torch.Tensor) -> torch.Tensor:
        return curvature(v) + cg_damping * v

    direction = conjugate_gradient(hvp, -g, cg_iters)
    shs = 0.5 * (direction @ hvp(direction))
    if not torch.isfinite(shs):
        raise FloatingPointError(f"TRPO: step curvature is {shs.item()}")
    old_loss = loss.item()
    result = {"optim/line_search_steps": 0.0, "optim/accepted": 0.0, "optim/kl": 0.0,
              "loss/surrogate_before": old_loss}
    if shs <= 0:  # zero gradient (e.g. all advantages 0): there is no step to take
        return result
    full_step = direction * torch.sqrt(max_kl / shs)

    old = parameters_to_vector(params).detach().clone()
    result["optim/line_search_steps"] = float(line_search_steps)
    for i in range(line_search_steps):
        vector_to_parameters(old + backtrack_ratio**i * full_step, params)
        new_loss, kl = loss_fn(False).item(), kl_fn(False).item()
        if new_loss < old_loss and kl <= max_kl:
            result |= {"optim/line_search_steps": float(i + 1), "optim/accepted": 1.0,
                       "optim/kl": kl, "loss/surrogate_after": new_loss}
            break
    else:
        vector_to_parameters(old, params)
    return result

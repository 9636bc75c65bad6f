"""Gradient-based adaptation shared by MAML, ProMP, E-MAML and Reptile.

The inner loop (sample with the per-task policies, take a policy-gradient step, repeat), the
inner step as a pure function of a parameter dict so that outer steps can differentiate through
it, the inner step-size schedule (fixed per step, or learned per parameter entry as in
Meta-SGD), the per-task objectives of the outer steps, and an outer update by a torch optimizer.

Inner-loss estimators (Rothfuss et al., 2019):
- ``log_likelihood``: -mean(log pi(a|s) A), the MAML paper's surrogate. Its gradient is the
  policy gradient, but its Hessian misses the term that comes from sampling with pi itself.
- ``lvc``: the low-variance curvature estimator, -mean(pi(a|s) / pi_old(a|s) A) with pi_old the
  acting policy (no gradient). Same value and gradient at pi = pi_old; its Hessian also has the
  grad log pi grad log pi^T A term, exact in expectation for one-step episodes (where it is DiCE).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.distributions import Distribution, kl_divergence

from metarl_cli.core.checks import check_choice, check_positive
from metarl_cli.core.functional import (
    Params,
    PerTaskPolicy,
    broadcast_policy,
    expand_params,
    task_distribution,
)
from metarl_cli.core.returns import policy_gradient_advantages
from metarl_cli.core.sampler import Sampler
from metarl_cli.core.types import EpisodeBatch

ESTIMATORS = ("log_likelihood", "lvc")
StepSize = float | Params  # one rate for all parameters, or a tensor per parameter (learned)


def check_estimator(estimator: str) -> None:
    check_choice("inner_estimator", estimator, ESTIMATORS)


def task_means(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over each task's valid steps: (N, R, T) -> (N,)."""
    return (x * mask).sum((1, 2)) / mask.sum((1, 2)).clamp_min(1.0)


# ----------------------------------------------------------------------------- step sizes
@dataclass(frozen=True)
class StepSchedule:
    """Inner step size of step k: ``inner_lrs[k]`` when given (the last one repeats), else
    ``inner_lr`` for the first step and ``inner_lr * later_lr_scale`` for the later ones."""

    inner_lr: float
    later_lr_scale: float = 1.0
    inner_lrs: Sequence[float] | None = None  # kept as a tuple, so the schedule is immutable

    def __post_init__(self) -> None:
        check_positive(inner_lr=self.inner_lr, later_lr_scale=self.later_lr_scale)
        if self.inner_lrs is not None:
            object.__setattr__(self, "inner_lrs", tuple(self.inner_lrs))
            if not self.inner_lrs or not all(lr > 0 for lr in self.inner_lrs):
                raise ValueError(f"inner_lrs must be null or a non-empty list of rates > 0, "
                                 f"got {list(self.inner_lrs)}")

    def __call__(self, step: int) -> float:
        if self.inner_lrs is not None:
            return self.inner_lrs[min(step, len(self.inner_lrs) - 1)]
        return self.inner_lr * (self.later_lr_scale if step > 0 else 1.0)


class LearnedStepSizes(nn.Module):
    """Meta-SGD (Li et al., 2017): one learned step size per parameter entry and inner step.

    Initialised from a schedule; steps beyond the trained ones (longer meta-test adaptation)
    reuse the last trained step's sizes.
    """

    def __init__(self, policy: nn.Module, steps: int, schedule: StepSchedule) -> None:
        super().__init__()
        self.names = [name for name, _ in policy.named_parameters()]
        self.per_step = nn.ModuleList(
            nn.ParameterList(nn.Parameter(torch.full_like(p.detach(), schedule(k)))
                             for p in policy.parameters())
            for k in range(steps))

    def for_step(self, step: int) -> Params:
        sizes = self.per_step[min(step, len(self.per_step) - 1)]
        return dict(zip(self.names, sizes, strict=True))


# ----------------------------------------------------------------------------- inner step
def pg_losses(log_probs: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
              estimator: str = "log_likelihood", old_log_probs: torch.Tensor | None = None
              ) -> torch.Tensor:
    """Per-task inner policy-gradient losses (N,) with the chosen estimator (module doc).

    ``old_log_probs`` are the acting policy's; by default the detached ``log_probs``.
    """
    if estimator == "log_likelihood":
        return -task_means(log_probs * advantages, mask)
    check_estimator(estimator)
    old = log_probs.detach() if old_log_probs is None else old_log_probs
    return -task_means(torch.exp(log_probs - old) * advantages, mask)


def inner_step(policy: nn.Module, params: Params, batch: EpisodeBatch, advantages: torch.Tensor,
               lr: StepSize, create_graph: bool, estimator: str = "log_likelihood",
               old_log_probs: torch.Tensor | None = None) -> Params:
    """Per-task params - lr * grad of each task's inner loss.

    ``params`` carry a leading task axis; task i's loss depends on task i's parameters only,
    so one gradient of the summed losses gives every task's own gradient. With
    ``create_graph`` the step is differentiable to second order; without it the result still
    depends on ``params`` and ``lr`` (first order).
    """
    dist = task_distribution(policy, params, batch.obs)
    losses = pg_losses(dist.log_prob(batch.actions), advantages, batch.mask, estimator,
                       old_log_probs)
    grads = torch.autograd.grad(losses.sum(), list(params.values()), create_graph=create_graph)
    return {n: p - (lr[n] if isinstance(lr, dict) else lr) * g
            for (n, p), g in zip(params.items(), grads, strict=True)}


def adapt_policy(acting: PerTaskPolicy, batch: EpisodeBatch, advantages: torch.Tensor,
                 lr: StepSize, estimator: str = "log_likelihood") -> PerTaskPolicy:
    """One detached inner step from an acting policy on the episodes it collected."""
    params = {n: p.detach().clone().requires_grad_() for n, p in acting.params.items()}
    new = inner_step(acting.policy, params, batch, advantages, lr, False, estimator)
    return PerTaskPolicy(acting.policy, {n: p.detach() for n, p in new.items()}, acting.step + 1)


# ----------------------------------------------------------------------------- inner loop
@dataclass(frozen=True)
class AdaptationData:
    """What the inner loop collected: ``batches[k]`` was sampled by the acting parameters
    ``acting[k]`` (k = 0: the meta-policy) and ``dists[k]`` is their action distribution on it
    (no gradient); ``post`` was sampled by ``acting[-1]``, the fully adapted parameters."""

    batches: list[EpisodeBatch]
    advantages: list[torch.Tensor]
    dists: list[Distribution]
    acting: list[PerTaskPolicy]
    post: EpisodeBatch | None
    post_advantages: torch.Tensor | None
    post_dist: Distribution | None

    def old_log_probs(self, step: int) -> torch.Tensor:
        return self.dists[step].log_prob(self.batches[step].actions)

    def all_batches(self) -> list[EpisodeBatch]:
        return self.batches + ([self.post] if self.post is not None else [])


def sample_and_adapt(policy: nn.Module, sampler: Sampler, tasks: Sequence[Any], rollouts: int,
                     steps: int, step_size: Callable[[int], StepSize], gamma: float,
                     gae_lambda: float, estimator: str = "log_likelihood",
                     sample_post: bool = True) -> AdaptationData:
    """The inner loop of a meta-iteration: ``steps`` times sample and adapt, then (optionally)
    sample once more with the adapted per-task policies."""
    acting = broadcast_policy(policy, len(tasks))
    batches, advantages, dists, actings = [], [], [], [acting]
    for _ in range(steps):
        batch = sampler.sample(acting, tasks, rollouts)
        adv = policy_gradient_advantages(batch, gamma, gae_lambda)
        with torch.no_grad():
            dists.append(task_distribution(policy, acting.params, batch.obs))
        acting = adapt_policy(acting, batch, adv, step_size(acting.step), estimator)
        batches.append(batch)
        advantages.append(adv)
        actings.append(acting)
    if not sample_post:
        return AdaptationData(batches, advantages, dists, actings, None, None, None)
    post = sampler.sample(acting, tasks, rollouts)
    with torch.no_grad():
        post_dist = task_distribution(policy, acting.params, post.obs)
    return AdaptationData(batches, advantages, dists, actings, post,
                          policy_gradient_advantages(post, gamma, gae_lambda), post_dist)


def adapted_params(policy: nn.Module, data: AdaptationData, step_size: Callable[[int], StepSize],
                   second_order: bool, estimator: str = "log_likelihood") -> list[Params]:
    """theta_0 .. theta_K as functions of the policy's parameters: the meta-parameters for
    every task, then each inner step on the collected batches (second order or not)."""
    params = expand_params(policy, next(iter(data.acting[0].params.values())).shape[0])
    chain = [params]
    for k, (batch, adv) in enumerate(zip(data.batches, data.advantages, strict=True)):
        old = data.old_log_probs(k) if estimator == "lvc" else None
        params = inner_step(policy, params, batch, adv, step_size(k), second_order, estimator,
                            old)
        chain.append(params)
    return chain


# ----------------------------------------------------------------------------- outer objectives
def likelihood_ratio(policy: nn.Module, params: Params, batch: EpisodeBatch, old: Distribution
                     ) -> torch.Tensor:
    """pi_params(a|s) / pi_old(a|s) on every step of ``batch``, (N, R, T)."""
    return _ratio(task_distribution(policy, params, batch.obs), old, batch)


def _ratio(new: Distribution, old: Distribution, batch: EpisodeBatch) -> torch.Tensor:
    return torch.exp(new.log_prob(batch.actions) - old.log_prob(batch.actions))


def surrogate_loss(ratio: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
                   clip_eps: float | None = None) -> torch.Tensor:
    """-(mean over tasks of each task's mean ratio * advantage); with ``clip_eps`` the PPO
    clipped form min(r A, clip(r, 1 - eps, 1 + eps) A) (Schulman et al., 2017)."""
    objective = ratio * advantages
    if clip_eps is not None:
        clipped = ratio.clamp(1.0 - clip_eps, 1.0 + clip_eps) * advantages
        objective = torch.minimum(objective, clipped)
    return -task_means(objective, mask).mean()


def mean_kl(policy: nn.Module, params: Params, batch: EpisodeBatch, old: Distribution
            ) -> torch.Tensor:
    """KL(old || pi_params) averaged over each task's valid steps, then over tasks."""
    return _mean_kl(task_distribution(policy, params, batch.obs), old, batch)


def _mean_kl(new: Distribution, old: Distribution, batch: EpisodeBatch) -> torch.Tensor:
    return task_means(kl_divergence(old, new), batch.mask).mean()


def surrogate_and_kl(policy: nn.Module, params: Params, batch: EpisodeBatch, old: Distribution,
                     advantages: torch.Tensor, clip_eps: float | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """surrogate_loss and mean_kl of pi_params on ``batch`` from one forward pass."""
    new = task_distribution(policy, params, batch.obs)
    return (surrogate_loss(_ratio(new, old, batch), advantages, batch.mask, clip_eps),
            _mean_kl(new, old, batch))


# ----------------------------------------------------------------------------- outer update
def optimizer_update(optimizer: torch.optim.Optimizer, loss_fn: Callable[[], torch.Tensor],
                     epochs: int) -> float:
    """``epochs`` full-batch steps of ``optimizer`` on ``loss_fn``; returns the first loss."""
    first = float("nan")
    for epoch in range(epochs):
        optimizer.zero_grad()
        loss = loss_fn()
        if not torch.isfinite(loss):
            raise FloatingPointError(f"outer loss is {loss.item()} at epoch {epoch}")
        if epoch == 0:
            first = loss.item()
        loss.backward()
        optimizer.step()
    return first


def adaptation_metrics(batches: list[EpisodeBatch]) -> dict[str, float]:
    """Meta-train returns of the batches of an iteration in sampling order (before adaptation,
    after each step), the gain from first to last, and the environment steps they took."""
    returns = [b.episode_returns().mean().item() for b in batches]
    metrics = {"meta_train/return_pre": returns[0], "meta_train/return_post": returns[-1],
               "meta_train/adaptation_gain": returns[-1] - returns[0],
               "env_steps": float(sum(b.num_steps for b in batches))}
    if len(batches) > 2:
        metrics |= {f"meta_train/return_step_{k}": r for k, r in enumerate(returns)}
    return metrics

"""E-MAML (Stadie, Yang, Houthooft, Chen, Duan, Wu, Abbeel & Sutskever, 2018).

MAML with the exploration term: the meta-objective is differentiated also through the
distribution of the pre-update episodes, so the policy that samples them is credited with the
return the adapted policy then achieves. The term, per task i, is the REINFORCE form
c_i * mean log pi_theta_k(a|s) over the steps of every inner batch k (theta_k as a function of
the meta-parameters), where c_i is task i's post-adaptation mean return normalised over the
meta-batch (its mean is the baseline). It is added, times ``exploration_weight``, to MAML's
post-adaptation surrogate; the per-step mean keeps the weight on the surrogate's scale.

Inner loop and outer steps as in MAML: policy-gradient inner steps with the linear baseline,
``outer_step="trpo"`` (E-MAML-TRPO, the variant compared in the ProMP paper) or ``"vpg"`` (one
step of the configured optimizer).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from metarl_cli.core.adaptation import (
    AdaptationData,
    StepSchedule,
    adapt_policy,
    adaptation_metrics,
    adapted_params,
    likelihood_ratio,
    mean_kl,
    optimizer_update,
    sample_and_adapt,
    surrogate_loss,
    task_means,
)
from metarl_cli.core.functional import Params, PerTaskPolicy, broadcast_policy, task_distribution
from metarl_cli.core.optim import trpo_step
from metarl_cli.core.returns import policy_gradient_advantages
from metarl_cli.core.sampler import Sampler
from metarl_cli.core.types import EpisodeBatch

OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]
OUTER_STEPS = ("trpo", "vpg")


class EMAML:
    def __init__(self, policy: nn.Module, sampler: Sampler, rollouts_per_task: int = 20,
                 inner_lr: float = 0.1, later_lr_scale: float = 0.5,
                 inner_lrs: list[float] | None = None, inner_steps: int = 1,
                 first_order: bool = False, exploration_weight: float = 1.0,
                 outer_step: str = "trpo", max_kl: float = 0.01, cg_iters: int = 10,
                 cg_damping: float = 1e-5, line_search_steps: int = 15,
                 backtrack_ratio: float = 0.8, gamma: float = 0.99, gae_lambda: float = 1.0,
                 optimizer: OptimizerFactory | None = None) -> None:
        if outer_step not in OUTER_STEPS:
            raise ValueError(f"outer_step must be one of {', '.join(OUTER_STEPS)}, "
                             f"got {outer_step!r}")
        for name, value in [("rollouts_per_task", rollouts_per_task),
                            ("inner_steps", inner_steps), ("max_kl", max_kl),
                            ("cg_iters", cg_iters), ("line_search_steps", line_search_steps)]:
            if not value > 0:
                raise ValueError(f"{name} must be > 0, got {value}")
        if exploration_weight < 0:
            raise ValueError(f"exploration_weight must be >= 0, got {exploration_weight}")
        for name, value in [("backtrack_ratio", backtrack_ratio), ("gamma", gamma),
                            ("gae_lambda", gae_lambda)]:
            if not 0 < value <= 1:
                raise ValueError(f"{name} must be in (0, 1], got {value}")
        if outer_step == "vpg" and optimizer is None:
            raise ValueError("outer_step=vpg needs an optimizer (choose one with optimizer=...)")
        self.policy = policy
        self.sampler = sampler
        self.rollouts_per_task = rollouts_per_task
        self.schedule = StepSchedule(inner_lr, later_lr_scale,
                                     None if inner_lrs is None else tuple(inner_lrs))
        self.inner_steps = inner_steps
        self.first_order = first_order
        self.exploration_weight = exploration_weight
        self.outer_step = outer_step
        self.trpo_args = dict(max_kl=max_kl, cg_iters=cg_iters, cg_damping=cg_damping,
                              line_search_steps=line_search_steps,
                              backtrack_ratio=backtrack_ratio)
        self.gamma, self.gae_lambda = gamma, gae_lambda
        self.optimizer = optimizer(policy.parameters()) if outer_step == "vpg" else None

    def train_step(self, tasks: list[Any]) -> dict[str, float]:
        # --- inner loop: sample with the current per-task policy, adapt, repeat ---
        data = sample_and_adapt(self.policy, self.sampler, tasks, self.rollouts_per_task,
                                self.inner_steps, self.schedule, self.gamma, self.gae_lambda)
        assert data.post is not None and data.post_dist is not None
        post, old = data.post, data.post_dist
        credit = exploration_credit(post)

        # --- outer step: MAML's surrogate plus the exploration term ---
        def chain(differentiable: bool) -> list[Params]:
            second_order = differentiable and not self.first_order
            return adapted_params(self.policy, data, self.schedule, second_order)

        def loss(differentiable: bool) -> torch.Tensor:
            return self.loss(data, chain(differentiable), credit)

        def kl(differentiable: bool) -> torch.Tensor:
            return mean_kl(self.policy, chain(differentiable)[-1], post, old)

        if self.optimizer is None:
            metrics = trpo_step(list(self.policy.parameters()), loss, kl, **self.trpo_args)
        else:
            before = optimizer_update(self.optimizer, lambda: loss(True), 1)
            metrics = {"loss/surrogate_before": before, "optim/kl": kl(False).item()}
        return metrics | adaptation_metrics(data.all_batches())

    def exploration_policy(self, num_tasks: int) -> PerTaskPolicy:
        return broadcast_policy(self.policy, num_tasks)

    def adapt(self, policy: PerTaskPolicy, episodes: EpisodeBatch) -> PerTaskPolicy:
        """One policy-gradient step per task on ``episodes``, collected by ``policy``."""
        advantages = policy_gradient_advantages(episodes, self.gamma, self.gae_lambda)
        return adapt_policy(policy, episodes, advantages, self.schedule(policy.step))

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"policy": self.policy.state_dict()}
        if self.optimizer is not None:
            state["optimizer"] = self.optimizer.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.policy.load_state_dict(state["policy"])
        if self.optimizer is not None:
            self.optimizer.load_state_dict(state["optimizer"])

    # --- helpers ---
    def loss(self, data: AdaptationData, chain: list[Params], credit: torch.Tensor
             ) -> torch.Tensor:
        """Post-adaptation surrogate of ``chain[-1]`` minus exploration_weight times the
        credited pre-update log-likelihood, ``chain[k]`` having sampled ``data.batches[k]``."""
        assert data.post is not None and data.post_advantages is not None
        assert data.post_dist is not None
        ratio = likelihood_ratio(self.policy, chain[-1], data.post, data.post_dist)
        loss = surrogate_loss(ratio, data.post_advantages, data.post.mask)
        if self.exploration_weight == 0:
            return loss
        log_likelihood = sum(
            task_means(task_distribution(self.policy, params, batch.obs).log_prob(batch.actions),
                       batch.mask)
            for params, batch in zip(chain[:-1], data.batches, strict=True))
        assert isinstance(log_likelihood, torch.Tensor)
        return loss - self.exploration_weight * (credit * log_likelihood).mean()


def exploration_credit(post: EpisodeBatch, eps: float = 1e-8) -> torch.Tensor:
    """Each task's post-adaptation mean return, centred and scaled over the meta-batch, (N,)."""
    returns = post.episode_returns().mean(1)
    return (returns - returns.mean()) / (returns.std(unbiased=False) + eps)

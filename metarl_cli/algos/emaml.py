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
step of the configured optimizer). TRPO's KL curvature: ``curvature="gradient_step"`` or
``"closed_form"`` takes MAML's cheaper products through the one inner step where they are exact
(the KL is MAML's, the exploration term does not enter it); the default ``"autograd"`` keeps
earlier runs' numbers.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from metarl_cli.core.adaptation import (
    AdaptationData,
    StepSchedule,
    adaptation_metrics,
    surrogate_and_kl,
    task_means,
)
from metarl_cli.core.checks import (
    check_choice,
    check_non_negative,
    check_positive,
    require_optimizer,
)
from metarl_cli.core.functional import Params, PerTaskPolicy, task_distribution
from metarl_cli.core.gradient_learner import (
    AdaptationRule,
    TrustRegion,
    check_curvature,
    load_parts_state_dict,
    outer_update,
    parts_state_dict,
)
from metarl_cli.core.sampler import Sampler
from metarl_cli.core.types import EpisodeBatch, OptimizerFactory

OUTER_STEPS = ("trpo", "vpg")


class EMAML:
    def __init__(self, policy: nn.Module, sampler: Sampler, rollouts_per_task: int = 20,
                 inner_lr: float = 0.1, later_lr_scale: float = 0.5,
                 inner_lrs: list[float] | None = None, inner_steps: int = 1,
                 first_order: bool = False, exploration_weight: float = 1.0,
                 outer_step: str = "trpo", max_kl: float = 0.01, cg_iters: int = 10,
                 cg_damping: float = 1e-5, line_search_steps: int = 15,
                 backtrack_ratio: float = 0.8, curvature: str = "autograd",
                 cg_subsample: float = 1.0, gamma: float = 0.99,
                 gae_lambda: float = 1.0, optimizer: OptimizerFactory | None = None) -> None:
        check_choice("outer_step", outer_step, OUTER_STEPS)
        check_positive(rollouts_per_task=rollouts_per_task, inner_steps=inner_steps)
        check_non_negative(exploration_weight=exploration_weight)
        self.policy = policy
        self.sampler = sampler
        self.rollouts_per_task = rollouts_per_task
        self.rule = AdaptationRule(policy, StepSchedule(inner_lr, later_lr_scale, inner_lrs),
                                   gamma, gae_lambda)
        self.inner_steps = inner_steps
        self.first_order = first_order
        self.exploration_weight = exploration_weight
        self.trust_region = TrustRegion(max_kl, cg_iters, cg_damping, line_search_steps,
                                        backtrack_ratio, cg_subsample)
        check_curvature(curvature, self.trust_region, inner_steps == 1)
        self.curvature = curvature
        self.optimizer = (None if outer_step == "trpo" else
                          require_optimizer(optimizer, f"outer_step={outer_step}")(
                              policy.parameters()))

    def train_step(self, tasks: list[Any]) -> dict[str, float]:
        # --- inner loop: sample with the current per-task policy, adapt, repeat ---
        data = self.rule.sample_and_adapt(self.sampler, tasks, self.rollouts_per_task,
                                          self.inner_steps)
        assert data.post is not None
        credit = exploration_credit(data.post)

        # --- outer step: MAML's surrogate plus the exploration term ---
        def objective(differentiable: bool) -> tuple[torch.Tensor, torch.Tensor]:
            chain = self.rule.adapted_params(data, differentiable and not self.first_order)
            return self.loss_and_kl(data, chain, credit)

        curvature = self.trust_region.curvature(self.rule, data, not self.first_order,
                                                self.curvature)
        metrics = outer_update(list(self.policy.parameters()), objective, self.optimizer,
                               self.trust_region, curvature=curvature)
        return metrics | adaptation_metrics(data.all_batches())

    def adapt(self, policy: PerTaskPolicy, episodes: EpisodeBatch) -> PerTaskPolicy:
        """One policy-gradient step per task on ``episodes``, collected by ``policy``."""
        return self.rule.adapt(policy, episodes)

    def exploration_policy(self, num_tasks: int) -> PerTaskPolicy:
        return self.rule.exploration_policy(num_tasks)

    def state_dict(self) -> dict[str, Any]:
        return parts_state_dict(policy=self.policy, optimizer=self.optimizer)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        load_parts_state_dict(state, policy=self.policy, optimizer=self.optimizer)

    # --- helpers ---
    def loss_and_kl(self, data: AdaptationData, chain: list[Params], credit: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Post-adaptation surrogate of ``chain[-1]`` minus exploration_weight times the
        credited pre-update log-likelihood, ``chain[k]`` having sampled ``data.batches[k]``;
        and the mean KL of ``chain[-1]`` on the post-adaptation steps."""
        assert data.post is not None and data.post_advantages is not None
        assert data.post_dist is not None
        loss, kl = surrogate_and_kl(self.policy, chain[-1], data.post, data.post_dist,
                                    data.post_advantages)
        if self.exploration_weight == 0:
            return loss, kl
        log_likelihood = sum(
            task_means(task_distribution(self.policy, params, batch.obs).log_prob(batch.actions),
                       batch.mask)
            for params, batch in zip(chain[:-1], data.batches, strict=True))
        assert isinstance(log_likelihood, torch.Tensor)
        return loss - self.exploration_weight * (credit * log_likelihood).mean(), kl


def exploration_credit(post: EpisodeBatch, eps: float = 1e-8) -> torch.Tensor:
    """Each task's post-adaptation mean return, centred and scaled over the meta-batch, (N,)."""
    returns = post.episode_returns().mean(1)
    return (returns - returns.mean()) / (returns.std(unbiased=False) + eps)

"""MAML for reinforcement learning (Finn, Abbeel & Levine, ICML 2017).

Inner loop: ``inner_steps`` policy-gradient steps per task on freshly sampled episodes (linear
feature baseline, GAE, per-task advantage normalisation), step size ``inner_lr`` for the first
step and ``inner_lr * later_lr_scale`` for the later ones, or ``inner_lrs[k]`` per step, or
learned per parameter entry and step (``learn_inner_lr``, Meta-SGD, Li et al. 2017). Meta-test
may take more steps than training; those reuse the last step's size. Outer step on the
post-adaptation surrogate, differentiated through the inner steps (second order unless
``first_order``): ``outer_step="trpo"`` takes a trust-region step (the paper's choice), ``"vpg"``
one step of the configured torch optimizer, ``"ppo"`` ``ppo_epochs`` steps of it on the clipped
surrogate (Schulman et al., 2017) without resampling. TRPO's KL curvature (``curvature``) is
by default the product through the one inner gradient step written out for the Gaussian MLP
policy (policies/gaussian_curvature.py), else the same product by autograd where it is exact
(core/optim.py), else autograd's product of the KL; ``cg_subsample`` < 1 takes the one-step
products on the first part of each task's rollouts only (rllab's ``subsample_factor``), which
makes the conjugate gradient that much cheaper; the line search still checks the KL and the
loss on all of them.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from metarl_cli.core.adaptation import (
    LearnedStepSizes,
    StepSchedule,
    adaptation_metrics,
    surrogate_and_kl,
)
from metarl_cli.core.checks import (
    check_choice,
    check_positive,
    check_unit_interval,
    require_optimizer,
)
from metarl_cli.core.functional import PerTaskPolicy
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

OUTER_STEPS = ("trpo", "vpg", "ppo")


class MAML:
    def __init__(self, policy: nn.Module, sampler: Sampler, rollouts_per_task: int = 20,
                 inner_lr: float = 0.1, later_lr_scale: float = 0.5,
                 inner_lrs: list[float] | None = None, learn_inner_lr: bool = False,
                 inner_steps: int = 1, first_order: bool = False, outer_step: str = "trpo",
                 max_kl: float = 0.01, cg_iters: int = 10, cg_damping: float = 1e-5,
                 line_search_steps: int = 15, backtrack_ratio: float = 0.8,
                 curvature: str = "closed_form", cg_subsample: float = 1.0,
                 ppo_epochs: int = 5, clip_eps: float = 0.2,
                 gamma: float = 0.99, gae_lambda: float = 1.0,
                 optimizer: OptimizerFactory | None = None) -> None:
        check_choice("outer_step", outer_step, OUTER_STEPS)
        check_positive(rollouts_per_task=rollouts_per_task, inner_steps=inner_steps,
                       ppo_epochs=ppo_epochs)
        check_unit_interval(clip_eps=clip_eps)
        self.policy = policy
        self.sampler = sampler
        self.rollouts_per_task = rollouts_per_task
        self.schedule = StepSchedule(inner_lr, later_lr_scale, inner_lrs)
        self.step_sizes = (LearnedStepSizes(policy, inner_steps, self.schedule)
                           if learn_inner_lr else None)
        self.rule = AdaptationRule(policy, self.schedule, gamma, gae_lambda,
                                   learned=self.step_sizes)
        self.inner_steps = inner_steps
        self.first_order = first_order
        self.outer_step = outer_step
        self.trust_region = TrustRegion(max_kl, cg_iters, cg_damping, line_search_steps,
                                        backtrack_ratio, cg_subsample)
        check_curvature(curvature, self.trust_region, inner_steps == 1 and not learn_inner_lr)
        self.curvature = curvature
        self.ppo_epochs, self.clip_eps = ppo_epochs, clip_eps
        self.optimizer = (None if outer_step == "trpo" else
                          require_optimizer(optimizer, f"outer_step={outer_step}")(
                              self._meta_parameters()))

    def train_step(self, tasks: list[Any]) -> dict[str, float]:
        # --- inner loop: sample with the current per-task policy, adapt, repeat ---
        data = self.rule.sample_and_adapt(self.sampler, tasks, self.rollouts_per_task,
                                          self.inner_steps)
        post, post_adv, old = data.post, data.post_advantages, data.post_dist
        assert post is not None and post_adv is not None and old is not None

        # --- outer step on the post-adaptation surrogate, all tasks in one graph ---
        clip_eps = self.clip_eps if self.outer_step == "ppo" else None

        def objective(differentiable: bool) -> tuple[torch.Tensor, torch.Tensor]:
            adapted = self.rule.adapted_params(data, differentiable and not self.first_order)
            return surrogate_and_kl(self.policy, adapted[-1], post, old, post_adv, clip_eps)

        curvature = self.trust_region.curvature(self.rule, data, not self.first_order,
                                                self.curvature)
        metrics = outer_update(self._meta_parameters(), objective, self.optimizer,
                               self.trust_region,
                               self.ppo_epochs if self.outer_step == "ppo" else 1, curvature)
        return metrics | adaptation_metrics(data.all_batches())

    def adapt(self, policy: PerTaskPolicy, episodes: EpisodeBatch) -> PerTaskPolicy:
        """One policy-gradient step per task on ``episodes``, collected by ``policy``."""
        return self.rule.adapt(policy, episodes)

    def exploration_policy(self, num_tasks: int) -> PerTaskPolicy:
        return self.rule.exploration_policy(num_tasks)

    def state_dict(self) -> dict[str, Any]:
        return parts_state_dict(policy=self.policy, optimizer=self.optimizer,
                                step_sizes=self.step_sizes)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        load_parts_state_dict(state, policy=self.policy, optimizer=self.optimizer,
                              step_sizes=self.step_sizes)

    # --- helpers ---
    def _meta_parameters(self) -> list[torch.Tensor]:
        """What the outer step updates: the policy, and the step sizes when they are learned."""
        learned = [] if self.step_sizes is None else list(self.step_sizes.parameters())
        return [*self.policy.parameters(), *learned]

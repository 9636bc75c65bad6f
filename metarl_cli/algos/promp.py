"""ProMP: Proximal Meta-Policy Search (Rothfuss, Lee, Clavera, Asfour & Abbeel, ICLR 2019).

Inner loop as in MAML, but the inner loss is the low-variance curvature (LVC) estimator
-mean(pi(a|s) / pi_old(a|s) A), whose Hessian credits the sampling distribution of the inner
episodes, so the meta-gradient through the inner step has the right curvature (see
core/adaptation.py). Outer step: ``ppo_epochs`` steps of the configured optimizer, without
resampling, on the PPO-clipped post-adaptation surrogate plus ``inner_kl_penalty`` times the KL
between each inner step's acting policy and its current value on that step's episodes (the
inner KL), which keeps the inner importance ratios trustworthy while the meta-parameters move.

Paper defaults (the authors' ProMP run scripts): inner lr 0.1, one inner step, Adam with
learning rate 1e-3 (our ``optimizer`` group's default), 5 ProMP steps, clip 0.3, a fixed
inner-KL coefficient of 5e-4 (an adaptive one that doubles or halves towards a target inner KL
of 0.01 is optional), 20 rollouts per task, 40 tasks per meta-batch, gamma 0.99, GAE lambda 1.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from metarl_cli.core.adaptation import (
    AdaptationData,
    StepSchedule,
    adaptation_metrics,
    likelihood_ratio,
    mean_kl,
    optimizer_update,
    surrogate_loss,
)
from metarl_cli.core.checks import (
    check_non_negative,
    check_positive,
    check_unit_interval,
    require_optimizer,
)
from metarl_cli.core.functional import Params, PerTaskPolicy
from metarl_cli.core.gradient_learner import (
    AdaptationRule,
    load_parts_state_dict,
    parts_state_dict,
)
from metarl_cli.core.sampler import Sampler
from metarl_cli.core.types import EpisodeBatch, OptimizerFactory


class ProMP:
    def __init__(self, policy: nn.Module, sampler: Sampler, rollouts_per_task: int = 20,
                 inner_lr: float = 0.1, later_lr_scale: float = 0.5,
                 inner_lrs: list[float] | None = None, inner_steps: int = 1,
                 ppo_epochs: int = 5, clip_eps: float = 0.3, inner_kl_penalty: float = 5e-4,
                 adaptive_inner_kl_penalty: bool = False, target_inner_kl: float = 0.01,
                 gamma: float = 0.99, gae_lambda: float = 1.0,
                 optimizer: OptimizerFactory | None = None) -> None:
        check_positive(rollouts_per_task=rollouts_per_task, inner_steps=inner_steps,
                       ppo_epochs=ppo_epochs, target_inner_kl=target_inner_kl)
        check_non_negative(inner_kl_penalty=inner_kl_penalty)
        check_unit_interval(clip_eps=clip_eps)
        self.policy = policy
        self.sampler = sampler
        self.rollouts_per_task = rollouts_per_task
        self.rule = AdaptationRule(policy, StepSchedule(inner_lr, later_lr_scale, inner_lrs),
                                   gamma, gae_lambda, estimator="lvc")
        self.inner_steps = inner_steps
        self.ppo_epochs, self.clip_eps = ppo_epochs, clip_eps
        self.inner_kl_coeffs = torch.full((inner_steps,), float(inner_kl_penalty))
        self.adaptive_inner_kl_penalty = adaptive_inner_kl_penalty
        self.target_inner_kl = target_inner_kl
        self.optimizer = require_optimizer(optimizer, "ProMP's outer step")(policy.parameters())

    def train_step(self, tasks: list[Any]) -> dict[str, float]:
        # --- inner loop: sample, LVC step, repeat; then sample with the adapted policies ---
        data = self.rule.sample_and_adapt(self.sampler, tasks, self.rollouts_per_task,
                                          self.inner_steps)

        # --- outer step: clipped surrogate + inner-KL penalty, several epochs ---
        loss_before = optimizer_update(self.optimizer, lambda: self.loss(data, True)[0],
                                       self.ppo_epochs)
        loss_after, inner_kls, adapted = self.loss(data, False)
        assert data.post is not None and data.post_dist is not None
        outer_kl = mean_kl(self.policy, adapted, data.post, data.post_dist)
        metrics = {"loss/surrogate_before": loss_before,
                   "loss/surrogate_after": loss_after.item(), "optim/kl": outer_kl.item(),
                   "optim/inner_kl": inner_kls.mean().item(),
                   "optim/inner_kl_coeff": self.inner_kl_coeffs.mean().item()}
        if self.adaptive_inner_kl_penalty:
            self.inner_kl_coeffs = adapt_kl_coeffs(self.inner_kl_coeffs, inner_kls.detach(),
                                                   self.target_inner_kl)
        return metrics | adaptation_metrics(data.all_batches())

    def adapt(self, policy: PerTaskPolicy, episodes: EpisodeBatch) -> PerTaskPolicy:
        """One LVC policy-gradient step per task on ``episodes``, collected by ``policy``."""
        return self.rule.adapt(policy, episodes)

    def exploration_policy(self, num_tasks: int) -> PerTaskPolicy:
        return self.rule.exploration_policy(num_tasks)

    def state_dict(self) -> dict[str, Any]:
        return parts_state_dict(policy=self.policy, optimizer=self.optimizer) | {
            "inner_kl_coeffs": self.inner_kl_coeffs.clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        load_parts_state_dict(state, policy=self.policy, optimizer=self.optimizer)
        self.inner_kl_coeffs = state["inner_kl_coeffs"].clone()

    # --- helpers ---
    def loss(self, data: AdaptationData, second_order: bool
             ) -> tuple[torch.Tensor, torch.Tensor, Params]:
        """ProMP's objective at the current meta-parameters: (clipped post-adaptation surrogate
        + mean over steps of coeff_k * inner KL_k, inner KL per step, adapted parameters)."""
        assert data.post is not None and data.post_advantages is not None
        assert data.post_dist is not None
        chain = self.rule.adapted_params(data, second_order)
        ratio = likelihood_ratio(self.policy, chain[-1], data.post, data.post_dist)
        outer = surrogate_loss(ratio, data.post_advantages, data.post.mask, self.clip_eps)
        inner_kls = torch.stack([mean_kl(self.policy, chain[k], batch, data.dists[k])
                                 for k, batch in enumerate(data.batches)])
        penalty = (self.inner_kl_coeffs.to(inner_kls) * inner_kls).mean()
        return outer + penalty, inner_kls, chain[-1]


def adapt_kl_coeffs(coeffs: torch.Tensor, kls: torch.Tensor, target: float) -> torch.Tensor:
    """Halve a coefficient whose KL is below target / 1.5, double one above target * 1.5."""
    kls = kls.to(coeffs)
    scale = torch.where(kls < target / 1.5, 0.5, torch.where(kls > target * 1.5, 2.0, 1.0))
    return coeffs * scale

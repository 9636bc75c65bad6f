"""Reptile for reinforcement learning (after Nichol, Achiam & Schulman, 2018).

Inner loop: per task, ``inner_steps`` policy-gradient steps, each on episodes freshly sampled by
the current per-task policy (linear baseline, GAE, per-task advantage normalisation), with the
same step-size schedule as meta-test adaptation. Outer step: move the meta-parameters towards the
mean adapted parameters. It is first order by construction: nothing is differentiated through
the inner steps. The move is one step of the configured optimizer on the pseudo-gradient
theta - mean_i theta_i'; with ``optimizer=sgd`` and learning rate eps it is the paper's update
theta <- theta + eps (mean_i theta_i' - theta).

With one inner step the pseudo-gradient is the plain policy gradient at theta (joint training),
so meta-learning needs ``inner_steps >= 2``. No episodes are sampled after the last inner step:
``meta_train/return_post`` is the return of the last inner batch, i.e. after
``inner_steps - 1`` steps.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from metarl_cli.core.adaptation import StepSchedule, adaptation_metrics
from metarl_cli.core.checks import check_positive, require_optimizer
from metarl_cli.core.functional import Params, PerTaskPolicy
from metarl_cli.core.gradient_learner import (
    AdaptationRule,
    load_parts_state_dict,
    parts_state_dict,
)
from metarl_cli.core.sampler import Sampler
from metarl_cli.core.types import EpisodeBatch, OptimizerFactory


class Reptile:
    def __init__(self, policy: nn.Module, sampler: Sampler, rollouts_per_task: int = 20,
                 inner_lr: float = 0.1, later_lr_scale: float = 0.5,
                 inner_lrs: list[float] | None = None, inner_steps: int = 2,
                 gamma: float = 0.99, gae_lambda: float = 1.0,
                 optimizer: OptimizerFactory | None = None) -> None:
        check_positive(rollouts_per_task=rollouts_per_task, inner_steps=inner_steps)
        self.policy = policy
        self.sampler = sampler
        self.rollouts_per_task = rollouts_per_task
        self.rule = AdaptationRule(policy, StepSchedule(inner_lr, later_lr_scale, inner_lrs),
                                   gamma, gae_lambda)
        self.inner_steps = inner_steps
        self.optimizer = require_optimizer(optimizer, "Reptile's outer step")(
            policy.parameters())

    def train_step(self, tasks: list[Any]) -> dict[str, float]:
        # --- inner loop: inner_steps policy-gradient steps per task on fresh episodes ---
        data = self.rule.sample_and_adapt(self.sampler, tasks, self.rollouts_per_task,
                                          self.inner_steps, sample_post=False)

        # --- outer step: towards the mean adapted parameters ---
        grads = reptile_pseudo_gradient(dict(self.policy.named_parameters()),
                                        data.acting[-1].params)
        self.optimizer.zero_grad()
        for name, p in self.policy.named_parameters():
            p.grad = grads[name]
        self.optimizer.step()
        norm = torch.sqrt(sum((g**2).sum() for g in grads.values())).item()
        return {"loss/pseudo_gradient_norm": norm} | adaptation_metrics(data.batches)

    def adapt(self, policy: PerTaskPolicy, episodes: EpisodeBatch) -> PerTaskPolicy:
        """One policy-gradient step per task on ``episodes``, collected by ``policy``."""
        return self.rule.adapt(policy, episodes)

    def exploration_policy(self, num_tasks: int) -> PerTaskPolicy:
        return self.rule.exploration_policy(num_tasks)

    def state_dict(self) -> dict[str, Any]:
        return parts_state_dict(policy=self.policy, optimizer=self.optimizer)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        load_parts_state_dict(state, policy=self.policy, optimizer=self.optimizer)


def reptile_pseudo_gradient(meta: Params, adapted: Params) -> Params:
    """theta - mean over tasks of the adapted theta_i (``adapted`` has a leading task axis)."""
    return {n: (p.detach() - adapted[n].mean(0)).clone() for n, p in meta.items()}

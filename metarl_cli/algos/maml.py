"""MAML for reinforcement learning (Finn, Abbeel & Levine, ICML 2017).

Inner loop: ``inner_steps`` policy-gradient steps per task on freshly sampled episodes (linear
feature baseline, GAE, per-task advantage normalisation), step size ``inner_lr`` for the first
step and ``inner_lr * later_lr_scale`` for the later ones, or ``inner_lrs[k]`` per step, or
learned per parameter entry and step (``learn_inner_lr``, Meta-SGD, Li et al. 2017). Meta-test
may take more steps than training; those reuse the last step's size. Outer step on the
post-adaptation surrogate, differentiated through the inner steps (second order unless
``first_order``): ``outer_step="trpo"`` takes a trust-region step (the paper's choice), ``"vpg"``
one step of the configured torch optimizer, ``"ppo"`` ``ppo_epochs`` steps of it on the clipped
surrogate (Schulman et al., 2017) without resampling.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from metarl_cli.core.adaptation import (
    AdaptationData,
    LearnedStepSizes,
    StepSchedule,
    StepSize,
    adapt_policy,
    adaptation_metrics,
    adapted_params,
    inner_step,
    likelihood_ratio,
    mean_kl,
    optimizer_update,
    sample_and_adapt,
    surrogate_loss,
)
from metarl_cli.core.functional import Params, PerTaskPolicy, broadcast_policy
from metarl_cli.core.optim import gradient_step_kl_product, trpo_step
from metarl_cli.core.returns import policy_gradient_advantages
from metarl_cli.core.sampler import Sampler
from metarl_cli.core.types import EpisodeBatch

OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]
OUTER_STEPS = ("trpo", "vpg", "ppo")


class MAML:
    def __init__(self, policy: nn.Module, sampler: Sampler, rollouts_per_task: int = 20,
                 inner_lr: float = 0.1, later_lr_scale: float = 0.5,
                 inner_lrs: list[float] | None = None, learn_inner_lr: bool = False,
                 inner_steps: int = 1, first_order: bool = False, outer_step: str = "trpo",
                 max_kl: float = 0.01, cg_iters: int = 10, cg_damping: float = 1e-5,
                 line_search_steps: int = 15, backtrack_ratio: float = 0.8, ppo_epochs: int = 5,
                 clip_eps: float = 0.2, gamma: float = 0.99, gae_lambda: float = 1.0,
                 optimizer: OptimizerFactory | None = None) -> None:
        if outer_step not in OUTER_STEPS:
            raise ValueError(f"outer_step must be one of {', '.join(OUTER_STEPS)}, "
                             f"got {outer_step!r}")
        for name, value in [("rollouts_per_task", rollouts_per_task), ("inner_lr", inner_lr),
                            ("later_lr_scale", later_lr_scale), ("inner_steps", inner_steps),
                            ("max_kl", max_kl), ("cg_iters", cg_iters),
                            ("line_search_steps", line_search_steps), ("ppo_epochs", ppo_epochs)]:
            if not value > 0:
                raise ValueError(f"{name} must be > 0, got {value}")
        for name, value in [("backtrack_ratio", backtrack_ratio), ("gamma", gamma),
                            ("gae_lambda", gae_lambda), ("clip_eps", clip_eps)]:
            if not 0 < value <= 1:
                raise ValueError(f"{name} must be in (0, 1], got {value}")
        if outer_step != "trpo" and optimizer is None:
            raise ValueError(f"outer_step={outer_step} needs an optimizer "
                             "(choose one with optimizer=...)")
        self.policy = policy
        self.sampler = sampler
        self.rollouts_per_task = rollouts_per_task
        self.schedule = StepSchedule(inner_lr, later_lr_scale,
                                     None if inner_lrs is None else tuple(inner_lrs))
        self.step_sizes = (LearnedStepSizes(policy, inner_steps, self.schedule)
                           if learn_inner_lr else None)
        self.inner_steps = inner_steps
        self.first_order = first_order
        self.outer_step = outer_step
        self.trpo_args = dict(max_kl=max_kl, cg_iters=cg_iters, cg_damping=cg_damping,
                              line_search_steps=line_search_steps,
                              backtrack_ratio=backtrack_ratio)
        self.ppo_epochs, self.clip_eps = ppo_epochs, clip_eps
        self.gamma, self.gae_lambda = gamma, gae_lambda
        self.optimizer = (optimizer(self._meta_parameters()) if outer_step != "trpo" else None)

    def train_step(self, tasks: list[Any]) -> dict[str, float]:
        # --- inner loop: sample with the current per-task policy, adapt, repeat ---
        data = sample_and_adapt(self.policy, self.sampler, tasks, self.rollouts_per_task,
                                self.inner_steps, self._step_size, self.gamma, self.gae_lambda)
        post, post_adv, old = data.post, data.post_advantages, data.post_dist
        assert post is not None and post_adv is not None and old is not None

        # --- outer step on the post-adaptation surrogate, all tasks in one graph ---
        def adapted(differentiable: bool) -> Params:
            second_order = differentiable and not self.first_order
            return adapted_params(self.policy, data, self._step_size, second_order)[-1]

        def surrogate(differentiable: bool, clip_eps: float | None = None) -> torch.Tensor:
            ratio = likelihood_ratio(self.policy, adapted(differentiable), post, old)
            return surrogate_loss(ratio, post_adv, post.mask, clip_eps)

        def kl(differentiable: bool) -> torch.Tensor:
            return mean_kl(self.policy, adapted(differentiable), post, old)

        if self.optimizer is None:
            metrics = trpo_step(self._meta_parameters(), surrogate, kl, **self.trpo_args,
                                curvature=self._kl_curvature(data))
        else:
            ppo = self.outer_step == "ppo"
            before = optimizer_update(
                self.optimizer, lambda: surrogate(True, self.clip_eps if ppo else None),
                self.ppo_epochs if ppo else 1)
            metrics = {"loss/surrogate_before": before, "optim/kl": kl(False).item()}
        return metrics | adaptation_metrics(data.all_batches())

    def exploration_policy(self, num_tasks: int) -> PerTaskPolicy:
        return broadcast_policy(self.policy, num_tasks)

    def adapt(self, policy: PerTaskPolicy, episodes: EpisodeBatch) -> PerTaskPolicy:
        """One policy-gradient step per task on ``episodes``, collected by ``policy``."""
        advantages = policy_gradient_advantages(episodes, self.gamma, self.gae_lambda)
        return adapt_policy(policy, episodes, advantages, self._step_size(policy.step))

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"policy": self.policy.state_dict()}
        if self.optimizer is not None:
            state["optimizer"] = self.optimizer.state_dict()
        if self.step_sizes is not None:
            state["step_sizes"] = self.step_sizes.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.policy.load_state_dict(state["policy"])
        if self.optimizer is not None:
            self.optimizer.load_state_dict(state["optimizer"])
        if self.step_sizes is not None:
            self.step_sizes.load_state_dict(state["step_sizes"])

    # --- helpers ---
    def _kl_curvature(self, data: AdaptationData
                      ) -> Callable[[], Callable[[torch.Tensor], torch.Tensor]] | None:
        """The outer KL's Hessian-vector product in the cheaper form of
        :func:`~metarl_cli.core.optim.gradient_step_kl_product` where it is exact (one inner
        step with one step size, the paper's setting); None: TRPO's autograd product."""
        if self.inner_steps != 1 or self.step_sizes is not None:
            return None
        batch, advantages, post, old = (data.batches[0], data.advantages[0], data.post,
                                        data.post_dist)
        assert post is not None and old is not None

        def build() -> Callable[[torch.Tensor], torch.Tensor]:
            params = {n: p.detach().unsqueeze(0).expand(len(batch.tasks), *p.shape).clone()
                      .requires_grad_() for n, p in self.policy.named_parameters()}
            adapted = inner_step(self.policy, params, batch, advantages, self._step_size(0),
                                 create_graph=not self.first_order)
            names = list(adapted)
            return gradient_step_kl_product(
                list(params.values()), list(adapted.values()),
                lambda ps: mean_kl(self.policy, dict(zip(names, ps, strict=True)), post, old))

        return build

    def _step_size(self, step: int) -> StepSize:
        """Inner step size of adaptation step ``step``: learned or from the schedule."""
        if self.step_sizes is not None:
            return self.step_sizes.for_step(step)
        return self.schedule(step)

    def _meta_parameters(self) -> list[torch.Tensor]:
        """What the outer step updates: the policy, and the step sizes when they are learned."""
        learned = [] if self.step_sizes is None else list(self.step_sizes.parameters())
        return [*self.policy.parameters(), *learned]

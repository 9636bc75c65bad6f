"""MAML for reinforcement learning (Finn, Abbeel & Levine, ICML 2017).

Inner loop: ``inner_steps`` policy-gradient steps per task on freshly sampled episodes (linear
feature baseline, GAE, per-task advantage normalisation), step size ``inner_lr`` for the first
step and ``inner_lr * later_lr_scale`` for the later ones. Outer step on the post-adaptation
surrogate, differentiated through the inner steps (second order unless ``first_order``):
``outer_step="trpo"`` takes a trust-region step (the paper's choice), ``"vpg"`` one step of the
configured torch optimizer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn
from torch.distributions import kl_divergence

from metarl_cli.core.functional import (
    Params,
    PerTaskPolicy,
    broadcast_policy,
    expand_params,
    task_distribution,
)
from metarl_cli.core.optim import trpo_step
from metarl_cli.core.returns import policy_gradient_advantages
from metarl_cli.core.sampler import Sampler
from metarl_cli.core.types import EpisodeBatch

OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]
OUTER_STEPS = ("trpo", "vpg")


class MAML:
    def __init__(self, policy: nn.Module, sampler: Sampler, rollouts_per_task: int = 20,
                 inner_lr: float = 0.1, later_lr_scale: float = 0.5, inner_steps: int = 1,
                 first_order: bool = False, outer_step: str = "trpo", max_kl: float = 0.01,
                 cg_iters: int = 10, cg_damping: float = 1e-5, line_search_steps: int = 15,
                 backtrack_ratio: float = 0.8, gamma: float = 0.99, gae_lambda: float = 1.0,
                 optimizer: OptimizerFactory | None = None) -> None:
        if outer_step not in OUTER_STEPS:
            raise ValueError(f"outer_step must be one of {', '.join(OUTER_STEPS)}, "
                             f"got {outer_step!r}")
        for name, value in [("rollouts_per_task", rollouts_per_task), ("inner_lr", inner_lr),
                            ("later_lr_scale", later_lr_scale), ("inner_steps", inner_steps),
                            ("max_kl", max_kl), ("cg_iters", cg_iters),
                            ("line_search_steps", line_search_steps)]:
            if not value > 0:
                raise ValueError(f"{name} must be > 0, got {value}")
        for name, value in [("backtrack_ratio", backtrack_ratio), ("gamma", gamma),
                            ("gae_lambda", gae_lambda)]:
            if not 0 < value <= 1:
                raise ValueError(f"{name} must be in (0, 1], got {value}")
        if outer_step == "vpg" and optimizer is None:
            raise ValueError("outer_step=vpg needs an optimizer (choose one with optimizer=...)")
        self.policy = policy
        self.sampler = sampler
        self.rollouts_per_task = rollouts_per_task
        self.inner_lr, self.later_lr_scale, self.inner_steps = inner_lr, later_lr_scale, inner_steps
        self.first_order = first_order
        self.outer_step = outer_step
        self.trpo_args = dict(max_kl=max_kl, cg_iters=cg_iters, cg_damping=cg_damping,
                              line_search_steps=line_search_steps,
                              backtrack_ratio=backtrack_ratio)
        self.gamma, self.gae_lambda = gamma, gae_lambda
        self.optimizer = optimizer(policy.parameters()) if outer_step == "vpg" else None

    def train_step(self, tasks: list[Any]) -> dict[str, float]:
        # --- inner loop: sample with the current per-task policy, adapt, repeat ---
        acting = self.exploration_policy(len(tasks))
        batches: list[EpisodeBatch] = []
        inner_adv: list[torch.Tensor] = []
        for _ in range(self.inner_steps):
            batches.append(self.sampler.sample(acting, tasks, self.rollouts_per_task))
            inner_adv.append(policy_gradient_advantages(batches[-1], self.gamma, self.gae_lambda))
            acting = self._adapt(acting, batches[-1], inner_adv[-1])
        post = self.sampler.sample(acting, tasks, self.rollouts_per_task)
        post_adv = policy_gradient_advantages(post, self.gamma, self.gae_lambda)
        old = task_distribution(self.policy, acting.params, post.obs)

        # --- outer step on the post-adaptation surrogate, all tasks in one graph ---
        def adapted(differentiable: bool) -> Params:
            params = expand_params(self.policy, len(tasks))
            for k, (batch, adv) in enumerate(zip(batches, inner_adv, strict=True)):
                params = self._inner_step(params, batch, adv, k,
                                          differentiable and not self.first_order)
            return params

        def surrogate(differentiable: bool) -> torch.Tensor:
            new = task_distribution(self.policy, adapted(differentiable), post.obs)
            ratio = torch.exp(new.log_prob(post.actions) - old.log_prob(post.actions))
            return -_task_means(ratio * post_adv, post.mask).mean()

        def kl(differentiable: bool) -> torch.Tensor:
            new = task_distribution(self.policy, adapted(differentiable), post.obs)
            return _task_means(kl_divergence(old, new), post.mask).mean()

        if self.optimizer is None:
            metrics = trpo_step(list(self.policy.parameters()), surrogate, kl, **self.trpo_args)
        else:
            self.optimizer.zero_grad()
            loss = surrogate(True)
            loss.backward()
            self.optimizer.step()
            metrics = {"loss/surrogate_before": loss.item(), "optim/kl": kl(False).item()}

        returns = [b.episode_returns().mean().item() for b in [*batches, post]]
        metrics |= {"meta_train/return_pre": returns[0], "meta_train/return_post": returns[-1],
                    "meta_train/adaptation_gain": returns[-1] - returns[0],
                    "env_steps": float(sum(b.num_steps for b in [*batches, post]))}
        if self.inner_steps > 1:
            metrics |= {f"meta_train/return_step_{k}": r for k, r in enumerate(returns)}
        return metrics

    def exploration_policy(self, num_tasks: int) -> PerTaskPolicy:
        return broadcast_policy(self.policy, num_tasks)

    def adapt(self, policy: PerTaskPolicy, episodes: EpisodeBatch) -> PerTaskPolicy:
        """One policy-gradient step per task on ``episodes``, collected by ``policy``."""
        return self._adapt(policy, episodes,
                           policy_gradient_advantages(episodes, self.gamma, self.gae_lambda))

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
    def _adapt(self, policy: PerTaskPolicy, episodes: EpisodeBatch, advantages: torch.Tensor
               ) -> PerTaskPolicy:
        params = {n: p.detach().clone().requires_grad_() for n, p in policy.params.items()}
        new = self._inner_step(params, episodes, advantages, policy.step, create_graph=False)
        return PerTaskPolicy(self.policy, {n: p.detach() for n, p in new.items()},
                             policy.step + 1)

    def _inner_lr(self, step: int) -> float:
        return self.inner_lr * (self.later_lr_scale if step > 0 else 1.0)

    def _inner_step(self, params: Params, batch: EpisodeBatch, advantages: torch.Tensor,
                    step: int, create_graph: bool) -> Params:
        """Per-task params - lr_step * grad of each task's policy-gradient loss.

        ``params`` carry a leading task axis; task i's loss depends on task i's parameters
        only, so one gradient of the summed losses gives every task's own gradient.
        """
        dist = task_distribution(self.policy, params, batch.obs)
        losses = -_task_means(dist.log_prob(batch.actions) * advantages, batch.mask)
        grads = torch.autograd.grad(losses.sum(), list(params.values()),
                                    create_graph=create_graph)
        lr = self._inner_lr(step)
        return {n: p - lr * g for (n, p), g in zip(params.items(), grads, strict=True)}


def _task_means(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over each task's valid steps: (N, R, T) -> (N,)."""
    return (x * mask).sum((1, 2)) / mask.sum((1, 2)).clamp_min(1.0)

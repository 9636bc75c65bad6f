"""Policies as pure functions of a parameter dict, so adaptation steps can be differentiated.

A gradient-based learner keeps one parameter dict per task (stacked on a leading task axis for
acting); ``torch.func.functional_call`` evaluates the policy module with any such dict.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.distributions import Distribution
from torch.func import functional_call, vmap

Params = dict[str, torch.Tensor]


def distribution(policy: nn.Module, params: Params, obs: torch.Tensor) -> Distribution:
    """The action distribution of ``policy`` evaluated with ``params`` instead of its own."""
    return policy.distribution(functional_call(policy, params, (obs,)))


def task_forward(policy: nn.Module, params: Params, obs: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The policy's outputs for N tasks at once: ``params`` have a leading task axis N, ``obs``
    is (N, ...), and task i's observations are evaluated with task i's parameters."""
    return vmap(lambda p, o: functional_call(policy, p, (o,)))(params, obs)


def task_distribution(policy: nn.Module, params: Params, obs: torch.Tensor) -> Distribution:
    return policy.distribution(task_forward(policy, params, obs))


def expand_params(policy: nn.Module, num_tasks: int) -> Params:
    """The policy's own parameters repeated along a new task axis, still differentiable."""
    return {n: p.unsqueeze(0).expand(num_tasks, *p.shape) for n, p in policy.named_parameters()}


@dataclass(frozen=True)
class PerTaskPolicy:
    """Acting policy for N tasks, each with its own parameters (leading axis N of ``params``).

    ``step`` counts the adaptation steps already taken, for step-size schedules.
    """

    policy: nn.Module
    params: Params
    step: int = 0

    def act(self, obs: torch.Tensor, generator: torch.Generator
            ) -> tuple[torch.Tensor, torch.Tensor]:
        """Actions and their log-probabilities for observations of shape (N, R, obs_dim)."""
        shared = _shared(self.params)
        if shared is None:
            out = task_forward(self.policy, self.params, obs)
        else:  # one set of parameters for all tasks (before adaptation): one plain forward
            flat = functional_call(self.policy, shared, (obs.reshape(-1, obs.shape[-1]),))
            out = tuple(x.reshape(*obs.shape[:2], *x.shape[1:]) for x in flat)
        actions = self.policy.sample(out, generator)
        return actions, self.policy.distribution(out).log_prob(actions)


def _shared(params: Params) -> Params | None:
    """The one parameter set behind ``params`` when every entry is broadcast along the task
    axis (stride 0, as :func:`broadcast_policy` makes them), else None. Acting then needs no
    per-task batching, which made the sampler's forward about twice as fast."""
    if all(p.dim() > 0 and p.stride(0) == 0 for p in params.values()):
        return {n: p[0] for n, p in params.items()}
    return None


def broadcast_policy(policy: nn.Module, num_tasks: int) -> PerTaskPolicy:
    """The same (meta-)parameters for every task."""
    return PerTaskPolicy(policy, {n: p.detach() for n, p in
                                  expand_params(policy, num_tasks).items()})

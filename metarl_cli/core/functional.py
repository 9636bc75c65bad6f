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


def detached_params(policy: nn.Module) -> Params:
    return {name: p.detach() for name, p in policy.named_parameters()}


def stack_params(per_task: list[Params]) -> Params:
    return {name: torch.stack([p[name] for p in per_task]) for name in per_task[0]}


def task_params(stacked: Params, i: int) -> Params:
    return {name: p[i] for name, p in stacked.items()}


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
        out = vmap(lambda p, o: functional_call(self.policy, p, (o,)))(self.params, obs)
        actions = self.policy.sample(out, generator)
        return actions, self.policy.distribution(out).log_prob(actions)


def broadcast_policy(policy: nn.Module, num_tasks: int) -> PerTaskPolicy:
    """The same (meta-)parameters for every task."""
    params = {n: p.detach().unsqueeze(0).expand(num_tasks, *p.shape)
              for n, p in policy.named_parameters()}
    return PerTaskPolicy(policy, params)

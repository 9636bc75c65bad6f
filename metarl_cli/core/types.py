"""Records passed between the sampler, the algorithms and the evaluation."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

# A torch optimizer class or partial: called with the parameters (and optionally keywords).
OptimizerFactory = Callable[..., torch.optim.Optimizer]


@dataclass(frozen=True)
class EpisodeBatch:
    """Episodes of N tasks x R rollouts x T steps, on the policy's device.

    ``mask`` is 1 for the steps an episode really took and 0 after it terminated, so every
    per-step quantity is summed or averaged with it.
    """

    tasks: list[Any]
    obs: torch.Tensor  # (N, R, T, obs_dim)
    actions: torch.Tensor  # (N, R, T, act_dim) or (N, R, T) for discrete actions
    rewards: torch.Tensor  # (N, R, T)
    mask: torch.Tensor  # (N, R, T)
    log_probs: torch.Tensor  # (N, R, T), under the policy that collected the batch
    final_obs: torch.Tensor | None = None  # (N, R, obs_dim): the observation after the last step

    def next_obs(self) -> torch.Tensor:
        """The observation that followed every step, (N, R, T, obs_dim). After an episode's
        terminating step it is that step's outcome; after the padding it is meaningless (masked)."""
        if self.final_obs is None:
            raise ValueError("this batch has no final_obs, so the last step has no next obs")
        return torch.cat([self.obs[:, :, 1:], self.final_obs.unsqueeze(2)], dim=2)

    @property
    def num_steps(self) -> int:
        """Environment steps actually taken (terminated episodes stop counting)."""
        return int(self.mask.sum().item())

    def episode_returns(self) -> torch.Tensor:
        """Undiscounted return of every episode, (N, R)."""
        return (self.rewards * self.mask).sum(-1)

    def mean_returns(self) -> torch.Tensor:
        """Mean undiscounted return of every task's episodes, (N,). Episodes without a step
        (the padding of a step-budget batch, core/step_budget.py) are left out."""
        taken = self.mask[..., 0]
        return (self.episode_returns() * taken).sum(1) / taken.sum(1).clamp_min(1.0)

    def first_rollouts(self, count: int) -> EpisodeBatch:
        """The first ``count`` rollouts of every task (rollouts are exchangeable draws, so
        this is a sample of each task's episodes)."""
        return self._indexed((slice(None), slice(0, count)), self.tasks)

    def task(self, i: int) -> EpisodeBatch:
        """The episodes of task i, keeping a task axis of length 1."""
        return self._indexed(slice(i, i + 1), [self.tasks[i]])

    def _indexed(self, index: Any, tasks: list[Any]) -> EpisodeBatch:
        """Every per-episode tensor indexed by ``index`` (over the leading task and rollout
        axes), for ``tasks``."""
        final = None if self.final_obs is None else self.final_obs[index]
        return EpisodeBatch(tasks, self.obs[index], self.actions[index], self.rewards[index],
                            self.mask[index], self.log_probs[index], final)

"""Collects episodes from a batched task family; contains no learning code.

All N tasks x R rollouts run together in one batched environment: one policy forward per time
step for the whole batch, no worker processes. The sampler owns the random generators for
environment resets and action noise, so a run is repeatable and resumable.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import torch

from metarl_cli.core.types import EpisodeBatch
from metarl_cli.envs.base import BatchedEnv


class TaskPolicy(Protocol):
    def act(self, obs: torch.Tensor, generator: torch.Generator
            ) -> tuple[torch.Tensor, torch.Tensor]: ...


class Sampler:
    def __init__(self, env: BatchedEnv, horizon: int, seed: int, device: str = "cpu") -> None:
        if horizon < 1:
            raise ValueError(f"env.horizon must be >= 1, got {horizon}")
        self.env = env
        self.horizon = horizon
        self.device = torch.device(device)
        self.rng = np.random.default_rng(seed)
        self.generator = torch.Generator().manual_seed(seed)

    def sample(self, policy: TaskPolicy, tasks: Sequence[Any], rollouts: int) -> EpisodeBatch:
        """Run ``rollouts`` episodes of ``horizon`` steps on each task.

        Tensors come back in torch's default dtype, on the sampler's device.
        """
        n, t_max = len(tasks), self.horizon
        dtype = torch.get_default_dtype()
        b = n * rollouts
        self.env.set_tasks([task for task in tasks for _ in range(rollouts)])
        obs = self.env.reset(self.rng)
        obs_buf = np.zeros((t_max, b, obs.shape[-1]))
        rewards = np.zeros((t_max, b))
        mask = np.zeros((t_max, b))
        actions: list[torch.Tensor] = []
        log_probs: list[torch.Tensor] = []
        alive = np.ones(b, dtype=bool)
        for t in range(t_max):
            obs_buf[t] = obs
            mask[t] = alive
            obs_t = torch.from_numpy(obs_buf[t]).to(self.device, dtype).view(n, rollouts, -1)
            with torch.no_grad():
                action, log_prob = policy.act(obs_t, self.generator)
            actions.append(action)
            log_probs.append(log_prob)
            flat_action = action.reshape(b, *action.shape[2:]).cpu().numpy()
            obs, reward, terminated = self.env.step(flat_action)
            rewards[t] = reward * alive
            alive &= ~terminated
            if not alive.any():
                break
        for _ in range(len(actions), t_max):  # all episodes ended early: pad with masked steps
            actions.append(torch.zeros_like(actions[0]))
            log_probs.append(torch.zeros_like(log_probs[0]))

        def episodes_first(x: torch.Tensor) -> torch.Tensor:  # (T, B, ...) -> (N, R, T, ...)
            x = x.to(self.device, dtype).reshape(t_max, n, rollouts, *x.shape[2:])
            return x.movedim(0, 2).contiguous()

        return EpisodeBatch(
            tasks=list(tasks),
            obs=episodes_first(torch.from_numpy(obs_buf)),
            actions=torch.stack(actions).movedim(0, 2).contiguous(),
            rewards=episodes_first(torch.from_numpy(rewards)),
            mask=episodes_first(torch.from_numpy(mask)),
            log_probs=torch.stack(log_probs).movedim(0, 2).contiguous(),
        )

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self.rng.bit_generator.state, "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]
        self.generator.set_state(state["generator"])

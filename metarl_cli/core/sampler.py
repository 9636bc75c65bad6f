"""Collects episodes from a batched task family; contains no learning code.

All N tasks x R rollouts run together in one batched environment: one policy forward per time
step for the whole batch, no worker processes. The sampler owns the random generators for
environment resets and action noise, so a run is repeatable and resumable.

The policy runs on one torch thread while sampling. Its forward on a few hundred observations
is too small to gain from more, and idle torch worker threads spin on the cores for a while
after each forward, which halved the speed of the physics threads on a 2-core machine. It also
makes the sampled episodes independent of the ``torch_threads`` setting.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol

import numpy as np
import torch

from metarl_cli.core.types import EpisodeBatch
from metarl_cli.envs.base import BatchedEnv


class TaskPolicy(Protocol):
    """Acts for observations of shape (N, R, obs_dim), one row per task and rollout.

    A policy with memory (RL²) may also have ``observe(rewards, ended)``: the sampler calls it
    after every step with the (N, R) rewards just recorded (0 once an episode is over) and a bool
    (N, R) tensor that is True at the step where that episode ends (termination or the horizon).
    Every episode ends exactly once per :meth:`Sampler.sample` call, so the next call starts new
    episodes for all rows.
    """

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
        with _torch_threads(1):
            return self._sample(policy, tasks, rollouts)

    def _sample(self, policy: TaskPolicy, tasks: Sequence[Any], rollouts: int) -> EpisodeBatch:
        n, t_max = len(tasks), self.horizon
        dtype = torch.get_default_dtype()
        b = n * rollouts
        self.env.set_tasks([task for task in tasks for _ in range(rollouts)])
        obs = self.env.reset(self.rng)
        obs_buf = np.zeros((t_max, b, obs.shape[-1]))
        rewards = np.zeros((t_max, b))
        mask = np.zeros((t_max, b))
        actions: torch.Tensor | None = None  # (T, N, R, ...) once the first action's shape is known
        log_probs = torch.zeros((t_max, n, rollouts), dtype=dtype, device=self.device)
        alive = np.ones(b, dtype=bool)
        observe = getattr(policy, "observe", None)
        obs_buf[0] = obs
        for t in range(t_max):
            mask[t] = alive
            obs_t = torch.from_numpy(obs_buf[t]).to(self.device, dtype).view(n, rollouts, -1)
            with torch.no_grad():
                action, log_prob = policy.act(obs_t, self.generator)
            if actions is None:  # padding after early termination stays zero, as the mask says
                actions = action.new_zeros((t_max, *action.shape))
            actions[t] = action
            log_probs[t] = log_prob
            obs, reward, terminated = self.env.step(action.reshape(b, *action.shape[2:]).cpu()
                                                    .numpy(), alive.copy())
            # the padding after an episode's end holds zeros, whatever an ended environment
            # returns (e.g. a diverged state's NaN, which x * mask would carry on)
            obs = np.where(alive[:, None], obs, 0.0)
            if t + 1 < t_max:  # written before a possible break: next_obs of a terminal step
                obs_buf[t + 1] = obs
            rewards[t] = np.where(alive, reward, 0.0)
            ended = alive & (terminated | (t == t_max - 1))
            alive &= ~terminated
            if observe is not None:
                observe(torch.from_numpy(rewards[t]).to(self.device, dtype).view(n, rollouts),
                        torch.from_numpy(ended).to(self.device).view(n, rollouts))
            if not alive.any():
                break
        assert actions is not None  # horizon >= 1

        def episodes_first(x: torch.Tensor) -> torch.Tensor:  # (T, B, ...) -> (N, R, T, ...)
            x = x.to(self.device, dtype).reshape(t_max, n, rollouts, *x.shape[2:])
            return x.movedim(0, 2).contiguous()

        return EpisodeBatch(
            tasks=list(tasks),
            obs=episodes_first(torch.from_numpy(obs_buf)),
            actions=actions.movedim(0, 2).contiguous(),
            rewards=episodes_first(torch.from_numpy(rewards)),
            mask=episodes_first(torch.from_numpy(mask)),
            log_probs=log_probs.movedim(0, 2).contiguous(),
            final_obs=torch.from_numpy(obs).to(self.device, dtype).view(n, rollouts, -1),
        )

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self.rng.bit_generator.state, "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]
        self.generator.set_state(state["generator"])


@contextmanager
def _torch_threads(num_threads: int) -> Iterator[None]:
    """Run a block with ``num_threads`` torch intra-op threads, then restore the setting."""
    before = torch.get_num_threads()
    if before != num_threads:
        torch.set_num_threads(num_threads)
    try:
        yield
    finally:
        if before != num_threads:
            torch.set_num_threads(before)

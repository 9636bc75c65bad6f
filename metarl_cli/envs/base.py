"""The task-family interface shared by every environment, and the generic batched path.

A task family is a gymnasium environment with two extra methods, ``sample_tasks(n, rng)`` and
``set_task(task)``. Its batched form holds B environments (one task each, tasks repeated for
several rollouts) and steps them together; families without a fast batched form are batched by
:class:`SerialBatch`, which steps ordinary single environments one after another. Any registered
gymnasium id whose environment has the task API goes through the sampler that way with
:func:`gymnasium_family`, e.g. in an env config::

    family:
      _target_: metarl_cli.envs.base.gymnasium_family
      env_id: metarl/PointNav-v0
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

import gymnasium as gym
import numpy as np


@runtime_checkable
class TaskEnv(Protocol):
    """A gymnasium environment whose task can be sampled and set."""

    observation_space: gym.Space
    action_space: gym.Space

    def sample_tasks(self, n: int, rng: np.random.Generator) -> list[Any]: ...

    def set_task(self, task: Any) -> None: ...


class BatchedEnv(Protocol):
    """B environments stepped together; arrays carry the batch on their first axis.

    ``step`` returns (observations, rewards, terminated). Time limits are the sampler's business:
    it runs a fixed horizon and masks the steps after a termination. It passes the bool (B,)
    ``active`` of the episodes still running, so that a family may leave the others unstepped:
    their rows of the results are never read.
    """

    observation_space: gym.Space
    action_space: gym.Space

    def sample_tasks(self, n: int, rng: np.random.Generator) -> list[Any]: ...

    def set_tasks(self, tasks: Sequence[Any]) -> None: ...

    def reset(self, rng: np.random.Generator) -> np.ndarray: ...

    def step(self, actions: np.ndarray, active: np.ndarray | None = None
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...


class SerialBatch:
    """Batched form of any :class:`TaskEnv`: B single environments stepped one after another.

    Reset randomness is drawn from the ``rng`` passed to :meth:`reset`, one seed per environment,
    so a run is repeatable and numpy's global generator is never touched.
    """

    def __init__(self, make_env: Callable[[], TaskEnv]) -> None:
        self._make_env = make_env
        self._envs: list[TaskEnv] = [make_env()]
        self.observation_space = self._envs[0].observation_space
        self.action_space = self._envs[0].action_space

    def sample_tasks(self, n: int, rng: np.random.Generator) -> list[Any]:
        return self._envs[0].sample_tasks(n, rng)

    def set_tasks(self, tasks: Sequence[Any]) -> None:
        while len(self._envs) < len(tasks):
            self._envs.append(self._make_env())
        self._active = self._envs[: len(tasks)]
        for env, task in zip(self._active, tasks, strict=True):
            env.set_task(task)

    def reset(self, rng: np.random.Generator) -> np.ndarray:
        seeds = rng.integers(0, 2**31 - 1, size=len(self._active))
        pairs = zip(self._active, seeds, strict=True)
        return np.stack([env.reset(seed=int(s))[0] for env, s in pairs])

    def step(self, actions: np.ndarray, active: np.ndarray | None = None
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Step the environments whose episode is running (all without ``active``); a
        terminated environment is not stepped again, and its rows hold zeros."""
        b = len(self._active)
        running = np.ones(b, dtype=bool) if active is None else active
        if len(actions) != b or len(running) != b:
            raise ValueError(f"step needs {b} actions and active flags, got {len(actions)} and "
                             f"{len(running)}")
        results = {i: self._active[i].step(actions[i]) for i in np.flatnonzero(running)}
        if not results:
            raise ValueError("step needs at least one active environment")
        obs = np.zeros((b, *np.shape(next(iter(results.values()))[0])))
        rewards, terminated = np.zeros(b), np.ones(b, dtype=bool)
        for i, (o, r, term, *_) in results.items():
            obs[i], rewards[i], terminated[i] = o, r, term
        return obs, rewards, terminated

    def close(self) -> None:
        for env in self._envs:
            env.close()  # type: ignore[attr-defined]


def gymnasium_family(env_id: str, **env_kwargs: Any) -> SerialBatch:
    """The generic batched form of the registered gymnasium environment ``env_id`` (made with
    ``env_kwargs``), which must have the task API. Its wrappers are dropped: the sampler runs a
    fixed horizon and needs ``sample_tasks``/``set_task`` on the environment itself."""

    def make() -> TaskEnv:
        try:
            env = gym.make(env_id, **env_kwargs).unwrapped
        except gym.error.Error as error:
            raise ValueError(f"env_id: cannot make {env_id!r} ({error})") from error
        if not isinstance(env, TaskEnv):
            raise ValueError(f"env_id: {env_id!r} has no task API (sample_tasks(n, rng) and "
                             "set_task(task)); wrap it in a task family first")
        return env

    return SerialBatch(make)

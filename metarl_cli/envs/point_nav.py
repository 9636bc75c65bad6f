"""2D navigation (Finn et al., ICML 2017, section 5.2).

A point starts at the origin and moves by ``max_step * clip(action, -1, 1)``. The reward after
each move is the negative Euclidean distance to the task's goal, goals are uniform in
[-goal_range, goal_range]^2, and the episode ends once both coordinates are within `tolerance`
of the goal. The observation is the position.

The policy acts in [-1, 1]^2 as in the paper's code, where the environment (steps of at most 0.1)
is wrapped in rllab's ``normalize``, which maps [-1, 1] onto the step bounds. Acting directly in
[-0.1, 0.1] instead makes a unit-std Gaussian policy saturate at the bounds on nearly every step.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from metarl_cli.core.checks import check_positive


@dataclass(frozen=True)
class GoalTask:
    goal: tuple[float, float]


def _sample_goals(n: int, rng: np.random.Generator, goal_range: float) -> list[GoalTask]:
    goals = rng.uniform(-goal_range, goal_range, size=(n, 2))
    return [GoalTask(goal=(float(x), float(y))) for x, y in goals]


# --- point-mass pieces, shared with PEARL's point robots (point_robot.py) ---
def point_spaces() -> tuple[gym.spaces.Box, gym.spaces.Box]:
    """Observation (the position, unbounded) and action ([-1, 1]^2) spaces of a point."""
    return (gym.spaces.Box(-np.inf, np.inf, shape=(2,), dtype=np.float64),
            gym.spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float64))


def move(pos: np.ndarray, action: np.ndarray, max_step: float) -> np.ndarray:
    """New positions for any batch shape: the action clipped to [-1, 1] scaled by max_step."""
    return pos + max_step * np.clip(action, -1.0, 1.0)


def goal_array(tasks: Sequence[Any]) -> np.ndarray:
    """The goals of tasks with a ``goal`` (x, y) as a (B, 2) array."""
    return np.array([t.goal for t in tasks], dtype=np.float64).reshape(-1, 2)


def _step(pos: np.ndarray, action: np.ndarray, goal: np.ndarray, max_step: float,
          tolerance: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One step for any batch shape: new position, reward, terminated."""
    pos = move(pos, action, max_step)
    delta = pos - goal
    reward = -np.linalg.norm(delta, axis=-1)
    terminated = np.all(np.abs(delta) < tolerance, axis=-1)
    return pos, reward, terminated


class SinglePoint(gym.Env):
    """What the single point environments share: the spaces, the task's goal and the position,
    which starts at the origin unless a subclass overrides ``reset``; each adds its ``step``."""

    def __init__(self) -> None:
        self.observation_space, self.action_space = point_spaces()
        self._goal = np.zeros(2)
        self._pos = np.zeros(2)

    def set_task(self, task: Any) -> None:
        """Take the goal (x, y) of a task with a ``goal``."""
        self._goal = np.asarray(task.goal, dtype=np.float64)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self._pos = np.zeros(2)
        return self._pos.copy(), {}


class PointNavEnv(SinglePoint):
    """Single-environment form, registered as ``metarl/PointNav-v0``."""

    def __init__(self, goal_range: float = 0.5, max_step: float = 0.1, tolerance: float = 0.01
                 ) -> None:
        check_positive(goal_range=goal_range, max_step=max_step, tolerance=tolerance)
        super().__init__()
        self.goal_range, self.max_step, self.tolerance = goal_range, max_step, tolerance

    def sample_tasks(self, n: int, rng: np.random.Generator) -> list[GoalTask]:
        return _sample_goals(n, rng, self.goal_range)

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        self._pos, reward, terminated = _step(self._pos, np.asarray(action, dtype=np.float64),
                                              self._goal, self.max_step, self.tolerance)
        return self._pos.copy(), float(reward), bool(terminated), False, {}


class BatchedPoints:
    """What the batched point families share: their single env (its parameters, spaces and
    task distribution) and the goals and positions of B points as (B, 2) arrays. The points
    start at the origin unless a family overrides ``reset(rng)``; each adds its ``step``."""

    def __init__(self, single: Any) -> None:
        self._single = single
        self.observation_space = single.observation_space
        self.action_space = single.action_space
        self._goals = np.zeros((0, 2))
        self._pos = np.zeros((0, 2))

    def sample_tasks(self, n: int, rng: np.random.Generator) -> list[Any]:
        return self._single.sample_tasks(n, rng)

    def set_tasks(self, tasks: Sequence[Any]) -> None:
        self._goals = goal_array(tasks)

    def reset(self, rng: np.random.Generator) -> np.ndarray:
        self._pos = np.zeros_like(self._goals)
        return self._pos.copy()


class BatchedPointNav(BatchedPoints):
    """B point robots stepped as one NumPy array."""

    def __init__(self, goal_range: float = 0.5, max_step: float = 0.1, tolerance: float = 0.01
                 ) -> None:
        super().__init__(PointNavEnv(goal_range, max_step, tolerance))

    def step(self, actions: np.ndarray, active: np.ndarray | None = None
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        del active  # stepping every row costs less than selecting some
        self._pos, reward, terminated = _step(self._pos, actions, self._goals,
                                              self._single.max_step, self._single.tolerance)
        return self._pos.copy(), reward, terminated

"""PEARL's point robots (Rakelly et al., 2019, rlkit/envs/point_robot.py), dense and sparse.

A point on the plane moves by ``max_step * clip(action, -1, 1)``: PEARL's action space is
[-0.1, 0.1]^2 behind rlkit's ``NormalizedBoxEnv``, which maps the policy's [-1, 1] onto it and
clips. The observation is the position; episodes never terminate (horizon 20 in the configs).

- Dense (``PointRobotEnv``): goals uniform in [-goal_range, goal_range]^2, the start uniform in
  [-start_range, start_range]^2 at every reset (as PEARL's ``reset_model``), reward
  -||pos - goal||.
- Sparse (``PointRobotSparseEnv``): start at the origin, goals on the upper unit half-circle
  (angle uniform in [0, pi]; PEARL spaces its 100 goals evenly on it and shuffles them). The
  reward the environment returns, which meta-test reports and PEARL's encoder sees, is PEARL's
  ``sparse_reward``: 1 - ||pos - goal|| inside ``goal_radius`` (0.2) of the goal, else 0 (the
  source adds 1 to the clipped dense reward, so inside the radius it is between 0.8 and 1, not a
  flat 1). PEARL trains its critic on the dense reward -||pos - goal|| that its ``step`` returns;
  here the family provides that shaped reward through ``training_rewards(tasks, next_obs)``,
  which a learner that trains on shaped rewards (PEARL's RL buffer) calls, and the single env
  puts it in ``info["dense_reward"]``. ``shaped_training_reward=False`` makes
  ``training_rewards`` return the sparse reward (train on what is evaluated).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from metarl_cli.core.checks import check_non_negative, check_positive
from metarl_cli.envs.point_nav import BatchedPoints, SinglePoint, move


@dataclass(frozen=True)
class PointGoalTask:
    goal: tuple[float, float]


def dense_reward(pos: np.ndarray, goal: np.ndarray) -> np.ndarray:
    """-||pos - goal|| for any batch shape."""
    return -np.linalg.norm(pos - goal, axis=-1)


def sparse_reward(pos: np.ndarray, goal: np.ndarray, goal_radius: float) -> np.ndarray:
    """PEARL's sparse reward: 1 - ||pos - goal|| within ``goal_radius`` of the goal, else 0."""
    distance = np.linalg.norm(pos - goal, axis=-1)
    return np.where(distance <= goal_radius, 1.0 - distance, 0.0)


def _goal_tensor(tasks: Sequence[PointGoalTask], like: torch.Tensor) -> torch.Tensor:
    goals = torch.tensor([t.goal for t in tasks], dtype=like.dtype, device=like.device)
    return goals.reshape(len(tasks), *([1] * (like.dim() - 2)), 2)


# --- dense ---
class PointRobotEnv(SinglePoint):
    """Single-environment dense point robot, registered as ``metarl/PointRobot-v0``."""

    def __init__(self, goal_range: float = 1.0, max_step: float = 0.1, start_range: float = 1.0
                 ) -> None:
        check_positive(goal_range=goal_range, max_step=max_step)
        check_non_negative(start_range=start_range)
        super().__init__()
        self.goal_range, self.max_step, self.start_range = goal_range, max_step, start_range

    def sample_tasks(self, n: int, rng: np.random.Generator) -> list[PointGoalTask]:
        goals = rng.uniform(-self.goal_range, self.goal_range, size=(n, 2))
        return [PointGoalTask((float(x), float(y))) for x, y in goals]

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self._pos = self.np_random.uniform(-self.start_range, self.start_range, size=2)
        return self._pos.copy(), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        self._pos = move(self._pos, np.asarray(action, dtype=np.float64), self.max_step)
        return self._pos.copy(), float(dense_reward(self._pos, self._goal)), False, False, {}


class BatchedPointRobot(BatchedPoints):
    """B dense point robots as one NumPy array; starts drawn from the reset ``rng``."""

    def __init__(self, goal_range: float = 1.0, max_step: float = 0.1, start_range: float = 1.0
                 ) -> None:
        super().__init__(PointRobotEnv(goal_range, max_step, start_range))

    def reset(self, rng: np.random.Generator) -> np.ndarray:
        r = self._single.start_range
        self._pos = rng.uniform(-r, r, size=self._goals.shape)
        return self._pos.copy()

    def step(self, actions: np.ndarray, active: np.ndarray | None = None
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        del active  # stepping every row costs less than selecting some
        self._pos = move(self._pos, actions, self._single.max_step)
        terminated = np.zeros(len(self._pos), dtype=bool)
        return self._pos.copy(), dense_reward(self._pos, self._goals), terminated


# --- sparse ---
class PointRobotSparseEnv(SinglePoint):
    """Single-environment sparse point robot, registered as ``metarl/PointRobotSparse-v0``."""

    def __init__(self, goal_radius: float = 0.2, max_step: float = 0.1,
                 shaped_training_reward: bool = True) -> None:
        check_positive(goal_radius=goal_radius, max_step=max_step)
        super().__init__()
        self.goal_radius, self.max_step = goal_radius, max_step
        self.shaped_training_reward = shaped_training_reward

    def sample_tasks(self, n: int, rng: np.random.Generator) -> list[PointGoalTask]:
        angles = rng.uniform(0.0, np.pi, size=n)
        return [PointGoalTask((float(np.cos(a)), float(np.sin(a)))) for a in angles]

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        self._pos = move(self._pos, np.asarray(action, dtype=np.float64), self.max_step)
        reward = float(sparse_reward(self._pos, self._goal, self.goal_radius))
        info = {"dense_reward": float(dense_reward(self._pos, self._goal))}
        return self._pos.copy(), reward, False, False, info


class BatchedPointRobotSparse(BatchedPoints):
    """B sparse point robots as one NumPy array, plus the shaped training reward."""

    def __init__(self, goal_radius: float = 0.2, max_step: float = 0.1,
                 shaped_training_reward: bool = True) -> None:
        super().__init__(PointRobotSparseEnv(goal_radius, max_step, shaped_training_reward))

    def step(self, actions: np.ndarray, active: np.ndarray | None = None
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        del active  # stepping every row costs less than selecting some
        self._pos = move(self._pos, actions, self._single.max_step)
        reward = sparse_reward(self._pos, self._goals, self._single.goal_radius)
        return self._pos.copy(), reward, np.zeros(len(self._pos), dtype=bool)

    def training_rewards(self, tasks: Sequence[PointGoalTask], next_obs: torch.Tensor
                         ) -> torch.Tensor:
        """The reward to train a critic on, for positions ``next_obs`` (N, ..., 2) reached on
        ``tasks`` (N): the dense -||pos - goal|| (PEARL), or the sparse reward when
        ``shaped_training_reward`` is false."""
        distance = torch.linalg.vector_norm(next_obs - _goal_tensor(tasks, next_obs), dim=-1)
        if self._single.shaped_training_reward:
            return -distance
        inside = distance <= self._single.goal_radius
        return torch.where(inside, 1.0 - distance, torch.zeros_like(distance))

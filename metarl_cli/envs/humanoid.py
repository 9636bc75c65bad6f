"""HumanoidDir (Rakelly et al., 2019, PEARL): walk in a direction of the plane, angle ~ U[0, 2π).

As PEARL's code defines it (oyster ``rlkit/envs/humanoid_dir.py`` on gym's Humanoid-v2):

- reward 0.25·(d · Δc) / timestep + 5 - 0.1‖a‖² - min(5e-7‖cfrc_ext‖², 10), where d = (cos θ,
  sin θ), c the robot's centre of mass in the plane (bodies' ``xipos`` weighted by mass) and
  Δc its change over the step. Divided by the physics timestep (0.003 s) and not by the env
  step (five of them), the term is 1.25 × the velocity along d; ``forward_reward_weight`` is
  that 1.25. The bonus of 5 is paid on every step, the one that ends the episode included.
- the episode ends when the torso height qpos[2] leaves [1, 2] (or the state is not finite).
- observation: qpos without x, y, qvel, then ``cinert``, ``cvel``, ``qfrc_actuator`` and
  ``cfrc_ext`` of every body, the world's included (376 numbers; gymnasium's Humanoid-v5 drops
  the world's rows and observes 348).
- reset to qpos and qvel + U(-0.01, 0.01); frame skip 5; horizon 200 (the sampler's).

The model is gymnasium's ``humanoid.xml`` (gym's Humanoid-v2 model) on modern MuJoCo; the
contact forces are computed after each step with ``mj_rnePostConstraint``, as gymnasium does
(PEARL ran MuJoCo 1.5, which computed them in every forward pass). Actions are clipped to the
action space and the control cost is charged on the clipped action, as for the other
locomotion families. The batched form steps the same model in MuJoCo's threads and is equal to
the single environment step for step (tested).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from gymnasium import utils
from gymnasium.envs.mujoco.humanoid_v5 import HumanoidEnv
from gymnasium.spaces import Box

from metarl_cli.core.checks import finite, finite_non_negative, finite_range
from metarl_cli.envs.locomotion import (
    BatchedFamily,
    TaskStep,
    ant_terminated,
    ctrl_cost,
    uniform_reset,
)


@dataclass(frozen=True)
class HeadingTask:
    """A direction in the plane: ``angle`` radians counter-clockwise from +x."""

    angle: float


def sample_heading_tasks(n: int, rng: np.random.Generator) -> list[HeadingTask]:
    """Angles uniform in [0, 2π)."""
    return [HeadingTask(float(a)) for a in rng.uniform(0.0, 2 * np.pi, size=n)]


def heading_term(velocity: np.ndarray, position: np.ndarray, target: np.ndarray) -> np.ndarray:
    """d · v: the planar velocity along the task's unit direction ``target`` (..., 2)."""
    return (velocity[..., :2] * target).sum(axis=-1)


def impact_cost(cfrc_ext: np.ndarray, weight: float, cap: float) -> np.ndarray:
    """min(weight·‖cfrc_ext‖², cap) over all bodies of (..., nbody, 6)."""
    return np.minimum(weight * np.square(cfrc_ext).sum(axis=(-2, -1)), cap)


def humanoid_obs(state: Any) -> np.ndarray:
    """qpos[2:], qvel, cinert, cvel, qfrc_actuator, cfrc_ext, flattened per simulation."""
    lead = state.qpos.shape[:-1]
    parts = [state.qpos[..., 2:], state.qvel, state.cinert, state.cvel, state.qfrc_actuator,
             state.cfrc_ext]
    return np.concatenate([np.reshape(x, (*lead, -1)) for x in parts], axis=-1)


class HumanoidDirEnv(TaskStep, HumanoidEnv):
    """HumanoidDir (PEARL 2019): walk along a direction of the plane; ``metarl/HumanoidDir-v0``."""

    _task_type = HeadingTask
    _task_term = staticmethod(heading_term)
    uses_contacts = True
    uses_body_positions = False
    physics_fields = ("xipos", "cinert", "cvel", "qfrc_actuator")
    com_obs = False
    com_velocity_reward = False
    qpos_noise_std = None

    def __init__(self, forward_reward_weight: float = 1.25, ctrl_cost_weight: float = 0.1,
                 contact_cost_weight: float = 5e-7, contact_cost_max: float = 10.0,
                 alive_bonus: float = 5.0, healthy_z_range: tuple[float, float] = (1.0, 2.0),
                 reset_noise_scale: float = 1e-2, render_mode: str | None = None) -> None:
        self.forward_reward_weight = finite("forward_reward_weight",
                                                   forward_reward_weight)
        self.ctrl_cost_weight = finite_non_negative("ctrl_cost_weight", ctrl_cost_weight)
        self.contact_cost_weight = finite_non_negative("contact_cost_weight", contact_cost_weight)
        self.contact_cost_max = finite_non_negative("contact_cost_max", contact_cost_max)
        self.alive_bonus = finite("alive_bonus", alive_bonus)
        self.healthy_z_range = finite_range("healthy_z_range", healthy_z_range)
        self.reset_noise_scale = finite_non_negative("reset_noise_scale", reset_noise_scale)
        HumanoidEnv.__init__(self, xml_file="humanoid.xml", frame_skip=5,
                             forward_reward_weight=self.forward_reward_weight,
                             ctrl_cost_weight=self.ctrl_cost_weight,
                             contact_cost_weight=self.contact_cost_weight,
                             healthy_reward=self.alive_bonus,
                             healthy_z_range=self.healthy_z_range,
                             reset_noise_scale=self.reset_noise_scale, render_mode=render_mode)
        self._mass = self.model.body_mass.copy()
        size = self._get_obs().size
        self.observation_space = Box(-np.inf, np.inf, shape=(size,), dtype=np.float64)
        self._init_task()
        utils.EzPickle.__init__(self, forward_reward_weight, ctrl_cost_weight,
                                contact_cost_weight, contact_cost_max, alive_bonus,
                                healthy_z_range, reset_noise_scale, render_mode)

    def sample_tasks(self, n: int, rng: np.random.Generator) -> list[HeadingTask]:
        return sample_heading_tasks(n, rng)

    def task_rows(self, tasks: Sequence[Any]) -> np.ndarray:
        """Each task's unit direction (cos θ, sin θ)."""
        for task in tasks:
            if not isinstance(task, HeadingTask):
                raise TypeError(f"expected a HeadingTask, got {task!r}")
        angles = np.array([task.angle for task in tasks], dtype=np.float64)
        return np.stack([np.cos(angles), np.sin(angles)], axis=-1)

    def reset_state(self, rng: np.random.Generator, batch: tuple[int, ...] = ()
                    ) -> tuple[np.ndarray, np.ndarray]:
        """qpos and qvel + U(-s, s), drawn in that order, s = ``reset_noise_scale``."""
        return uniform_reset(self.init_qpos, self.init_qvel, self.reset_noise_scale, rng, batch)

    def _position(self, state: Any) -> np.ndarray:
        """The centre of mass in the plane, as gym's and PEARL's ``mass_center``."""
        return np.einsum("b,...bj->...j", self._mass, state.xipos[..., :2]) / self._mass.sum()

    def _reward_terminated(self, term: np.ndarray, actions: np.ndarray, qpos: np.ndarray,
                           qvel: np.ndarray, cfrc_ext: np.ndarray
                           ) -> tuple[np.ndarray, np.ndarray]:
        reward = (self.forward_reward_weight * term + self.alive_bonus
                  - ctrl_cost(actions, self.ctrl_cost_weight)
                  - impact_cost(cfrc_ext, self.contact_cost_weight, self.contact_cost_max))
        return reward, ant_terminated(qpos, qvel, self.healthy_z_range)

    def _batch_obs(self, state: Any) -> np.ndarray:
        return humanoid_obs(state)

    def _get_obs(self) -> np.ndarray:
        return humanoid_obs(self.data)


class BatchedHumanoidDir(BatchedFamily):
    """B HumanoidDir environments stepped together (see :class:`HumanoidDirEnv`)."""

    def __init__(self, forward_reward_weight: float = 1.25, ctrl_cost_weight: float = 0.1,
                 contact_cost_weight: float = 5e-7, contact_cost_max: float = 10.0,
                 alive_bonus: float = 5.0, healthy_z_range: tuple[float, float] = (1.0, 2.0),
                 reset_noise_scale: float = 1e-2, num_threads: int | None = None) -> None:
        super().__init__(HumanoidDirEnv(forward_reward_weight, ctrl_cost_weight,
                                        contact_cost_weight, contact_cost_max, alive_bonus,
                                        healthy_z_range, reset_noise_scale), num_threads)

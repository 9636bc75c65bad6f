"""Random-dynamics task families: Walker2d and Hopper whose physical parameters differ by task
(Rakelly et al., 2019, PEARL; Rothfuss et al., 2019, ProMP; both papers' code takes them from
the ``rand_param_envs`` package).

A task multiplies, entry by entry, each body's mass and its three principal inertias by 1.5^u,
each degree of freedom's joint damping by 1.3^u, and each geom's three friction coefficients by
1.5^u, every u ~ U(-3, 3) drawn on its own (``log_scale_limit`` = 3), from the model's own
values. The reward is the robot's: the root's forward velocity over the step (Δx / dt) + 1 -
0.001‖a‖², the bonus of 1 paid on every step, the one that ends the episode included (as the
package pays it; gymnasium's v5 robots pay it only while healthy).

- Walker2d: gymnasium's ``walker2d.xml``, the old gym model the package also used (left foot
  friction 1.9), with the package's frame skip of 5 (gymnasium's Walker2d uses 4); an episode
  ends unless 0.8 < z < 2 and -1 < angle < 1.
- Hopper: gymnasium's ``hopper.xml`` with frame skip 4; an episode ends unless the state is
  finite, every entry of it after x and z is within (-100, 100), z > 0.7 and |angle| < 0.2.

Both observe qpos without x and the velocities clipped to [-10, 10] (17 and 11 numbers), and
reset to qpos and qvel + U(-0.005, 0.005). The originals ran on MuJoCo 1.31 through mujoco-py
0.5; these are rebuilt on modern MuJoCo and are not identical to them (contact solver, and the
derived constants that neither recomputes after a parameter changes). Time limits (horizon
200) are the registration's or the sampler's. The batched forms give every simulation its own
copy of the four fields (``MujocoBatch.set_model_field``) and are equal to the single
environments step for step (tested).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from gymnasium import utils
from gymnasium.envs.mujoco.hopper_v5 import HopperEnv
from gymnasium.envs.mujoco.walker2d_v5 import Walker2dEnv

from metarl_cli.core.checks import check_integer, check_positive, finite, finite_non_negative
from metarl_cli.envs.locomotion import (
    BatchedFamily,
    TaskStep,
    ctrl_cost,
    uniform_reset,
)

# The randomised fields and the base of each one's multiplier, in the order they are drawn.
PARAM_BASES = {"body_mass": 1.5, "body_inertia": 1.5, "dof_damping": 1.3, "geom_friction": 1.5}


@dataclass(frozen=True)
class ParamsTask:
    """Multipliers of the model's values, each field's flattened in the model's order."""

    body_mass: tuple[float, ...]
    body_inertia: tuple[float, ...]
    dof_damping: tuple[float, ...]
    geom_friction: tuple[float, ...]


def sample_params_tasks(n: int, rng: np.random.Generator, sizes: dict[str, int],
                        log_scale_limit: float) -> list[ParamsTask]:
    """``n`` tasks: for each, base^U(-limit, limit) per entry of each field (``sizes``: the
    number of entries of each field of ``PARAM_BASES``), drawn field by field."""
    tasks = []
    for _ in range(n):
        scales = {name: tuple(float(x) for x in base ** rng.uniform(
            -log_scale_limit, log_scale_limit, size=sizes[name]))
            for name, base in PARAM_BASES.items()}
        tasks.append(ParamsTask(**scales))
    return tasks


def forward_term(velocity: np.ndarray, position: np.ndarray, target: np.ndarray) -> np.ndarray:
    """v_x, the root's forward velocity over the step."""
    return velocity[..., 0]


def walker_terminated(qpos: np.ndarray, qvel: np.ndarray) -> np.ndarray:
    """Not 0.8 < z < 2 and -1 < angle < 1 (a NaN height ends the episode too)."""
    z, angle = qpos[..., 1], qpos[..., 2]
    return ~((z > 0.8) & (z < 2.0) & (angle > -1.0) & (angle < 1.0))


def hopper_terminated(qpos: np.ndarray, qvel: np.ndarray) -> np.ndarray:
    """Not: a finite state whose entries after x and z lie in (-100, 100), z > 0.7 and
    |angle| < 0.2."""
    state = np.concatenate([qpos, qvel], axis=-1)
    z, angle = qpos[..., 1], qpos[..., 2]
    healthy = (np.isfinite(state).all(axis=-1) & (np.abs(state[..., 2:]) < 100).all(axis=-1)
               & (z > 0.7) & (np.abs(angle) < 0.2))
    return ~healthy


class _RandomParamsEnv(TaskStep):
    """The task API, reset, reward and observation shared by both robots (mixed in before the
    gymnasium class, whose model and action space they use)."""

    _task_type = ParamsTask
    _task_term = staticmethod(forward_term)
    _terminated: ClassVar[Any]
    uses_contacts = False
    uses_body_positions = False
    com_obs = False
    com_velocity_reward = False
    qpos_noise_std = None

    def _init_params(self) -> None:
        """After the gymnasium class has built the model: keep its values, set the first task."""
        self._defaults = {name: getattr(self.model, name).copy() for name in PARAM_BASES}
        self._init_task()

    def sample_tasks(self, n: int, rng: np.random.Generator) -> list[ParamsTask]:
        sizes = {name: value.size for name, value in self._defaults.items()}
        return sample_params_tasks(n, rng, sizes, self.log_scale_limit)

    def task_rows(self, tasks: Sequence[Any]) -> np.ndarray:
        for task in tasks:
            if not isinstance(task, ParamsTask):
                raise TypeError(f"expected a ParamsTask, got {task!r}")
            if len(task.body_mass) != self._defaults["body_mass"].size:
                raise ValueError(f"{type(self).__name__}: a task for another model "
                                 f"({len(task.body_mass)} bodies, this one has "
                                 f"{self._defaults['body_mass'].size})")
        return np.zeros((len(tasks), 0))

    def model_fields(self, tasks: Sequence[Any]) -> dict[str, np.ndarray]:
        fields = {}
        for name, default in self._defaults.items():
            scales = np.array([getattr(task, name) for task in tasks], dtype=np.float64)
            fields[name] = default * scales.reshape(len(tasks), *default.shape)
        return fields

    def set_task(self, task: ParamsTask) -> None:
        super().set_task(task)
        for name, values in self.model_fields([task]).items():
            getattr(self.model, name)[:] = values[0]

    def reset_state(self, rng: np.random.Generator, batch: tuple[int, ...] = ()
                    ) -> tuple[np.ndarray, np.ndarray]:
        """qpos and qvel + U(-s, s), drawn in that order, s = ``reset_noise_scale``."""
        return uniform_reset(self.init_qpos, self.init_qvel, self.reset_noise_scale, rng, batch)

    def _position(self, state: Any) -> np.ndarray:
        return state.qpos[..., :1]  # the root's slide joint along x

    def _reward_terminated(self, term: np.ndarray, actions: np.ndarray, qpos: np.ndarray,
                           qvel: np.ndarray, cfrc_ext: np.ndarray
                           ) -> tuple[np.ndarray, np.ndarray]:
        reward = term + self.alive_bonus - ctrl_cost(actions, self.ctrl_cost_weight)
        return reward, type(self)._terminated(qpos, qvel)

    def _batch_obs(self, state: Any) -> np.ndarray:
        return np.concatenate([state.qpos[..., 1:], np.clip(state.qvel, -10.0, 10.0)], axis=-1)

    def _get_obs(self) -> np.ndarray:
        return self._batch_obs(self.data)


def _check_settings(env: _RandomParamsEnv, log_scale_limit: float, ctrl_cost_weight: float,
                    alive_bonus: float, reset_noise_scale: float, frame_skip: int) -> None:
    check_positive(log_scale_limit=log_scale_limit)
    env.log_scale_limit = finite("log_scale_limit", log_scale_limit)
    env.ctrl_cost_weight = finite_non_negative("ctrl_cost_weight", ctrl_cost_weight)
    env.alive_bonus = finite("alive_bonus", alive_bonus)
    env.reset_noise_scale = finite_non_negative("reset_noise_scale", reset_noise_scale)
    check_integer(1, frame_skip=frame_skip)


class Walker2dRandParamsEnv(_RandomParamsEnv, Walker2dEnv):
    """Walker2d with random physical parameters (PEARL, ProMP); ``metarl/Walker2dRandParams-v0``."""

    _terminated = staticmethod(walker_terminated)

    def __init__(self, log_scale_limit: float = 3.0, ctrl_cost_weight: float = 1e-3,
                 alive_bonus: float = 1.0, reset_noise_scale: float = 5e-3, frame_skip: int = 5,
                 render_mode: str | None = None) -> None:
        _check_settings(self, log_scale_limit, ctrl_cost_weight, alive_bonus, reset_noise_scale,
                        frame_skip)
        Walker2dEnv.__init__(self, xml_file="walker2d.xml", frame_skip=frame_skip,
                             ctrl_cost_weight=self.ctrl_cost_weight,
                             reset_noise_scale=self.reset_noise_scale, render_mode=render_mode)
        self._init_params()
        utils.EzPickle.__init__(self, log_scale_limit, ctrl_cost_weight, alive_bonus,
                                reset_noise_scale, frame_skip, render_mode)


class HopperRandParamsEnv(_RandomParamsEnv, HopperEnv):
    """Hopper with random physical parameters (PEARL, ProMP); ``metarl/HopperRandParams-v0``."""

    _terminated = staticmethod(hopper_terminated)

    def __init__(self, log_scale_limit: float = 3.0, ctrl_cost_weight: float = 1e-3,
                 alive_bonus: float = 1.0, reset_noise_scale: float = 5e-3, frame_skip: int = 4,
                 render_mode: str | None = None) -> None:
        _check_settings(self, log_scale_limit, ctrl_cost_weight, alive_bonus, reset_noise_scale,
                        frame_skip)
        HopperEnv.__init__(self, xml_file="hopper.xml", frame_skip=frame_skip,
                           ctrl_cost_weight=self.ctrl_cost_weight,
                           reset_noise_scale=self.reset_noise_scale, render_mode=render_mode)
        self._init_params()
        utils.EzPickle.__init__(self, log_scale_limit, ctrl_cost_weight, alive_bonus,
                                reset_noise_scale, frame_skip, render_mode)


class BatchedWalker2dRandParams(BatchedFamily):
    """B Walker2dRandParams environments stepped together (see :class:`Walker2dRandParamsEnv`)."""

    def __init__(self, log_scale_limit: float = 3.0, ctrl_cost_weight: float = 1e-3,
                 alive_bonus: float = 1.0, reset_noise_scale: float = 5e-3, frame_skip: int = 5,
                 num_threads: int | None = None) -> None:
        super().__init__(Walker2dRandParamsEnv(log_scale_limit, ctrl_cost_weight, alive_bonus,
                                               reset_noise_scale, frame_skip), num_threads)


class BatchedHopperRandParams(BatchedFamily):
    """B HopperRandParams environments stepped together (see :class:`HopperRandParamsEnv`)."""

    def __init__(self, log_scale_limit: float = 3.0, ctrl_cost_weight: float = 1e-3,
                 alive_bonus: float = 1.0, reset_noise_scale: float = 5e-3, frame_skip: int = 4,
                 num_threads: int | None = None) -> None:
        super().__init__(HopperRandParamsEnv(log_scale_limit, ctrl_cost_weight, alive_bonus,
                                             reset_noise_scale, frame_skip), num_threads)

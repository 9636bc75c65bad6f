"""Locomotion task families on gymnasium's MuJoCo robots (Finn et al., ICML 2017, section 5.3).

Five families, each a single gymnasium environment and a batched form:

- HalfCheetahVel: run at a target velocity v* ~ U[0, 2]; reward -|v_x - v*| - 0.05‖a‖².
- HalfCheetahDir: run forward or backward, d ∈ {-1, +1}; reward d·v_x - 0.05‖a‖².
- AntVel: v* ~ U[0, 3]; reward -|v_x - v*| + 1 - 0.005‖a‖² - 0.0005‖clip(cfrc_ext)‖² + 0.05.
- AntDir: d ∈ {-1, +1}; reward d·v_x - (same ant costs) + 0.05.
- AntGoal: goal uniform in a disk of radius 3 (Rothfuss et al., 2019, ProMP; Rakelly et al., 2019,
  PEARL); reward -‖xy - goal‖₁ - 0.1‖a‖² - 0.0005‖clip(cfrc_ext)‖², never terminates, and the
  torso's x, y are observed (qpos in full), as in both papers' code.

The single environments subclass gymnasium's ``HalfCheetah-v5`` and ``Ant-v5``, so the model XML,
frame skip (5; see below), reset distribution and observation (17 and 105 dimensions, the ant's
including the clipped external contact forces) are gymnasium's own; only ``step`` is ours,
because the reward and termination belong to the task family. The batched forms step the same
model for the whole batch in MuJoCo's C++ threads (``MujocoBatch``, envs/mujoco_batch.py) and
compute observations, rewards and terminations in NumPy over the whole batch. Both forms call the
same reward functions below, and the tests check that they agree step for step.

Choices that differ from gymnasium or are not fixed by the papers:

- Actions are clipped to the action space before they reach the physics, and the control cost
  is computed on the clipped action. (Gymnasium passes the raw action, which MuJoCo clamps
  itself, and charges the control cost on the raw action; an unbounded Gaussian policy could
  then be punished for actions that have no effect.)
- Cost weights follow MAML, not gymnasium (ctrl 0.05 for the cheetah where gymnasium uses 0.1;
  0.005 for the ant where gymnasium uses 0.5).
- The ant's survive reward is a constant, as in MAML's code, also on the step that terminates
  (gymnasium pays its healthy reward only while healthy). AntVel's +1 offset is MAML's.
- Velocities are measured the way gymnasium measures them: for the cheetah from ``qpos[0]`` (the
  torso's slide joint), for the ant from the torso body's ``xpos``, which MuJoCo leaves from the
  forward pass of the last physics substep, so it trails ``qpos`` by one substep (0.01 s).
  AntGoal's distance uses the same torso ``xpos``, as ProMP's and PEARL's code do.
- The ant's contact cost uses ``cfrc_ext[1:]`` (the world body's entry is always zero, so this
  equals gymnasium's sum over all bodies), after ``mj_rnePostConstraint`` as gymnasium calls it.
- The ant terminates when the torso height leaves ``healthy_z_range`` or the state is not finite
  (with ``healthy_z_range`` None, as AntGoal's, only when the state is not finite); the cheetah
  never terminates. Time limits (horizon 200) are the registration's or the sampler's.
- The cheetah's ``frame_skip`` is gymnasium's 5 by default: an env step is 0.05 s, an episode
  of 200 steps 10 s. The MAML paper's code (rllab's HalfCheetah, the same 0.01 s timestep without
  a frame skip) stepped the physics once per env step: 200 actions at 100 Hz over 2 s.
  ``frame_skip=1`` gives that control rate and duration. rllab's observation also held the
  robot's centre of mass (``get_body_com("torso")``, the torso's subtree, i.e. the whole robot;
  20 dimensions): ``com_obs=True`` appends it, as MuJoCo leaves ``subtree_com`` after the step
  (from the last physics substep's start, the lag of the ant's ``xpos``). rllab's reset drew
  qpos + N(0, 0.01²) where gymnasium draws qpos + U(-0.1, 0.1) (qvel + 0.1·N(0, 1) in both):
  ``qpos_noise_std=0.01`` gives rllab's. rllab's reward velocity was the robot's centre-of-mass
  velocity at the end of the step (``get_body_comvel("torso")`` after ``model.forward()``), not
  the root's mean velocity over it: ``com_velocity_reward=True`` gives that, computing the
  position and velocity stages at the new state after each step (as ``mj_step1`` does), so an
  observed centre of mass is then the new state's, as in rllab, without the lag.
- Until ``set_task`` is called, a single environment holds a fixed task (the first task drawn
  with seed 0), so it also works as a plain gymnasium environment.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import mujoco
import numpy as np
from gymnasium import utils
from gymnasium.envs.mujoco.ant_v5 import AntEnv
from gymnasium.envs.mujoco.half_cheetah_v5 import HalfCheetahEnv
from gymnasium.spaces import Box

from metarl_cli.core.checks import (
    check_integer,
    check_positive,
    finite,
    finite_non_negative,
    finite_range,
)
from metarl_cli.envs.mujoco_batch import MujocoBatch, load_model
from metarl_cli.envs.point_nav import GoalTask

TORSO = 1  # body index of the cheetah's and the ant's torso (0 is the world)

# MAML's AntVel adds a constant 1 to the velocity-tracking term (on top of the survive reward).
ANT_VEL_OFFSET = 1.0


@dataclass(frozen=True)
class VelocityTask:
    velocity: float


@dataclass(frozen=True)
class DirectionTask:
    direction: float


Task = VelocityTask | DirectionTask | GoalTask
# One row of numbers per task, the form in which the reward functions read it.
_TARGET: dict[type, Callable[[Any], tuple[float, ...]]] = {
    VelocityTask: lambda t: (t.velocity,),
    DirectionTask: lambda t: (t.direction,),
    GoalTask: lambda t: tuple(t.goal),
}


# ---------------------------------------------------------------- task distributions


def sample_velocity_tasks(n: int, rng: np.random.Generator, velocity_range: tuple[float, float]
                          ) -> list[VelocityTask]:
    """Target velocities uniform in ``velocity_range``."""
    return [VelocityTask(float(v)) for v in rng.uniform(*velocity_range, size=n)]


def sample_direction_tasks(n: int, rng: np.random.Generator, balanced: bool = False
                           ) -> list[DirectionTask]:
    """Directions -1 or +1, each with probability 1/2 (MAML 2017). ``balanced``: as many of
    each as ``n`` allows, in random order, so a fixed list of 2 holds forward and backward
    (PEARL's ``forward_backward`` presets)."""
    if balanced:
        directions = rng.permutation(np.resize([1, -1], n))
    else:
        directions = 2 * rng.integers(0, 2, size=n) - 1
    return [DirectionTask(float(d)) for d in directions]


def sample_disk_goals(n: int, rng: np.random.Generator, goal_radius: float) -> list[GoalTask]:
    """Goals uniform in area over a disk (radius = R·sqrt(u)), as in ProMP's and PEARL's AntGoal."""
    u = rng.random((n, 2))
    r, angle = goal_radius * np.sqrt(u[:, 0]), 2 * np.pi * u[:, 1]
    xs, ys = r * np.cos(angle), r * np.sin(angle)
    return [GoalTask((float(x), float(y))) for x, y in zip(xs, ys, strict=True)]


def task_targets(tasks: Sequence[Task], task_type: type) -> np.ndarray:
    """The tasks as an array (len(tasks), k); refuses a task of another family."""
    for task in tasks:
        if not isinstance(task, task_type):
            raise TypeError(f"expected a {task_type.__name__}, got {task!r}")
    return np.array([_TARGET[task_type](t) for t in tasks], dtype=np.float64)


# ---------------------------------------------------------------- rewards (any leading batch shape)
# Velocities and positions are (..., k) arrays (the robot's ``_motion``), targets (..., k) task
# rows; each returns the task's reward term.


def velocity_term(velocity: np.ndarray, position: np.ndarray, target: np.ndarray) -> np.ndarray:
    """-|v_x - v*|, v_x the forward velocity."""
    return -np.abs(velocity[..., 0] - target[..., 0])


def ant_velocity_term(velocity: np.ndarray, position: np.ndarray, target: np.ndarray
                      ) -> np.ndarray:
    """MAML's AntVel term: -|v_x - v*| + 1."""
    return velocity_term(velocity, position, target) + ANT_VEL_OFFSET


def direction_term(velocity: np.ndarray, position: np.ndarray, target: np.ndarray
                   ) -> np.ndarray:
    """d·v_x: forward velocity in the task's direction."""
    return target[..., 0] * velocity[..., 0]


def goal_term(velocity: np.ndarray, position: np.ndarray, target: np.ndarray) -> np.ndarray:
    """-‖xy - goal‖₁ after the step."""
    return -np.abs(position - target).sum(axis=-1)


def ctrl_cost(actions: np.ndarray, weight: float) -> np.ndarray:
    return weight * np.square(actions).sum(axis=-1)


def contact_cost(cfrc_ext: np.ndarray, weight: float, force_range: tuple[float, float]
                 ) -> np.ndarray:
    """weight·‖clip(cfrc_ext[1:])‖² over the bodies (body 0 is the world) of (..., nbody, 6)."""
    clipped = np.clip(cfrc_ext[..., 1:, :], *force_range)
    return weight * np.square(clipped).sum(axis=(-2, -1))


def ant_terminated(qpos: np.ndarray, qvel: np.ndarray,
                   healthy_z_range: tuple[float, float] | None) -> np.ndarray:
    """The torso height left ``healthy_z_range`` (None: any height) or the state is not finite."""
    is_finite = np.isfinite(qpos).all(axis=-1) & np.isfinite(qvel).all(axis=-1)
    if healthy_z_range is None:
        return ~is_finite
    z = qpos[..., 2]
    return ~(is_finite & (z >= healthy_z_range[0]) & (z <= healthy_z_range[1]))


def uniform_reset(init_qpos: np.ndarray, init_qvel: np.ndarray, scale: float,
                  rng: np.random.Generator, batch: tuple[int, ...] = ()
                  ) -> tuple[np.ndarray, np.ndarray]:
    """qpos and qvel + U(-scale, scale), drawn in that order with a leading ``batch`` shape (the
    reset of gymnasium's Humanoid, Walker2d and Hopper, and of gym's older ones)."""
    qpos = init_qpos + rng.uniform(-scale, scale, size=(*batch, init_qpos.size))
    return qpos, init_qvel + rng.uniform(-scale, scale, size=(*batch, init_qvel.size))


def cheetah_obs(qpos: np.ndarray, qvel: np.ndarray, com: np.ndarray | None = None) -> np.ndarray:
    """HalfCheetah-v5's default observation for a batch: qpos without x, then qvel; then the
    centre of mass ``com`` (..., 3) when given, as rllab's HalfCheetah had it."""
    parts = [qpos[..., 1:], qvel] + ([] if com is None else [com])
    return np.concatenate(parts, axis=-1)


def com_velocity(cvel: np.ndarray, xipos: np.ndarray, subtree_com: np.ndarray,
                 body_mass: np.ndarray) -> np.ndarray:
    """The robot's centre-of-mass velocity (..., 3), as ``mj_subtreeVel`` gives it for the
    torso's subtree (every body of a one-tree robot): the mass-weighted mean of the bodies' own
    centre velocities, each moved from ``cvel``'s reference point (the subtree's centre of mass)
    to the body's centre ``xipos``; arrays (..., nbody, 6 or 3), ``body_mass`` (nbody,)."""
    offset = xipos[..., 1:, :] - subtree_com[..., TORSO:TORSO + 1, :]
    velocity = cvel[..., 1:, 3:] + np.cross(cvel[..., 1:, :3], offset)
    mass = body_mass[1:]
    return np.einsum("b,...bk->...k", mass, velocity) / mass.sum()


def ant_obs(qpos: np.ndarray, qvel: np.ndarray, cfrc_ext: np.ndarray,
            force_range: tuple[float, float], position_obs: bool = False,
            contact_obs: bool = True) -> np.ndarray:
    """Ant-v5's observation for a batch: qpos (without x, y unless ``position_obs``), qvel,
    then the clipped cfrc_ext[1:] (unless not ``contact_obs``)."""
    parts = [qpos if position_obs else qpos[..., 2:], qvel]
    if contact_obs:
        forces = np.clip(cfrc_ext[..., 1:, :], *force_range)
        parts.append(forces.reshape(*forces.shape[:-2], -1))
    return np.concatenate(parts, axis=-1)


# ---------------------------------------------------------------- single environments


class TaskStep:
    """The task API and ``step`` shared by both robots (mixed in before the gymnasium class).

    The robot class supplies ``_position``, ``_reward_terminated`` and ``_batch_obs``, each
    vectorised so that the batched form calls the very same code (``_position``, ``_motion``
    and ``_batch_obs`` read the arrays they need from an ``MjData`` or a :class:`MujocoBatch`,
    which name them alike); the family class supplies ``_task_type``, ``_task_term`` and
    ``sample_tasks``.
    """

    _task_type: ClassVar[type]
    _task_term: ClassVar[Callable[..., np.ndarray]]
    uses_contacts: ClassVar[bool]  # reads cfrc_ext (after mj_rnePostConstraint)
    uses_body_positions: ClassVar[bool]  # reads xpos
    com_obs: bool  # observes the centre of mass: reads subtree_com
    com_velocity_reward: bool  # rewards the centre of mass's velocity: reads cvel, xipos
    physics_fields: ClassVar[tuple[str, ...]] = ()  # further MjData outputs the robot reads
    reset_noise_scale: float
    qpos_noise_std: float | None
    data: mujoco.MjData
    frame_skip: int
    dt: float
    fullpath: str
    width: int
    height: int

    def _initialize_simulation(self) -> tuple[mujoco.MjModel, mujoco.MjData]:
        """Gymnasium's, with the model from ``load_model`` (no deprecation warning)."""
        model = load_model(self.fullpath)
        model.vis.global_.offwidth = max(model.vis.global_.offwidth, self.width)
        model.vis.global_.offheight = max(model.vis.global_.offheight, self.height)
        return model, mujoco.MjData(model)

    def _init_task(self) -> None:
        bounds = self.action_space
        self._act_low = bounds.low.astype(np.float64)
        self._act_high = bounds.high.astype(np.float64)
        self.set_task(self.sample_tasks(1, np.random.default_rng(0))[0])

    def sample_tasks(self, n: int, rng: np.random.Generator) -> list[Any]:
        raise NotImplementedError

    def set_task(self, task: Task) -> None:
        self._target = self.task_rows([task])[0]

    def task_rows(self, tasks: Sequence[Any]) -> np.ndarray:
        """The tasks as the rows the reward functions read (len(tasks), k); refuses a task of
        another family."""
        return task_targets(tasks, self._task_type)

    def model_fields(self, tasks: Sequence[Any]) -> dict[str, np.ndarray]:
        """Model fields whose values differ by task, each (len(tasks), ...): none here (the
        task is in the reward); a family whose tasks change the physics names them."""
        return {}

    def reset_state(self, rng: np.random.Generator, batch: tuple[int, ...] = ()
                    ) -> tuple[np.ndarray, np.ndarray]:
        """Initial (qpos, qvel), drawn from ``rng`` in gymnasium's order, with a leading
        ``batch`` shape: qpos + U(-s, s) (or + N(0, qpos_noise_std²) when that is set, as
        rllab reset), qvel + s·N(0, 1), s = ``reset_noise_scale``."""
        s, nq, nv = self.reset_noise_scale, self.model.nq, self.model.nv
        qpos_noise = (rng.uniform(-s, s, size=(*batch, nq)) if self.qpos_noise_std is None
                      else self.qpos_noise_std * rng.standard_normal((*batch, nq)))
        return self.init_qpos + qpos_noise, self.init_qvel + s * rng.standard_normal((*batch, nv))

    def reset_model(self) -> np.ndarray:
        self.set_state(*self.reset_state(self.np_random))
        return self._get_obs()

    def _position(self, state: Any) -> np.ndarray:
        raise NotImplementedError

    def _motion(self, before: np.ndarray, state: Any) -> tuple[np.ndarray, np.ndarray]:
        """(velocity, position) for the rewards at the end of a step that started at position
        ``before``: the position now and the mean velocity over the step."""
        after = self._position(state)
        return (after - before) / self.dt, after

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        action = np.clip(np.asarray(action, dtype=np.float64), self._act_low, self._act_high)
        before = self._position(self.data).copy()
        self.do_simulation(action, self.frame_skip)
        velocity, after = (x.copy() for x in self._motion(before, self.data))
        term = self._task_term(velocity, after, self._target)
        reward, terminated = self._reward_terminated(term, action, self.data.qpos,
                                                     self.data.qvel, self.data.cfrc_ext)
        info = {"position": after, "x_velocity": float(velocity[0])}
        return self._get_obs(), float(reward), bool(terminated), False, info


class _CheetahTaskEnv(TaskStep, HalfCheetahEnv):
    """HalfCheetah-v5's model, reset and observation; the reward is the task family's."""

    uses_contacts = False
    uses_body_positions = False

    def __init__(self, ctrl_cost_weight: float, reset_noise_scale: float, frame_skip: int,
                 render_mode: str | None, com_obs: bool = False,
                 qpos_noise_std: float | None = None, com_velocity_reward: bool = False) -> None:
        self.ctrl_cost_weight = finite_non_negative("ctrl_cost_weight", ctrl_cost_weight)
        self.reset_noise_scale = finite_non_negative("reset_noise_scale", reset_noise_scale)
        self.qpos_noise_std = (None if qpos_noise_std is None
                               else finite_non_negative("qpos_noise_std", qpos_noise_std))
        check_integer(1, frame_skip=frame_skip)
        self.com_obs = com_obs
        self.com_velocity_reward = com_velocity_reward
        HalfCheetahEnv.__init__(self, frame_skip=frame_skip,
                                ctrl_cost_weight=self.ctrl_cost_weight,
                                reset_noise_scale=self.reset_noise_scale, render_mode=render_mode)
        if com_obs:
            self.observation_space = Box(-np.inf, np.inf, shape=(20,), dtype=np.float64)
        self._init_task()

    def do_simulation(self, ctrl: np.ndarray, n_frames: int) -> None:
        super().do_simulation(ctrl, n_frames)
        if self.com_velocity_reward:  # rllab's model.forward(): kinematics of the new state
            mujoco.mj_step1(self.model, self.data)

    def _position(self, state: Any) -> np.ndarray:
        return state.qpos[..., :1]  # the torso's slide joint, as HalfCheetah-v5 measures it

    def _motion(self, before: np.ndarray, state: Any) -> tuple[np.ndarray, np.ndarray]:
        if not self.com_velocity_reward:
            return super()._motion(before, state)
        velocity = com_velocity(state.cvel, state.xipos, state.subtree_com, self.model.body_mass)
        return velocity[..., :1], self._position(state)

    def _reward_terminated(self, term: np.ndarray, actions: np.ndarray, qpos: np.ndarray,
                           qvel: np.ndarray, cfrc_ext: np.ndarray
                           ) -> tuple[np.ndarray, np.ndarray]:
        reward = term - ctrl_cost(actions, self.ctrl_cost_weight)
        return reward, np.zeros(np.shape(reward), dtype=bool)

    def _batch_obs(self, state: Any) -> np.ndarray:
        com = state.subtree_com[..., TORSO, :] if self.com_obs else None
        return cheetah_obs(state.qpos, state.qvel, com)

    def _get_obs(self) -> np.ndarray:
        return self._batch_obs(self.data)


class _AntTaskEnv(TaskStep, AntEnv):
    """Ant-v5's model, reset and observation; reward and termination are the task family's."""

    uses_contacts = True
    uses_body_positions = True
    com_obs = False
    com_velocity_reward = False
    qpos_noise_std = None

    def __init__(self, ctrl_cost_weight: float, contact_cost_weight: float,
                 survive_reward: float, healthy_z_range: tuple[float, float] | None,
                 contact_force_range: tuple[float, float], reset_noise_scale: float,
                 render_mode: str | None, position_obs: bool = False,
                 contact_obs: bool = True) -> None:
        self.ctrl_cost_weight = finite_non_negative("ctrl_cost_weight", ctrl_cost_weight)
        self.contact_cost_weight = finite_non_negative("contact_cost_weight", contact_cost_weight)
        self.survive_reward = finite("survive_reward", survive_reward)
        self.healthy_z_range = (None if healthy_z_range is None
                                else finite_range("healthy_z_range", healthy_z_range))
        self.contact_force_range = finite_range("contact_force_range", contact_force_range)
        self.reset_noise_scale = finite_non_negative("reset_noise_scale", reset_noise_scale)
        self.position_obs, self.contact_obs = position_obs, contact_obs
        AntEnv.__init__(self, ctrl_cost_weight=self.ctrl_cost_weight,
                        contact_cost_weight=self.contact_cost_weight,
                        healthy_reward=self.survive_reward,
                        healthy_z_range=self.healthy_z_range or (-np.inf, np.inf),
                        contact_force_range=self.contact_force_range,
                        reset_noise_scale=self.reset_noise_scale,
                        exclude_current_positions_from_observation=not position_obs,
                        include_cfrc_ext_in_observation=contact_obs,
                        render_mode=render_mode)
        self._torso = self.model.body("torso").id  # Ant-v5's main body
        self._init_task()

    def _position(self, state: Any) -> np.ndarray:
        return state.xpos[..., self._torso, :2]

    def _reward_terminated(self, term: np.ndarray, actions: np.ndarray, qpos: np.ndarray,
                           qvel: np.ndarray, cfrc_ext: np.ndarray
                           ) -> tuple[np.ndarray, np.ndarray]:
        reward = (term + self.survive_reward - ctrl_cost(actions, self.ctrl_cost_weight)
                  - contact_cost(cfrc_ext, self.contact_cost_weight, self.contact_force_range))
        return reward, ant_terminated(qpos, qvel, self.healthy_z_range)

    def _batch_obs(self, state: Any) -> np.ndarray:
        return ant_obs(state.qpos, state.qvel, state.cfrc_ext, self.contact_force_range,
                       self.position_obs, self.contact_obs)


class HalfCheetahVelEnv(_CheetahTaskEnv):
    """HalfCheetahVel (MAML 2017): track a target forward velocity; ``metarl/HalfCheetahVel-v0``."""

    _task_type = VelocityTask
    _task_term = staticmethod(velocity_term)

    def __init__(self, velocity_range: tuple[float, float] = (0.0, 2.0),
                 ctrl_cost_weight: float = 0.05, reset_noise_scale: float = 0.1,
                 frame_skip: int = 5, render_mode: str | None = None,
                 com_obs: bool = False, qpos_noise_std: float | None = None,
                 com_velocity_reward: bool = False) -> None:
        self.velocity_range = finite_range("velocity_range", velocity_range)
        super().__init__(ctrl_cost_weight, reset_noise_scale, frame_skip, render_mode, com_obs,
                         qpos_noise_std, com_velocity_reward)
        utils.EzPickle.__init__(self, velocity_range, ctrl_cost_weight, reset_noise_scale,
                                frame_skip, render_mode, com_obs, qpos_noise_std,
                                com_velocity_reward)

    def sample_tasks(self, n: int, rng: np.random.Generator) -> list[VelocityTask]:
        return sample_velocity_tasks(n, rng, self.velocity_range)


class HalfCheetahDirEnv(_CheetahTaskEnv):
    """HalfCheetahDir (MAML 2017): run forward or backward; ``metarl/HalfCheetahDir-v0``."""

    _task_type = DirectionTask
    _task_term = staticmethod(direction_term)

    def __init__(self, ctrl_cost_weight: float = 0.05, reset_noise_scale: float = 0.1,
                 frame_skip: int = 5, render_mode: str | None = None,
                 balanced: bool = False, com_obs: bool = False,
                 qpos_noise_std: float | None = None, com_velocity_reward: bool = False) -> None:
        self.balanced = balanced  # before the base class, which draws a first task
        super().__init__(ctrl_cost_weight, reset_noise_scale, frame_skip, render_mode, com_obs,
                         qpos_noise_std, com_velocity_reward)
        utils.EzPickle.__init__(self, ctrl_cost_weight, reset_noise_scale, frame_skip,
                                render_mode, balanced, com_obs, qpos_noise_std,
                                com_velocity_reward)

    def sample_tasks(self, n: int, rng: np.random.Generator) -> list[DirectionTask]:
        return sample_direction_tasks(n, rng, self.balanced)


class AntVelEnv(_AntTaskEnv):
    """AntVel (MAML 2017): track a target forward velocity; ``metarl/AntVel-v0``."""

    _task_type = VelocityTask
    _task_term = staticmethod(ant_velocity_term)

    def __init__(self, velocity_range: tuple[float, float] = (0.0, 3.0),
                 ctrl_cost_weight: float = 0.005, contact_cost_weight: float = 5e-4,
                 survive_reward: float = 0.05, healthy_z_range: tuple[float, float] = (0.2, 1.0),
                 contact_force_range: tuple[float, float] = (-1.0, 1.0),
                 reset_noise_scale: float = 0.1, render_mode: str | None = None) -> None:
        self.velocity_range = finite_range("velocity_range", velocity_range)
        super().__init__(ctrl_cost_weight, contact_cost_weight, survive_reward, healthy_z_range,
                         contact_force_range, reset_noise_scale, render_mode)
        utils.EzPickle.__init__(self, velocity_range, ctrl_cost_weight, contact_cost_weight,
                                survive_reward, healthy_z_range, contact_force_range,
                                reset_noise_scale, render_mode)

    def sample_tasks(self, n: int, rng: np.random.Generator) -> list[VelocityTask]:
        return sample_velocity_tasks(n, rng, self.velocity_range)


class AntDirEnv(_AntTaskEnv):
    """AntDir (MAML 2017): walk forward or backward along x; ``metarl/AntDir-v0``.
    ``contact_obs=False`` leaves the contact forces out of the observation (27 numbers), as
    PEARL's ant does."""

    _task_type = DirectionTask
    _task_term = staticmethod(direction_term)

    def __init__(self, ctrl_cost_weight: float = 0.005, contact_cost_weight: float = 5e-4,
                 survive_reward: float = 0.05, healthy_z_range: tuple[float, float] = (0.2, 1.0),
                 contact_force_range: tuple[float, float] = (-1.0, 1.0),
                 reset_noise_scale: float = 0.1, render_mode: str | None = None,
                 balanced: bool = False, contact_obs: bool = True) -> None:
        self.balanced = balanced  # before the base class, which draws a first task
        super().__init__(ctrl_cost_weight, contact_cost_weight, survive_reward, healthy_z_range,
                         contact_force_range, reset_noise_scale, render_mode,
                         contact_obs=contact_obs)
        utils.EzPickle.__init__(self, ctrl_cost_weight, contact_cost_weight, survive_reward,
                                healthy_z_range, contact_force_range, reset_noise_scale,
                                render_mode, balanced, contact_obs)

    def sample_tasks(self, n: int, rng: np.random.Generator) -> list[DirectionTask]:
        return sample_direction_tasks(n, rng, self.balanced)


class AntGoalEnv(_AntTaskEnv):
    """AntGoal (ProMP 2019, PEARL 2019): walk to a goal in a disk; ``metarl/AntGoal-v0``.

    The defaults are both papers' code (ProMP ``ant_rand_goal.py``, PEARL ``ant_goal.py``): control
    cost 0.1, no survive reward, no termination, and the torso's x, y in the observation
    (``position_obs``), without which a memoryless policy cannot tell where the goal lies."""

    _task_type = GoalTask
    _task_term = staticmethod(goal_term)

    def __init__(self, goal_radius: float = 3.0, ctrl_cost_weight: float = 0.1,
                 contact_cost_weight: float = 5e-4, survive_reward: float = 0.0,
                 healthy_z_range: tuple[float, float] | None = None,
                 contact_force_range: tuple[float, float] = (-1.0, 1.0),
                 reset_noise_scale: float = 0.1, render_mode: str | None = None,
                 position_obs: bool = True) -> None:
        check_positive(goal_radius=goal_radius)
        self.goal_radius = finite("goal_radius", goal_radius)
        super().__init__(ctrl_cost_weight, contact_cost_weight, survive_reward, healthy_z_range,
                         contact_force_range, reset_noise_scale, render_mode, position_obs)
        utils.EzPickle.__init__(self, goal_radius, ctrl_cost_weight, contact_cost_weight,
                                survive_reward, healthy_z_range, contact_force_range,
                                reset_noise_scale, render_mode, position_obs)

    def sample_tasks(self, n: int, rng: np.random.Generator) -> list[GoalTask]:
        return sample_disk_goals(n, rng, self.goal_radius)


# ---------------------------------------------------------------- batched families


class BatchedFamily:
    """The batched form of a single family environment: same model, reset and reward code."""

    def __init__(self, single: TaskStep, num_threads: int | None) -> None:
        self._single = single
        self.observation_space = single.observation_space
        self.action_space = single.action_space
        self._physics = MujocoBatch(single.fullpath, single.frame_skip, single.uses_contacts,
                                    num_threads, single.uses_body_positions, single.com_obs,
                                    single.com_velocity_reward, single.physics_fields)
        self._targets: np.ndarray | None = None

    @property
    def num_threads(self) -> int:
        return self._physics.num_threads

    @property
    def physics(self) -> MujocoBatch:
        """The batched physics (model, frame skip and the state arrays), e.g. for benchmarks."""
        return self._physics

    def sample_tasks(self, n: int, rng: np.random.Generator) -> list[Any]:
        return self._single.sample_tasks(n, rng)

    def set_tasks(self, tasks: Sequence[Task]) -> None:
        """One environment per task; the batch size becomes ``len(tasks)``."""
        if len(tasks) == 0:
            raise ValueError("tasks must hold at least one task")
        self._targets = self._single.task_rows(tasks)
        if len(tasks) != self._physics.size:
            self._physics.resize(len(tasks))
        for name, values in self._single.model_fields(tasks).items():
            self._physics.set_model_field(name, values)

    def reset(self, rng: np.random.Generator) -> np.ndarray:
        """The single environment's reset distribution (``reset_state``), drawn from ``rng``."""
        if self._targets is None:
            raise RuntimeError("call set_tasks before reset")
        single, phys = self._single, self._physics
        phys.reset(*single.reset_state(rng, (len(self._targets),)))
        return single._batch_obs(phys)

    def step(self, actions: np.ndarray, active: np.ndarray | None = None
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        single, phys = self._single, self._physics
        actions = np.asarray(actions, dtype=np.float64)
        expected = (phys.qpos.shape[0], phys.model.nu)
        if actions.shape != expected:
            raise ValueError(f"actions must have shape {expected}, got {actions.shape}")
        actions = np.clip(actions, single._act_low, single._act_high)
        before = single._position(phys).copy()
        phys.step(actions, active)
        term = single._task_term(*single._motion(before, phys), self._targets)
        reward, terminated = single._reward_terminated(term, actions, phys.qpos, phys.qvel,
                                                       phys.cfrc_ext)
        return single._batch_obs(phys), reward, terminated

    def close(self) -> None:
        self._physics.close()
        self._single.close()


class BatchedHalfCheetahVel(BatchedFamily):
    """B HalfCheetahVel environments stepped together (see :class:`HalfCheetahVelEnv`)."""

    def __init__(self, velocity_range: tuple[float, float] = (0.0, 2.0),
                 ctrl_cost_weight: float = 0.05, reset_noise_scale: float = 0.1,
                 frame_skip: int = 5, num_threads: int | None = None,
                 com_obs: bool = False, qpos_noise_std: float | None = None,
                 com_velocity_reward: bool = False) -> None:
        super().__init__(HalfCheetahVelEnv(velocity_range, ctrl_cost_weight, reset_noise_scale,
                                           frame_skip, com_obs=com_obs,
                                           qpos_noise_std=qpos_noise_std,
                                           com_velocity_reward=com_velocity_reward), num_threads)


class BatchedHalfCheetahDir(BatchedFamily):
    """B HalfCheetahDir environments stepped together (see :class:`HalfCheetahDirEnv`)."""

    def __init__(self, ctrl_cost_weight: float = 0.05, reset_noise_scale: float = 0.1,
                 frame_skip: int = 5, num_threads: int | None = None,
                 balanced: bool = False, com_obs: bool = False,
                 qpos_noise_std: float | None = None, com_velocity_reward: bool = False) -> None:
        super().__init__(HalfCheetahDirEnv(ctrl_cost_weight, reset_noise_scale, frame_skip,
                                           balanced=balanced, com_obs=com_obs,
                                           qpos_noise_std=qpos_noise_std,
                                           com_velocity_reward=com_velocity_reward), num_threads)


class BatchedAntVel(BatchedFamily):
    """B AntVel environments stepped together (see :class:`AntVelEnv`)."""

    def __init__(self, velocity_range: tuple[float, float] = (0.0, 3.0),
                 ctrl_cost_weight: float = 0.005, contact_cost_weight: float = 5e-4,
                 survive_reward: float = 0.05, healthy_z_range: tuple[float, float] = (0.2, 1.0),
                 contact_force_range: tuple[float, float] = (-1.0, 1.0),
                 reset_noise_scale: float = 0.1, num_threads: int | None = None) -> None:
        super().__init__(AntVelEnv(velocity_range, ctrl_cost_weight, contact_cost_weight,
                                   survive_reward, healthy_z_range, contact_force_range,
                                   reset_noise_scale), num_threads)


class BatchedAntDir(BatchedFamily):
    """B AntDir environments stepped together (see :class:`AntDirEnv`)."""

    def __init__(self, ctrl_cost_weight: float = 0.005, contact_cost_weight: float = 5e-4,
                 survive_reward: float = 0.05, healthy_z_range: tuple[float, float] = (0.2, 1.0),
                 contact_force_range: tuple[float, float] = (-1.0, 1.0),
                 reset_noise_scale: float = 0.1, num_threads: int | None = None,
                 balanced: bool = False, contact_obs: bool = True) -> None:
        super().__init__(AntDirEnv(ctrl_cost_weight, contact_cost_weight, survive_reward,
                                   healthy_z_range, contact_force_range, reset_noise_scale,
                                   balanced=balanced, contact_obs=contact_obs), num_threads)


class BatchedAntGoal(BatchedFamily):
    """B AntGoal environments stepped together (see :class:`AntGoalEnv`)."""

    def __init__(self, goal_radius: float = 3.0, ctrl_cost_weight: float = 0.1,
                 contact_cost_weight: float = 5e-4, survive_reward: float = 0.0,
                 healthy_z_range: tuple[float, float] | None = None,
                 contact_force_range: tuple[float, float] = (-1.0, 1.0),
                 reset_noise_scale: float = 0.1, num_threads: int | None = None,
                 position_obs: bool = True) -> None:
        super().__init__(AntGoalEnv(goal_radius, ctrl_cost_weight, contact_cost_weight,
                                    survive_reward, healthy_z_range, contact_force_range,
                                    reset_noise_scale, position_obs=position_obs), num_threads)

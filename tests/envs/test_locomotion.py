"""Locomotion task families: rewards against formulas, batched equals single, task sampling."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import gymnasium as gym
import mujoco
import numpy as np
import pytest

import metarl_cli.envs  # noqa: F401  (registers the gymnasium ids)
from metarl_cli.envs.base import SerialBatch
from metarl_cli.envs.locomotion import (
    TORSO,
    AntDirEnv,
    AntGoalEnv,
    AntVelEnv,
    BatchedAntDir,
    BatchedAntGoal,
    BatchedAntVel,
    BatchedHalfCheetahDir,
    BatchedHalfCheetahVel,
    DirectionTask,
    HalfCheetahDirEnv,
    HalfCheetahVelEnv,
    VelocityTask,
    ant_terminated,
    sample_direction_tasks,
)
from metarl_cli.envs.point_nav import GoalTask

PAIRS = [
    (HalfCheetahVelEnv, BatchedHalfCheetahVel),
    (HalfCheetahDirEnv, BatchedHalfCheetahDir),
    (AntVelEnv, BatchedAntVel),
    (AntDirEnv, BatchedAntDir),
    (AntGoalEnv, BatchedAntGoal),
]
IDS = [single.__name__ for single, _ in PAIRS]


# ---------------------------------------------------------------- rewards against their formulas


def _cheetah_x(env: Any) -> float:
    return float(env.data.qpos[0])


def _ant_xy(env: Any) -> np.ndarray:
    return env.data.body("torso").xpos[:2].copy()


def _ant_costs(env: Any, action: np.ndarray, ctrl_cost_weight: float = 0.005) -> float:
    clipped = np.clip(action, -1.0, 1.0)
    return ctrl_cost_weight * float(clipped @ clipped) + 5e-4 * float(
        np.sum(np.clip(env.data.cfrc_ext, -1.0, 1.0) ** 2))


def _step_and_expect(env: Any, task: Any, position: Any, expected: Any) -> None:
    env.set_task(task)
    env.reset(seed=3)
    action = np.random.default_rng(0).uniform(-1.5, 1.5, size=env.action_space.shape)
    for _ in range(5):
        before = position(env)
        _, reward, terminated, truncated, _ = env.step(action)
        assert reward == pytest.approx(expected(env, before, position(env), action), abs=1e-12)
        assert not truncated


def test_halfcheetah_vel_reward() -> None:
    env = HalfCheetahVelEnv()
    assert env.dt == pytest.approx(0.05)

    def expected(env: Any, x0: float, x1: float, a: np.ndarray) -> float:
        return -abs((x1 - x0) / 0.05 - 1.3) - 0.05 * float(np.sum(np.clip(a, -1, 1) ** 2))

    _step_and_expect(env, VelocityTask(1.3), _cheetah_x, expected)


def test_halfcheetah_dir_reward() -> None:
    for d in (-1.0, 1.0):
        def expected(env: Any, x0: float, x1: float, a: np.ndarray, d: float = d) -> float:
            return d * (x1 - x0) / 0.05 - 0.05 * float(np.sum(np.clip(a, -1, 1) ** 2))

        _step_and_expect(HalfCheetahDirEnv(), DirectionTask(d), _cheetah_x, expected)


def test_cheetah_frame_skip_sets_the_time_step_of_the_reward() -> None:
    """frame_skip=1 is the MAML code's HalfCheetah (rllab: one 0.01 s physics step per env step)."""
    env = HalfCheetahVelEnv(frame_skip=1)
    assert env.dt == pytest.approx(0.01) and env.frame_skip == 1
    batched = BatchedHalfCheetahVel(frame_skip=1)
    assert batched.physics.frame_skip == 1
    batched.close()

    def expected(env: Any, x0: float, x1: float, a: np.ndarray) -> float:
        return -abs((x1 - x0) / 0.01 - 0.7) - 0.05 * float(np.sum(np.clip(a, -1, 1) ** 2))

    _step_and_expect(env, VelocityTask(0.7), _cheetah_x, expected)


def test_ant_vel_reward() -> None:
    def expected(env: Any, p0: np.ndarray, p1: np.ndarray, a: np.ndarray) -> float:
        return -abs((p1[0] - p0[0]) / 0.05 - 2.2) + 1.0 - _ant_costs(env, a) + 0.05

    _step_and_expect(AntVelEnv(), VelocityTask(2.2), _ant_xy, expected)


def test_ant_dir_reward() -> None:
    def expected(env: Any, p0: np.ndarray, p1: np.ndarray, a: np.ndarray) -> float:
        return -1.0 * (p1[0] - p0[0]) / 0.05 - _ant_costs(env, a) + 0.05

    _step_and_expect(AntDirEnv(), DirectionTask(-1.0), _ant_xy, expected)


def test_ant_goal_reward() -> None:
    # ProMP's and PEARL's AntGoal: control cost 0.1, no survive reward
    def expected(env: Any, p0: np.ndarray, p1: np.ndarray, a: np.ndarray) -> float:
        return -float(np.sum(np.abs(p1 - np.array([1.0, -2.0])))) - _ant_costs(env, a, 0.1)

    _step_and_expect(AntGoalEnv(), GoalTask((1.0, -2.0)), _ant_xy, expected)


def test_ant_goal_observes_the_torso_position_and_never_terminates() -> None:
    env = AntGoalEnv()
    obs, _ = env.reset(seed=0)
    assert obs.shape == env.observation_space.shape == (107,)
    np.testing.assert_array_equal(obs[:15], env.data.qpos)  # x, y first, as qpos.flat
    qpos = env.init_qpos.copy()
    qpos[2] = 1.5  # far above AntVel's and AntDir's healthy range
    env.set_state(qpos, env.init_qvel)
    assert not env.step(np.zeros(8))[2]
    assert AntDirEnv().observation_space.shape == (105,)
    assert AntDirEnv(contact_obs=False).reset(seed=0)[0].shape == (27,)  # PEARL's ant


def test_ant_terminates_outside_healthy_height_and_cheetah_never() -> None:
    ant = AntDirEnv()
    ant.reset(seed=0)
    assert not ant.step(np.zeros(8))[2]
    qpos = ant.init_qpos.copy()
    qpos[2] = 1.5  # torso far above the healthy range
    ant.set_state(qpos, ant.init_qvel)
    assert ant.step(np.zeros(8))[2]
    # MuJoCo resets a diverged simulation itself, so the non-finite guard is checked directly.
    qpos = np.tile(ant.init_qpos, (3, 1))
    qvel = np.tile(ant.init_qvel, (3, 1))
    qpos[1, 2], qvel[2, 4] = 0.1, np.inf
    np.testing.assert_array_equal(ant_terminated(qpos, qvel, (0.2, 1.0)), [False, True, True])
    cheetah = HalfCheetahDirEnv()
    qpos = cheetah.init_qpos.copy()
    qpos[1] = 5.0
    cheetah.reset(seed=0)
    cheetah.set_state(qpos, cheetah.init_qvel)
    assert not cheetah.step(np.zeros(6))[2]


def test_cheetah_qpos_noise_std_gives_rllabs_reset() -> None:
    """rllab reset qpos + N(0, 0.01^2), qvel + N(0, 0.1^2); gymnasium draws qpos uniformly."""
    env = HalfCheetahDirEnv(qpos_noise_std=0.01)
    qpos, qvel = env.reset_state(np.random.default_rng(0), (20_000,))
    assert np.std(qpos - env.init_qpos) == pytest.approx(0.01, rel=0.02)
    assert np.std(qvel - env.init_qvel) == pytest.approx(0.1, rel=0.02)
    single = env.reset(seed=0)[0]  # the single environment draws the same way
    np.testing.assert_allclose(np.std(single[:8] - env.init_qpos[1:]), 0.01, rtol=1.0)
    with pytest.raises(ValueError, match="qpos_noise_std"):
        HalfCheetahDirEnv(qpos_noise_std=-0.1)


@pytest.mark.parametrize(("ours", "theirs"), [(HalfCheetahDirEnv, "HalfCheetah-v5"),
                                              (AntDirEnv, "Ant-v5")])
def test_observation_and_reset_are_gymnasiums(ours: type, theirs: str) -> None:
    env, reference = ours(), gym.make(theirs).unwrapped
    np.testing.assert_array_equal(env.reset(seed=5)[0], reference.reset(seed=5)[0])
    action = np.random.default_rng(1).uniform(-1, 1, size=env.action_space.shape)
    for _ in range(3):
        np.testing.assert_array_equal(env.step(action)[0], reference.step(action)[0])


def test_cheetah_com_obs_appends_the_robots_centre_of_mass() -> None:
    """rllab's HalfCheetah observation: gymnasium's 17 entries, then the torso subtree's centre
    of mass, i.e. the mass-weighted mean of the bodies' centres (the world body has no mass)."""
    env, plain = HalfCheetahDirEnv(com_obs=True), HalfCheetahDirEnv()
    assert env.observation_space.shape == (20,) and env.observation_space.contains(
        env.reset(seed=3)[0])
    plain.reset(seed=3)
    action = np.random.default_rng(0).uniform(-1, 1, size=6)
    for _ in range(5):
        obs, plain_obs = env.step(action)[0], plain.step(action)[0]
    np.testing.assert_array_equal(obs[:17], plain_obs)
    mass, xipos = env.model.body_mass, env.data.xipos  # as mj_step left them: same stage
    np.testing.assert_allclose(obs[17:], mass @ xipos / mass.sum(), rtol=0, atol=1e-12)
    qpos = env.data.qpos.copy()
    qpos[0] += 3.0  # slide the robot 3 m forward: its centre of mass follows
    env.set_state(qpos, env.data.qvel.copy())
    assert env.step(action)[0][17] == pytest.approx(obs[17] + 3.0, abs=0.2)


def test_cheetah_com_velocity_reward_is_rllabs_body_comvel() -> None:
    """rllab's HalfCheetah rewarded the centre of mass's velocity (``get_body_comvel("torso")``)
    after ``model.forward()`` at the new state: d·v_com - 0.05‖a‖², v_com as MuJoCo's
    ``mj_subtreeVel`` gives it there; the observed centre of mass is the new state's too."""
    env = HalfCheetahDirEnv(frame_skip=1, com_obs=True, com_velocity_reward=True)
    plain = HalfCheetahDirEnv(frame_skip=1)
    env.set_task(DirectionTask(-1.0))
    env.reset(seed=3)
    plain.reset(seed=3)
    reference = mujoco.MjData(env.model)
    actions = np.random.default_rng(0).uniform(-1.5, 1.5, size=(8, 6))
    for action in actions:
        obs, reward, _, _, info = env.step(action)
        np.testing.assert_array_equal(obs[:17], plain.step(action)[0])  # same physics
        reference.qpos[:], reference.qvel[:] = env.data.qpos, env.data.qvel
        mujoco.mj_forward(env.model, reference)
        mujoco.mj_subtreeVel(env.model, reference)
        v_com = reference.subtree_linvel[TORSO, 0]
        assert info["x_velocity"] == pytest.approx(v_com, abs=1e-12)
        ctrl = 0.05 * float(np.sum(np.clip(action, -1, 1) ** 2))
        assert reward == pytest.approx(-v_com - ctrl, abs=1e-12)
        np.testing.assert_allclose(obs[17:], reference.subtree_com[TORSO], rtol=0, atol=1e-12)
    # the root's mean velocity over a step and the centre of mass's at its end differ
    assert abs(info["x_velocity"] - (plain.step(actions[0])[4]["x_velocity"])) > 1e-3


# ---------------------------------------------------------------- batched equals single


# The ant case narrows the healthy height so that some steps terminate and some do not.
EQUALITY_CASES = [(*pair, {}) for pair in PAIRS] + [
    (AntDirEnv, BatchedAntDir, {"healthy_z_range": (0.2, 0.65)}),
    (HalfCheetahDirEnv, BatchedHalfCheetahDir, {"frame_skip": 1}),
    (HalfCheetahVelEnv, BatchedHalfCheetahVel, {"frame_skip": 1, "com_obs": True}),
    (HalfCheetahDirEnv, BatchedHalfCheetahDir, {"qpos_noise_std": 0.01}),
    (HalfCheetahDirEnv, BatchedHalfCheetahDir,
     {"frame_skip": 1, "com_obs": True, "com_velocity_reward": True}),
    (HalfCheetahVelEnv, BatchedHalfCheetahVel, {"com_velocity_reward": True}),
    (AntDirEnv, BatchedAntDir, {"contact_obs": False, "ctrl_cost_weight": 0.5,
                                "survive_reward": 1.0})]


@pytest.mark.parametrize(("single_cls", "batched_cls", "kwargs"), EQUALITY_CASES,
                         ids=[*IDS, "AntDirEnv-terminating", "HalfCheetahDirEnv-frame_skip_1",
                              "HalfCheetahVelEnv-com_obs", "HalfCheetahDirEnv-rllab_reset",
                              "HalfCheetahDirEnv-rllab_env", "HalfCheetahVelEnv-com_velocity",
                              "AntDirEnv-pearl"])
def test_batched_equals_single(single_cls: type, batched_cls: type, kwargs: dict[str, Any],
                               batched_vs_single: SimpleNamespace) -> None:
    batched = batched_cls(num_threads=2, **kwargs)
    tasks = batched.sample_tasks(3, np.random.default_rng(11))
    obs0, outputs = batched_vs_single.run(batched, tasks, seed=4, steps=30)

    # The batched reset is gymnasium's distribution drawn from the passed generator, in this order.
    model = single_cls(**kwargs)
    rng, noise = np.random.default_rng(4), model.reset_noise_scale
    nq, nv = model.model.nq, model.model.nv
    qpos = model.init_qpos + (rng.uniform(-noise, noise, size=(3, nq))
                              if "qpos_noise_std" not in kwargs
                              else kwargs["qpos_noise_std"] * rng.standard_normal((3, nq)))
    qvel = model.init_qvel + noise * rng.standard_normal((3, nv))
    singles = batched_vs_single.start(lambda: single_cls(**kwargs), tasks, qpos, qvel, obs0)

    for _, obs, rewards, terminated in outputs:
        assert obs.shape == (3, *batched.observation_space.shape) and obs.dtype == np.float64
        assert rewards.shape == (3,) and rewards.dtype == np.float64
        assert terminated.shape == (3,) and terminated.dtype == bool
    batched_vs_single.replay(outputs, singles)
    if "healthy_z_range" in kwargs:
        assert 0 < np.mean([out[3] for out in outputs]) < 1
    batched.close()


@pytest.mark.parametrize("batched_cls", [BatchedHalfCheetahVel, BatchedAntGoal])
def test_batched_results_do_not_depend_on_num_threads(
        batched_cls: type, batched_vs_single: SimpleNamespace) -> None:
    runs = []
    for num_threads in (1, 2):
        batched = batched_cls(num_threads=num_threads)
        tasks = batched.sample_tasks(5, np.random.default_rng(0))
        runs.append(batched_vs_single.run(batched, tasks, seed=9, steps=10))
        batched.close()
    (obs_a, out_a), (obs_b, out_b) = runs
    np.testing.assert_array_equal(obs_a, obs_b)
    for step_a, step_b in zip(out_a, out_b, strict=True):
        for x, y in zip(step_a, step_b, strict=True):
            np.testing.assert_array_equal(x, y)


def test_batched_physics_copies_only_what_the_family_reads() -> None:
    cheetah, ant = BatchedHalfCheetahDir(num_threads=2), BatchedAntGoal(num_threads=2)
    for family in (cheetah, ant):
        family.set_tasks(family.sample_tasks(3, np.random.default_rng(0)))
        family.reset(np.random.default_rng(1))
        for _ in range(10):  # the ant starts above the floor; it lands within 10 steps
            family.step(np.zeros((3, family.action_space.shape[0])))
    assert cheetah.physics.xpos.shape == (3, 0, 3) and cheetah.physics.cfrc_ext.shape == (3, 0, 6)
    assert cheetah.physics.subtree_com.shape == (3, 0, 3)
    assert cheetah.physics.cvel.shape == (3, 0, 6) and cheetah.physics.xipos.shape == (3, 0, 3)
    nbody = ant.physics.model.nbody
    assert ant.physics.xpos.shape == (3, nbody, 3) and ant.physics.cfrc_ext.shape == (3, nbody, 6)
    assert np.abs(ant.physics.xpos).sum() > 0 and np.abs(ant.physics.cfrc_ext).sum() > 0
    cheetah.close()
    ant.close()


def test_batched_resizes_and_refuses_bad_input() -> None:
    batched = BatchedHalfCheetahDir(num_threads=2)
    with pytest.raises(RuntimeError, match="set_tasks"):
        batched.reset(np.random.default_rng(0))
    for b in (4, 2, 5):
        batched.set_tasks(batched.sample_tasks(b, np.random.default_rng(b)))
        assert batched.reset(np.random.default_rng(0)).shape == (b, 17)
        assert batched.step(np.zeros((b, 6)))[0].shape == (b, 17)
    with pytest.raises(ValueError, match="shape"):
        batched.step(np.zeros((4, 6)))
    with pytest.raises(TypeError, match="DirectionTask"):
        batched.set_tasks([VelocityTask(1.0)])
    with pytest.raises(ValueError, match="tasks"):
        batched.set_tasks([])
    batched.close()  # lets the simulations go; the next set_tasks makes new ones
    batched.set_tasks(batched.sample_tasks(5, np.random.default_rng(5)))
    assert batched.reset(np.random.default_rng(0)).shape == (5, 17)
    batched.close()


# ---------------------------------------------------------------- task sampling


@pytest.mark.parametrize("single_cls", [single for single, _ in PAIRS], ids=IDS)
def test_sample_tasks_uses_only_the_passed_rng(single_cls: type) -> None:
    env = single_cls()
    global_state = np.random.get_state()
    first = env.sample_tasks(50, np.random.default_rng(123))
    second = env.sample_tasks(50, np.random.default_rng(123))
    assert first == second
    assert first != env.sample_tasks(50, np.random.default_rng(124))
    after = np.random.get_state()
    assert global_state[0] == after[0]
    np.testing.assert_array_equal(global_state[1], after[1])
    assert global_state[2:] == after[2:]


def test_sample_tasks_ranges() -> None:
    rng = np.random.default_rng(0)
    for env, high in [(HalfCheetahVelEnv(), 2.0), (AntVelEnv(), 3.0)]:
        velocities = np.array([t.velocity for t in env.sample_tasks(500, rng)])
        assert velocities.min() >= 0.0 and velocities.max() <= high
        assert velocities.max() > 0.9 * high and velocities.min() < 0.1 * high
    for env in (HalfCheetahDirEnv(), AntDirEnv()):
        directions = {t.direction for t in env.sample_tasks(100, rng)}
        assert directions == {-1.0, 1.0}
    goals = np.array([t.goal for t in AntGoalEnv().sample_tasks(4000, rng)])
    radii = np.linalg.norm(goals, axis=1)
    assert radii.max() <= 3.0
    # Uniform in area: E[r²] = R²/2 (a uniform radius would give R²/3).
    assert np.mean(radii**2) == pytest.approx(4.5, abs=0.2)
    assert np.all(np.abs(np.mean(goals, axis=0)) < 0.15)


def test_sample_tasks_honours_the_ranges_given() -> None:
    tasks = HalfCheetahVelEnv(velocity_range=(0.0, 3.0)).sample_tasks(200, np.random.default_rng(0))
    assert max(t.velocity for t in tasks) > 2.0
    goals = AntGoalEnv(goal_radius=0.5).sample_tasks(200, np.random.default_rng(0))
    assert max(np.hypot(*t.goal) for t in goals) <= 0.5


# ---------------------------------------------------------------- constructors and registration


@pytest.mark.parametrize(("cls", "kwargs", "name"), [
    (HalfCheetahVelEnv, {"velocity_range": (2.0, 1.0)}, "velocity_range"),
    (HalfCheetahVelEnv, {"ctrl_cost_weight": -0.1}, "ctrl_cost_weight"),
    (HalfCheetahDirEnv, {"reset_noise_scale": -1.0}, "reset_noise_scale"),
    (AntVelEnv, {"velocity_range": (0.0, float("inf"))}, "velocity_range"),
    (AntDirEnv, {"contact_cost_weight": -1.0}, "contact_cost_weight"),
    (AntDirEnv, {"survive_reward": float("nan")}, "survive_reward"),
    (AntDirEnv, {"healthy_z_range": (1.0, 0.2)}, "healthy_z_range"),
    (AntGoalEnv, {"contact_force_range": (1.0, -1.0)}, "contact_force_range"),
    (AntGoalEnv, {"goal_radius": 0.0}, "goal_radius"),
    (BatchedHalfCheetahVel, {"num_threads": 0}, "num_threads"),
    (BatchedHalfCheetahDir, {"frame_skip": 0}, "frame_skip"),
    (HalfCheetahVelEnv, {"frame_skip": 2.5}, "frame_skip"),
    (BatchedAntGoal, {"num_threads": 1.5}, "num_threads"),
    (BatchedAntVel, {"ctrl_cost_weight": -1.0}, "ctrl_cost_weight"),
])
def test_bad_constructor_values_name_the_parameter(cls: type, kwargs: dict[str, Any], name: str
                                                   ) -> None:
    with pytest.raises(ValueError, match=name):
        cls(**kwargs)


def test_serial_batch_steps_single_envs() -> None:
    batch = SerialBatch(lambda: HalfCheetahVelEnv())
    rng = np.random.default_rng(0)
    batch.set_tasks(batch.sample_tasks(2, rng))
    assert batch.reset(rng).shape == (2, 17)
    obs, rewards, terminated = batch.step(rng.uniform(-1, 1, size=(2, 6)))
    assert obs.shape == (2, 17) and rewards.shape == (2,) and not terminated.any()


def test_balanced_direction_lists_hold_both_directions() -> None:
    for seed in range(20):
        rng = np.random.default_rng(seed)
        pair = sample_direction_tasks(2, rng, balanced=True)
        assert sorted(t.direction for t in pair) == [-1.0, 1.0]
        five = [t.direction for t in sample_direction_tasks(5, rng, balanced=True)]
        assert sorted(five) in ([-1.0, -1.0, 1.0, 1.0, 1.0], [-1.0, -1.0, -1.0, 1.0, 1.0])

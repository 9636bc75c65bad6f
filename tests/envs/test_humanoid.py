"""HumanoidDir: the reward against gymnasium's Humanoid-v5 and by hand, the observation's
layout, termination, and the batched form equal to the single environment."""

from __future__ import annotations

from types import SimpleNamespace

import gymnasium as gym
import numpy as np
import pytest

from metarl_cli.envs.humanoid import (
    BatchedHumanoidDir,
    HeadingTask,
    HumanoidDirEnv,
    impact_cost,
    sample_heading_tasks,
)
from metarl_cli.envs.locomotion import DirectionTask, uniform_reset


def test_heading_zero_pays_gymnasiums_humanoid_reward() -> None:
    ours, theirs = HumanoidDirEnv(), gym.make("Humanoid-v5").unwrapped
    ours.set_task(HeadingTask(0.0))
    ours.reset(seed=0)
    theirs.reset(seed=0)
    theirs.set_state(ours.data.qpos.copy(), ours.data.qvel.copy())
    rng = np.random.default_rng(1)
    for _ in range(30):  # within [-0.4, 0.4]: no clipping, so both charge the same action
        action = rng.uniform(-0.4, 0.4, size=17)
        _, reward, terminated, _, _ = ours.step(action)
        _, expected, gym_terminated, _, info = theirs.step(action)
        assert terminated == gym_terminated
        # PEARL pays the bonus on the step that ends the episode too; gymnasium does not
        assert reward == pytest.approx(expected + 5.0 * terminated, abs=1e-9)
        if terminated:
            break
    assert info["reward_forward"] != 0.0


def test_reward_follows_the_task_direction() -> None:
    env = HumanoidDirEnv()
    env.set_task(HeadingTask(2.0))
    env.reset(seed=3)
    action = np.full(17, 0.7)  # clipped to 0.4 before the physics and the cost
    before = env._position(env.data).copy()
    _, reward, _, _, info = env.step(action)
    velocity = (info["position"] - before) / env.dt
    direction = np.array([np.cos(2.0), np.sin(2.0)])
    high = env.action_space.high.astype(np.float64)  # 0.4 in float32
    expected = (1.25 * velocity @ direction + 5.0 - 0.1 * high @ high
                - min(5e-7 * np.square(env.data.cfrc_ext).sum(), 10.0))
    assert reward == pytest.approx(expected, abs=1e-9)
    mass = env.model.body_mass
    com = (mass[:, None] * env.data.xipos).sum(axis=0)[:2] / mass.sum()
    np.testing.assert_allclose(info["position"], com, rtol=0, atol=1e-12)


def test_impact_cost_is_capped() -> None:
    forces = np.zeros((2, 14, 6))
    forces[1, 3, 0] = 1e5
    np.testing.assert_allclose(impact_cost(forces, 5e-7, 10.0), [0.0, 10.0])


def test_observation_holds_every_bodys_rows() -> None:
    env = HumanoidDirEnv()
    obs, _ = env.reset(seed=0)
    d, nbody = env.data, env.model.nbody
    assert obs.shape == env.observation_space.shape == (376,)
    parts = [d.qpos[2:], d.qvel, d.cinert.ravel(), d.cvel.ravel(), d.qfrc_actuator,
             d.cfrc_ext.ravel()]
    np.testing.assert_array_equal(obs, np.concatenate(parts))
    assert d.cinert.shape == (nbody, 10)


def test_episode_ends_when_the_torso_leaves_one_to_two_metres() -> None:
    env = HumanoidDirEnv()
    qpos = np.tile(env.init_qpos, (6, 1))
    qpos[:, 2] = [1.0, 1.4, 2.0, 0.99, 2.01, 1.4]
    qpos[5, 0] = np.nan
    _, terminated = env._reward_terminated(np.zeros(6), np.zeros((6, 17)), qpos,
                                           np.zeros((6, env.model.nv)),
                                           np.zeros((6, env.model.nbody, 6)))
    np.testing.assert_array_equal(terminated, [False, False, False, True, True, True])


def test_tasks_are_angles_in_the_full_circle() -> None:
    angles = np.array([t.angle for t in sample_heading_tasks(2000, np.random.default_rng(0))])
    assert angles.min() >= 0 and angles.max() < 2 * np.pi
    assert np.histogram(angles, bins=4, range=(0, 2 * np.pi))[0].min() > 400


def test_batched_equals_single(batched_vs_single: SimpleNamespace) -> None:
    batched = BatchedHumanoidDir(num_threads=2)
    tasks = batched.sample_tasks(3, np.random.default_rng(11))
    obs0, outputs = batched_vs_single.run(batched, tasks, seed=4, steps=40)
    model = HumanoidDirEnv()
    qpos, qvel = uniform_reset(model.init_qpos, model.init_qvel, 0.01,
                               np.random.default_rng(4), (3,))
    singles = batched_vs_single.start(HumanoidDirEnv, tasks, qpos, qvel, obs0)
    assert batched_vs_single.replay(outputs, singles).any()  # random actions topple it
    with pytest.raises(TypeError, match="HeadingTask"):
        batched.set_tasks([DirectionTask(1.0)])
    batched.close()


@pytest.mark.parametrize(("kwargs", "name"), [
    ({"ctrl_cost_weight": -1.0}, "ctrl_cost_weight"),
    ({"healthy_z_range": (2.0, 1.0)}, "healthy_z_range"),
    ({"alive_bonus": float("nan")}, "alive_bonus"),
    ({"num_threads": 0}, "num_threads"),
])
def test_bad_constructor_values_name_the_parameter(kwargs: dict[str, float], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        BatchedHumanoidDir(**kwargs)

"""PEARL's point robots: reward formulas, task distributions, batched equals single env, and
the registered gymnasium ids."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

import metarl_cli.envs  # noqa: F401  (registers the ids)
from metarl_cli.envs.point_robot import (
    BatchedPointRobot,
    BatchedPointRobotSparse,
    PointGoalTask,
    PointRobotEnv,
    PointRobotSparseEnv,
)


def test_dense_reward_and_clipped_steps() -> None:
    env = PointRobotEnv()
    env.set_task(PointGoalTask((0.5, -0.5)))
    obs, _ = env.reset(seed=0)
    assert np.all(np.abs(obs) <= 1.0)
    nxt, reward, terminated, truncated, _ = env.step(np.array([3.0, -0.5]))
    np.testing.assert_allclose(nxt, obs + np.array([0.1, -0.05]))
    assert reward == pytest.approx(-np.linalg.norm(nxt - np.array([0.5, -0.5])))
    assert not terminated and not truncated


def test_sparse_reward_inside_and_outside_the_radius() -> None:
    env = PointRobotSparseEnv()
    env.set_task(PointGoalTask((0.0, 0.25)))
    obs, _ = env.reset(seed=0)
    assert np.array_equal(obs, np.zeros(2))
    _, far, _, _, info = env.step(np.array([0.0, 0.0]))  # distance 0.25 > 0.2
    assert far == 0.0 and info["dense_reward"] == pytest.approx(-0.25)
    _, near, _, _, info = env.step(np.array([0.0, 1.0]))  # at (0, 0.1): distance 0.15
    assert near == pytest.approx(1.0 - 0.15) and info["dense_reward"] == pytest.approx(-0.15)


def test_task_distributions() -> None:
    rng = np.random.default_rng(0)
    dense = PointRobotEnv().sample_tasks(200, rng)
    assert all(max(abs(g) for g in t.goal) <= 1.0 for t in dense)
    sparse = PointRobotSparseEnv().sample_tasks(200, rng)
    goals = np.array([t.goal for t in sparse])
    np.testing.assert_allclose(np.linalg.norm(goals, axis=1), 1.0)
    assert (goals[:, 1] >= 0).all() and goals[:, 0].min() < -0.5 < 0.5 < goals[:, 0].max()


@pytest.mark.parametrize(("single", "batched"), [(PointRobotEnv, BatchedPointRobot),
                                                 (PointRobotSparseEnv, BatchedPointRobotSparse)])
def test_batched_equals_single_env_step_for_step(single, batched) -> None:
    family = batched()
    tasks = family.sample_tasks(3, np.random.default_rng(1))
    family.set_tasks(tasks)
    obs = family.reset(np.random.default_rng(2))
    envs = []
    for task, start in zip(tasks, obs, strict=True):
        env = single()
        env.set_task(task)
        env.reset(seed=0)
        env._pos = start.copy()  # the batched form draws starts from its own rng
        envs.append(env)
    actions = np.random.default_rng(3).uniform(-1.5, 1.5, size=(20, 3, 2))
    for a in actions:
        b_obs, b_rew, b_term = family.step(a)
        for i, env in enumerate(envs):
            o, r, term, _, _ = env.step(a[i])
            np.testing.assert_allclose(b_obs[i], o)
            assert b_rew[i] == pytest.approx(r) and b_term[i] == term


def test_sparse_family_offers_the_shaped_training_reward() -> None:
    tasks = [PointGoalTask((1.0, 0.0)), PointGoalTask((0.0, 1.0))]
    next_obs = torch.tensor([[[[0.9, 0.0], [0.0, 0.0]]], [[[0.0, 0.0], [0.0, 0.95]]]])
    shaped = BatchedPointRobotSparse().training_rewards(tasks, next_obs)
    torch.testing.assert_close(shaped, torch.tensor([[[-0.1, -1.0]], [[-1.0, -0.05]]]))
    sparse = BatchedPointRobotSparse(shaped_training_reward=False).training_rewards(tasks,
                                                                                    next_obs)
    torch.testing.assert_close(sparse, torch.tensor([[[0.9, 0.0]], [[0.0, 0.95]]]))


def test_registered_ids_make_the_task_envs() -> None:
    for env_id, cls in [("metarl/PointRobot-v0", PointRobotEnv),
                        ("metarl/PointRobotSparse-v0", PointRobotSparseEnv)]:
        env = gym.make(env_id)
        assert isinstance(env.unwrapped, cls) and env.spec.max_episode_steps == 20

"""Bernoulli bandits: reward against its formula, batched equals single, no global generator."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import metarl_cli.envs  # noqa: F401  (registers the gymnasium ids)
from metarl_cli.envs.bandits import (
    BanditTask,
    BatchedBernoulliBandit,
    BernoulliBanditEnv,
    counter_uniforms,
)


def test_counter_uniforms_are_uniform_and_independent_across_keys_and_steps() -> None:
    keys = np.arange(20000, dtype=np.uint64)
    u = counter_uniforms(keys, 0)
    v = counter_uniforms(keys, 1)
    assert 0.0 <= u.min() and u.max() < 1.0
    assert abs(u.mean() - 0.5) < 0.01 and abs(u.var() - 1 / 12) < 0.005
    assert abs(np.corrcoef(u, v)[0, 1]) < 0.03
    assert np.array_equal(u, counter_uniforms(keys, 0))


def test_neighbouring_keys_are_not_shifted_copies_of_one_stream() -> None:
    keys = np.arange(1000, 1064, dtype=np.uint64)
    draws = np.stack([counter_uniforms(keys, c) for c in range(20)], axis=1)  # (keys, draws)
    # draw c + 1 of key k against draw c of key k + 1: equal nowhere
    assert not np.isclose(draws[:-1, 1:], draws[1:, :-1]).any()
    assert len(np.unique(draws)) == draws.size


def test_reward_is_a_bernoulli_draw_of_the_pulled_arm() -> None:
    env = BatchedBernoulliBandit(num_arms=3)
    env.set_tasks([BanditTask(probs=(0.0, 1.0, 0.25))] * 4000)
    obs = env.reset(np.random.default_rng(0))
    assert obs.shape == (4000, 1) and np.all(obs == 1.0)
    for arm, p in enumerate((0.0, 1.0, 0.25)):
        obs, reward, terminated = env.step(np.full(4000, arm))
        assert set(np.unique(reward)) <= {0.0, 1.0} and not terminated.any()
        assert abs(reward.mean() - p) < 0.03
    with pytest.raises(ValueError, match="arm indices"):
        env.step(np.full(4000, 3))


def test_tasks_are_uniform_probabilities_from_the_given_generator() -> None:
    env = BernoulliBanditEnv(num_arms=10)
    tasks = env.sample_tasks(500, np.random.default_rng(3))
    probs = np.array([t.probs for t in tasks])
    assert probs.shape == (500, 10) and 0 <= probs.min() and probs.max() <= 1
    assert abs(probs.mean() - 0.5) < 0.02
    assert tasks == env.sample_tasks(500, np.random.default_rng(3))
    with pytest.raises(ValueError, match="num_arms"):
        BernoulliBanditEnv(num_arms=1)


def test_batched_equals_single_env_step_for_step() -> None:
    tasks = BernoulliBanditEnv(5).sample_tasks(6, np.random.default_rng(1))
    batched = BatchedBernoulliBandit(5)
    batched.set_tasks(tasks)
    state = np.random.get_state()
    batched.reset(np.random.default_rng(42))
    seeds = np.random.default_rng(42).integers(0, 2**31 - 1, size=6)
    singles = []
    for task, seed in zip(tasks, seeds, strict=True):
        env = gym.make("metarl/BernoulliBandit-v0", num_arms=5).unwrapped
        env.set_task(task)
        env.reset(seed=int(seed))
        singles.append(env)
    actions = np.random.default_rng(7).integers(0, 5, size=(30, 6))
    for step_actions in actions:
        _, rewards, _ = batched.step(step_actions)
        single = [env.step(a)[1] for env, a in zip(singles, step_actions, strict=True)]
        np.testing.assert_array_equal(rewards, single)
    assert np.array_equal(np.random.get_state()[1], state[1])  # global generator untouched

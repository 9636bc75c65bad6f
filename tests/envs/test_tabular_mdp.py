"""Tabular MDPs: task distribution, reward and transition formulas, batched equals single."""

from __future__ import annotations

import gymnasium as gym
import numpy as np

import metarl_cli.envs  # noqa: F401  (registers the gymnasium ids)
from metarl_cli.envs.tabular_mdp import BatchedTabularMDP, MDPTask, TabularMDPEnv


def deterministic_task(num_states: int = 3, num_actions: int = 2) -> MDPTask:
    # action a in state s moves to (s + a + 1) mod S; mean reward 10 s + a
    transitions = np.zeros((num_states, num_actions, num_states))
    for s in range(num_states):
        for a in range(num_actions):
            transitions[s, a, (s + a + 1) % num_states] = 1.0
    means = 10.0 * np.arange(num_states)[:, None] + np.arange(num_actions)[None]
    return MDPTask(transitions=tuple(tuple(tuple(r) for r in s) for s in transitions.tolist()),
                   reward_means=tuple(tuple(r) for r in means.tolist()))


def test_task_distribution() -> None:
    env = TabularMDPEnv()
    tasks = env.sample_tasks(300, np.random.default_rng(0))
    transitions = np.array([t.transitions for t in tasks])
    means = np.array([t.reward_means for t in tasks])
    assert transitions.shape == (300, 10, 5, 10) and means.shape == (300, 10, 5)
    np.testing.assert_allclose(transitions.sum(-1), 1.0)
    assert abs(transitions.mean() - 0.1) < 1e-9
    assert abs(transitions.var() - 9 / (100 * 11)) < 5e-4  # Dirichlet(1) marginal variance
    assert abs(means.mean() - 1.0) < 0.03 and abs(means.std() - 1.0) < 0.03


def test_transitions_rewards_and_one_hot_observations() -> None:
    env = BatchedTabularMDP(num_states=3, num_actions=2)
    env.set_tasks([deterministic_task()] * 5000)
    obs = env.reset(np.random.default_rng(0))
    assert np.all(obs == [1.0, 0.0, 0.0])  # episodes start in state 0
    obs, rewards, terminated = env.step(np.ones(5000, dtype=np.int64))  # 0 -> 2
    assert np.all(obs == [0.0, 0.0, 1.0]) and not terminated.any()
    noise = rewards - 1.0
    assert abs(noise.mean()) < 0.05 and abs(noise.std() - 1.0) < 0.05
    obs, rewards, _ = env.step(np.zeros(5000, dtype=np.int64))  # 2 -> 0, mean 20
    assert np.all(obs == [1.0, 0.0, 0.0]) and abs(rewards.mean() - 20.0) < 0.05


def test_stochastic_transitions_follow_the_task() -> None:
    env = BatchedTabularMDP(num_states=3, num_actions=1)
    row = (0.2, 0.5, 0.3)
    task = MDPTask(transitions=(((row),),) * 3, reward_means=((0.0,),) * 3)
    env.set_tasks([task] * 20000)
    env.reset(np.random.default_rng(1))
    obs, _, _ = env.step(np.zeros(20000, dtype=np.int64))
    np.testing.assert_allclose(obs.mean(0), row, atol=0.015)


def test_batched_equals_single_env_step_for_step() -> None:
    tasks = TabularMDPEnv().sample_tasks(4, np.random.default_rng(2))
    batched = BatchedTabularMDP()
    batched.set_tasks(tasks)
    first = batched.reset(np.random.default_rng(9))
    seeds = np.random.default_rng(9).integers(0, 2**31 - 1, size=4)
    singles = []
    for task, seed in zip(tasks, seeds, strict=True):
        env = gym.make("metarl/TabularMDP-v0").unwrapped
        env.set_task(task)
        obs, _ = env.reset(seed=int(seed))
        singles.append(env)
        np.testing.assert_array_equal(obs, first[len(singles) - 1])
    for step_actions in np.random.default_rng(3).integers(0, 5, size=(10, 4)):
        obs, rewards, _ = batched.step(step_actions)
        results = [env.step(a) for env, a in zip(singles, step_actions, strict=True)]
        np.testing.assert_array_equal(obs, np.stack([r[0] for r in results]))
        np.testing.assert_array_equal(rewards, [r[1] for r in results])

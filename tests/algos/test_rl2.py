"""RL²: the learner contract on point_nav and on a bandit, GAE over whole trials, the state
carried across the episodes of a trial and reset between trials, resume, and a short learning
test on two-armed bandits."""

from __future__ import annotations

import copy
import functools
import io
from collections.abc import Callable

import numpy as np
import pytest
import torch
from omegaconf import DictConfig

from metarl_cli.algos.rl2 import RL2
from metarl_cli.commands.experiment import build_experiment
from metarl_cli.core.bandit_baselines import random_reward
from metarl_cli.core.build import ConfigError
from metarl_cli.core.evaluation import meta_test
from metarl_cli.core.returns import gae
from metarl_cli.core.sampler import Sampler
from metarl_cli.envs.bandits import BatchedBernoulliBandit
from metarl_cli.envs.point_nav import BatchedPointNav
from metarl_cli.policies.mlp import mlp_policy
from metarl_cli.policies.recurrent import (
    RecurrentActor,
    recurrent_policy,
    trials_from_episodes,
)

Adam = functools.partial(torch.optim.Adam, lr=1e-3)


def make_rl2(env, horizon: int, seed: int = 0, hidden_size: int = 16, **kwargs) -> RL2:
    torch.manual_seed(seed)
    policy = recurrent_policy(env.observation_space, env.action_space, hidden_size=hidden_size)
    args = {"rollouts_per_task": 2, "episodes_per_trial": 3, "ppo_epochs": 2,
            "num_minibatches": 2, "optimizer": Adam} | kwargs
    return RL2(policy, Sampler(env, horizon=horizon, seed=seed), **args)


@pytest.mark.parametrize("family", ["point_nav", "bandit"])
def test_train_step_metrics_meta_test_and_state_round_trip(family: str) -> None:
    env = BatchedPointNav() if family == "point_nav" else BatchedBernoulliBandit(num_arms=3)
    tasks = env.sample_tasks(3, np.random.default_rng(0))
    source = make_rl2(env, horizon=6)
    curve = meta_test(source, source.sampler, tasks, steps=2, rollouts=2)
    assert curve.returns.shape == (3, 3) and np.all(np.isfinite(curve.returns))
    metrics = source.train_step(tasks)
    expected = {f"meta_train/return_episode_{k}" for k in range(3)} | {
        "meta_train/return_pre", "meta_train/return_post", "meta_train/return_trial",
        "loss/policy", "loss/value", "loss/entropy", "optim/kl", "env_steps"}
    assert expected <= metrics.keys()
    assert all(np.isfinite(v) for v in metrics.values())
    if family == "bandit":
        assert metrics["env_steps"] == 3 * 3 * 2 * 6
    # resume: the same next iteration from a state dict, on a differently initialised learner
    state = source.state_dict()
    torch.save(state, buffer := io.BytesIO())
    buffer.seek(0)
    target = make_rl2(env, horizon=6, seed=1)
    target.load_state_dict(torch.load(buffer, weights_only=True))
    target.sampler.load_state_dict(copy.deepcopy(source.sampler.state_dict()))
    assert source.train_step(tasks) == target.train_step(tasks)
    for p, q in zip(source.policy.parameters(), target.policy.parameters(), strict=True):
        assert torch.equal(p, q)


def test_adapt_carries_the_trial_and_exploration_starts_a_new_one() -> None:
    env = BatchedBernoulliBandit(num_arms=2)
    tasks = env.sample_tasks(2, np.random.default_rng(0))
    learner = make_rl2(env, horizon=4)
    actor = learner.exploration_policy(2)
    batch = learner.sampler.sample(actor, tasks, 3)
    carried = actor.state.clone()
    assert learner.adapt(actor, batch) is actor and torch.equal(actor.state, carried)
    fresh = learner.exploration_policy(2)
    assert isinstance(fresh, RecurrentActor) and fresh is not actor and fresh.state is None


def test_gae_runs_over_the_whole_trial_across_episode_boundaries() -> None:
    """The advantages RL² trains on equal GAE on the concatenated valid steps of each trial,
    with the values of the next episode's start following an episode's last step."""
    env = BatchedPointNav(goal_range=0.15, tolerance=0.12)  # early terminations
    tasks = env.sample_tasks(2, np.random.default_rng(4))
    learner = make_rl2(env, horizon=6, gamma=0.9, gae_lambda=0.8)
    actor = learner.exploration_policy(2)
    batches = [learner.sampler.sample(actor, tasks, 2) for _ in range(2)]
    trials = trials_from_episodes(batches)
    with torch.no_grad():
        values = learner.policy.evaluate(trials).values
    advantages = gae(trials.rewards, values, trials.mask, 0.9, 0.8)
    for row in range(trials.mask.shape[0]):
        n, r = divmod(row, 2)
        rewards = torch.cat([b.rewards[n, r][b.mask[n, r] > 0] for b in batches])
        length = len(rewards)
        v = values[row, :length]
        expected, running = torch.zeros(length), 0.0
        for t in reversed(range(length)):
            next_v = v[t + 1] if t + 1 < length else 0.0
            running = rewards[t] + 0.9 * next_v - v[t] + 0.9 * 0.8 * running
            expected[t] = running
        torch.testing.assert_close(advantages[row, :length], expected)
        assert torch.all(advantages[row, length:] == 0)


def test_bad_values_and_the_wrong_policy_are_refused() -> None:
    env = BatchedBernoulliBandit(num_arms=2)
    with pytest.raises(ValueError, match="episodes_per_trial must be an integer >= 1"):
        make_rl2(env, horizon=3, episodes_per_trial=0)
    with pytest.raises(ValueError, match="bptt_length"):
        make_rl2(env, horizon=3, bptt_length=0)
    mlp = mlp_policy(env.observation_space, env.action_space, [8])
    with pytest.raises(ValueError, match="choose model=gru"):
        RL2(mlp, Sampler(env, horizon=3, seed=0), optimizer=Adam)


def test_algo_chooses_the_recurrent_model(compose_config: Callable[..., DictConfig]) -> None:
    cfg = compose_config("algo=rl2", "env=bandit_k5", "eval.num_tasks=2", "meta_batch_size=2")
    assert cfg.model._target_.endswith("recurrent_policy")
    assert (cfg.algo.episodes_per_trial, cfg.eval.steps, cfg.env.horizon) == (1, 0, 100)
    assert compose_config("algo=rl2", "env=bandit_k5", "env.horizon=10").env.horizon == 10
    assert compose_config("algo=rl2", "model.cell=lstm").model.cell == "lstm"
    exp = build_experiment(compose_config("algo=rl2", "model.cell=lstm", "eval.num_tasks=2",
                                          "meta_batch_size=2"))
    assert exp.learner.policy.cell == "lstm"
    with pytest.raises(ConfigError, match="algo: policy: RL² needs the recurrent policy"):
        build_experiment(compose_config("algo=rl2", "model=mlp", "eval.num_tasks=2",
                                        "meta_batch_size=2"))


@pytest.mark.slow
def test_rl2_beats_uniform_random_regret_on_two_armed_bandits() -> None:
    torch.set_num_threads(1)
    env = BatchedBernoulliBandit(num_arms=2)
    horizon = 10
    learner = make_rl2(env, horizon=horizon, hidden_size=32, rollouts_per_task=8,
                       episodes_per_trial=1, ppo_epochs=4, num_minibatches=2,
                       entropy_coef=0.01, gae_lambda=0.3,
                       optimizer=functools.partial(torch.optim.Adam, lr=3e-3))
    train_rng = np.random.default_rng(0)
    for _ in range(120):
        learner.train_step(env.sample_tasks(32, train_rng))
    tasks = env.sample_tasks(200, np.random.default_rng(123))
    probs = np.array([t.probs for t in tasks])
    oracle = horizon * probs.max(1)
    curve = meta_test(learner, Sampler(env, horizon, seed=99), tasks, steps=0, rollouts=20)
    rl2_regret = float((oracle - curve.returns[0]).mean())
    random_regret = float((oracle - random_reward(probs, horizon)).mean())
    # random regret is n/6 ~ 1.67 here; a learner that exploits what it saw does much better
    assert rl2_regret < 0.7 * random_regret, (rl2_regret, random_regret)

"""Recurrent policy: acting step by step equals the sequence forward over recorded trials; the
state is carried across episodes of a trial, frozen on padding steps and reset between trials."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from metarl_cli.core.sampler import Sampler
from metarl_cli.envs.bandits import BatchedBernoulliBandit
from metarl_cli.envs.point_nav import BatchedPointNav
from metarl_cli.policies.recurrent import (
    RecurrentActor,
    RecurrentPolicy,
    recurrent_policy,
    trials_from_episodes,
)


def make_policy(env, cell: str = "gru", seed: int = 0) -> RecurrentPolicy:
    torch.manual_seed(seed)
    policy = recurrent_policy(env.observation_space, env.action_space, hidden_size=16,
                              cell=cell)
    with torch.no_grad():  # a less uniform policy than the near-zero initial head
        policy.head.weight.normal_(0.0, 1.0)
    return policy


@pytest.mark.parametrize("cell", ["gru", "lstm"])
@pytest.mark.parametrize("family", ["point_nav", "bandit"])
def test_sequence_forward_equals_acting_across_episodes_with_early_ends(double, cell, family
                                                                        ) -> None:
    # point_nav with a loose tolerance: episodes end at different steps (padding in between)
    env = (BatchedPointNav(goal_range=0.15, tolerance=0.12) if family == "point_nav"
           else BatchedBernoulliBandit(num_arms=3))
    policy = make_policy(env, cell)
    sampler = Sampler(env, horizon=8, seed=3)
    tasks = env.sample_tasks(3, np.random.default_rng(0))
    actor = RecurrentActor(policy, len(tasks))
    batches = [sampler.sample(actor, tasks, 4) for _ in range(3)]
    if family == "point_nav":
        assert (batches[0].mask == 0).any()  # the test covers episodes that end early
    trials = trials_from_episodes(batches)
    assert trials.mask.sum() == sum(b.mask.sum() for b in batches)
    assert trials.ended.sum() == 3 * 3 * 4  # every episode ends exactly once
    with torch.no_grad():
        out = policy.evaluate(trials)
        chunked = policy.evaluate(trials, bptt_length=3)
    mask = trials.mask.bool()
    torch.testing.assert_close(out.log_probs[mask], trials.log_probs[mask], rtol=0, atol=1e-6)
    torch.testing.assert_close(chunked.log_probs[mask], trials.log_probs[mask], rtol=0,
                               atol=1e-6)
    assert torch.isfinite(out.values[mask]).all() and (out.entropy[mask] > 0).all()


def test_state_is_carried_across_episodes_and_reset_between_trials(double) -> None:
    env = BatchedBernoulliBandit(num_arms=2)
    policy = make_policy(env)
    tasks = env.sample_tasks(2, np.random.default_rng(1))
    sampler = Sampler(env, horizon=5, seed=0)
    actor = RecurrentActor(policy, 2)
    sampler.sample(actor, tasks, 3)
    state_after_first = actor.state.clone()
    assert actor.state.abs().sum() > 0 and actor.prev_done.eq(1).all()
    # a fresh trial's first action distribution differs from the carried trial's second episode
    obs = torch.ones(2, 3, 1)
    carried = policy(policy.recur(policy.inputs(obs, actor.prev_action, actor.prev_reward,
                                                actor.prev_done).reshape(6, 1, -1),
                                  actor.state.reshape(6, -1))[0])[0]
    fresh_actor = RecurrentActor(policy, 2)
    fresh_actor.act(obs, torch.Generator().manual_seed(0))
    assert fresh_actor.state.shape == actor.state.shape
    zero = policy.recur(policy.inputs(obs, torch.zeros(2, 3, 2), torch.zeros(2, 3),
                                      torch.zeros(2, 3)).reshape(6, 1, -1),
                        torch.zeros(6, 16))[1].reshape(2, 3, -1)
    torch.testing.assert_close(fresh_actor.state, zero)  # the new trial started from zero
    assert not torch.allclose(policy(zero.reshape(6, 1, -1))[0], carried)
    sampler.sample(actor, tasks, 3)
    assert not torch.allclose(actor.state, state_after_first)


def test_finished_rows_keep_their_state_through_padding_steps(double) -> None:
    policy = make_policy(BatchedPointNav())
    actor = RecurrentActor(policy, 1)
    gen = torch.Generator().manual_seed(0)
    obs = torch.zeros(1, 2, 2)
    actor.act(obs, gen)
    actor.observe(torch.tensor([[-1.0, -2.0]]), torch.tensor([[True, False]]))
    frozen = (actor.state[0, 0].clone(), actor.prev_action[0, 0].clone())
    moving = actor.state[0, 1].clone()
    for _ in range(3):  # row 0 finished: the sampler still calls act() for it
        actor.act(obs + 5.0, gen)
        actor.observe(torch.tensor([[0.0, -3.0]]), torch.tensor([[False, False]]))
    assert torch.equal(actor.state[0, 0], frozen[0])
    assert torch.equal(actor.prev_action[0, 0], frozen[1])
    assert actor.prev_reward[0, 0] == -1.0 and actor.prev_done[0, 0] == 1.0
    assert not torch.equal(actor.state[0, 1], moving)
    actor.act(obs, gen)
    actor.observe(torch.tensor([[0.0, -4.0]]), torch.tensor([[False, True]]))
    # every row ended: both start their next episode on the next act()
    assert actor.alive.all() and actor.prev_done.tolist() == [[1.0, 1.0]]
    before = actor.state[0, 0].clone()
    actor.act(obs, gen)
    assert not torch.equal(actor.state[0, 0], before)


def test_heads_follow_the_action_space() -> None:
    box = gym.spaces.Box(-1.0, 1.0, shape=(3,))
    gaussian = recurrent_policy(gym.spaces.Box(-1.0, 1.0, shape=(4,)), box, hidden_size=8)
    assert gaussian.log_std is not None and gaussian.rnn.input_size == 4 + 3 + 2
    categorical = recurrent_policy(gym.spaces.Box(0.0, 1.0, shape=(1,)),
                                   gym.spaces.Discrete(5), hidden_size=8, cell="lstm")
    assert categorical.log_std is None and categorical.state_size == 16
    assert categorical.encode_action(torch.tensor([2])).tolist() == [[0, 0, 1, 0, 0]]
    with pytest.raises(ValueError, match="cell must be one of gru, lstm"):
        recurrent_policy(box, box, hidden_size=8, cell="rnn")
    with pytest.raises(ValueError, match="hidden_size"):
        recurrent_policy(box, box, hidden_size=0)

"""Episodes by a step budget: the choice of episodes against a step-by-step replay of the MAML
code's sampling loop, and the batch it gives on point navigation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from metarl_cli.core.functional import broadcast_policy
from metarl_cli.core.sampler import Sampler
from metarl_cli.core.step_budget import finished_within, sample_with_step_budget
from metarl_cli.envs.point_nav import BatchedPointNav, GoalTask
from metarl_cli.policies.mlp import mlp_policy


def _replay(lengths: np.ndarray, step_budget: int) -> np.ndarray:
    """The rllab loop, one time step at a time: every slot steps, an episode that ends adds
    its length, and the loop stops after a step that brings the total to the budget."""
    kept = np.zeros(lengths.shape, dtype=bool)
    episode = np.zeros(lengths.shape[0], dtype=int)
    age = np.zeros(lengths.shape[0], dtype=int)
    finished = 0
    while finished < step_budget:
        age += 1
        for slot in range(lengths.shape[0]):
            if age[slot] == lengths[slot, episode[slot]]:
                kept[slot, episode[slot]] = True
                finished += age[slot]
                episode[slot] += 1
                age[slot] = 0
    return kept


def test_a_hand_worked_budget() -> None:
    # slot 0 ends episodes at 3, 6, 9, 12; slot 1 at 10, 20: 9 steps are finished after step 9,
    # 19 after step 10, so the budget of 10 keeps the first three of slot 0 and one of slot 1
    lengths = np.array([[3, 3, 3, 3], [10, 10, 10, 10]])
    kept = finished_within(lengths, 10, known_until=12)
    assert kept is not None
    assert kept.tolist() == [[True, True, True, False], [True, False, False, False]]
    assert finished_within(lengths, 10, known_until=9) is None  # step 10 not known yet
    assert finished_within(lengths[:, :1], 100, known_until=3) is None  # not enough episodes


@pytest.mark.parametrize("seed", range(20))
def test_the_choice_equals_a_replay_of_the_sampling_loop(seed: int) -> None:
    rng = np.random.default_rng(seed)
    slots, horizon = int(rng.integers(1, 6)), int(rng.integers(2, 12))
    lengths = rng.integers(1, horizon + 1, size=(slots, 4 * horizon))
    budget = int(rng.integers(1, slots * horizon + 1))
    kept = finished_within(lengths, budget, known_until=int(lengths.sum(axis=1).min()))
    assert kept is not None
    np.testing.assert_array_equal(kept, _replay(lengths, budget))


def _sampler(tolerance: float = 0.01, horizon: int = 8) -> Sampler:
    return Sampler(BatchedPointNav(tolerance=tolerance), horizon=horizon, seed=3)


def _policy(num_tasks: int) -> object:
    env = BatchedPointNav()
    torch.manual_seed(0)
    return broadcast_policy(mlp_policy(env.observation_space, env.action_space, [8],
                                       init_std=0.5), num_tasks)


def test_without_early_ends_a_full_budget_is_one_round_of_whole_episodes() -> None:
    tasks = BatchedPointNav().sample_tasks(3, np.random.default_rng(0))
    plain = _sampler().sample(_policy(3), tasks, 5)
    budget = sample_with_step_budget(_sampler(), _policy(3), tasks, 5, step_budget=5 * 8)
    for a, b in zip((plain.obs, plain.actions, plain.rewards, plain.mask, plain.log_probs),
                    (budget.obs, budget.actions, budget.rewards, budget.mask,
                     budget.log_probs), strict=True):
        torch.testing.assert_close(a, b)
    torch.testing.assert_close(budget.mean_returns(), plain.episode_returns().mean(1))


def test_episodes_that_end_early_are_kept_in_the_budget_order_and_padding_is_left_out() -> None:
    # task 0's goal is reached on the first step (tolerance 0.15), so each of its slots finishes
    # an episode every step; task 1's episodes all run the horizon
    tasks = [GoalTask(goal=(0.0, 0.0)), GoalTask(goal=(0.9, -0.9))]
    batch = sample_with_step_budget(_sampler(tolerance=0.15), _policy(2), tasks, 4,
                                    step_budget=12)
    lengths = batch.mask.sum(-1)
    assert int((lengths[0] > 0).sum()) == 12  # 4 slots x 3 steps: 12 one-step episodes
    assert int((lengths[1] > 0).sum()) == 4 and torch.all(lengths[1][lengths[1] > 0] == 8)
    assert torch.all(lengths[1][4:] == 0)  # padding
    taken = batch.mask[..., 0] > 0
    expected = torch.stack([batch.episode_returns()[i][taken[i]].mean() for i in range(2)])
    torch.testing.assert_close(batch.mean_returns(), expected)
    assert batch.num_steps == 12 + 32


def test_a_policy_with_memory_is_refused() -> None:
    class Remembering:
        def act(self, obs: torch.Tensor, generator: torch.Generator) -> tuple:
            raise AssertionError("never sampled")

        def observe(self, rewards: torch.Tensor, ended: torch.Tensor) -> None: ...

    with pytest.raises(ValueError, match="eval.step_budget"):
        sample_with_step_budget(_sampler(), Remembering(), [GoalTask(goal=(0.1, 0.1))], 2, 10)

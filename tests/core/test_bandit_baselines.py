"""Bandit reference strategies: closed forms, simulated strategies against known behaviour."""

from __future__ import annotations

import numpy as np
import pytest

from metarl_cli.core.bandit_baselines import (
    bandit_baselines,
    oracle_reward,
    random_reward,
    simulate,
)


def test_closed_forms() -> None:
    probs = np.array([[0.1, 0.5, 0.9], [0.2, 0.2, 0.2]])
    np.testing.assert_allclose(oracle_reward(probs, 10), [9.0, 2.0])
    np.testing.assert_allclose(random_reward(probs, 10), [5.0, 2.0])


def test_deterministic_arms_are_found_by_both_strategies() -> None:
    # one arm always pays, the others never: after trying every arm, UCB1 exploits it
    probs = np.array([[0.0, 1.0, 0.0, 0.0]])
    rng = np.random.default_rng(0)
    assert simulate("ucb1", probs, 50, 4, rng)[0] >= 50 - 3 - 4 * np.log(50)
    assert simulate("thompson", probs, 50, 20, rng)[0] > 40


def test_simulated_strategies_sit_between_random_and_oracle() -> None:
    rng = np.random.default_rng(1)
    probs = rng.uniform(size=(200, 5))
    scores = bandit_baselines(probs, 100, rng, repeats=5)
    assert scores["oracle"].mean_regret == 0.0
    for name in ("ucb1", "thompson"):
        assert scores["random"].mean_regret > 1.5 * scores[name].mean_regret > 0
    np.testing.assert_allclose(scores["ucb1"].reward + scores["ucb1"].regret,
                               scores["oracle"].reward)
    # Thompson sampling's regret is lower than UCB1's on uniform priors at this horizon
    assert scores["thompson"].mean_regret < scores["ucb1"].mean_regret


def test_single_arm_rewards_are_unbiased() -> None:
    probs = np.array([[0.3, 0.3]])
    rng = np.random.default_rng(2)
    for name in ("ucb1", "thompson"):
        assert simulate(name, probs, 200, 200, rng)[0] == pytest.approx(60.0, abs=1.5)


def test_bad_strategy_is_refused() -> None:
    with pytest.raises(ValueError, match="strategy must be ucb1 or thompson"):
        simulate("greedy", np.ones((1, 2)) * 0.5, 5, 1, np.random.default_rng(0))

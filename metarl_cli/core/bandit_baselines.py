"""Reference strategies for Bernoulli bandits, to put an RL² trial's total reward in context.

For M bandits with arm probabilities ``probs`` (M, K) and trials of ``horizon`` pulls: uniform
random and the oracle (always the best arm) in closed form; UCB1 (Auer et al., 2002) and
Thompson sampling with a Beta(1, 1) prior by simulation, vectorised over bandits and repeats.
Regret is the oracle's expected total reward minus the strategy's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

STRATEGIES = ("random", "ucb1", "thompson", "oracle")


@dataclass(frozen=True)
class BanditScores:
    """Expected total reward per trial of one strategy, per bandit (M,), and its regret."""

    strategy: str
    reward: np.ndarray
    regret: np.ndarray

    @property
    def mean_reward(self) -> float:
        return float(self.reward.mean())

    @property
    def mean_regret(self) -> float:
        return float(self.regret.mean())


def oracle_reward(probs: np.ndarray, horizon: int) -> np.ndarray:
    """Always pulling the best arm: horizon * max_i p_i."""
    return horizon * np.asarray(probs).max(axis=-1)


def random_reward(probs: np.ndarray, horizon: int) -> np.ndarray:
    """Pulling a uniformly random arm every time: horizon * mean_i p_i."""
    return horizon * np.asarray(probs).mean(axis=-1)


def simulate(strategy: str, probs: np.ndarray, horizon: int, repeats: int,
             rng: np.random.Generator) -> np.ndarray:
    """Mean total reward of ``repeats`` simulated trials per bandit, (M,), for ``ucb1`` or
    ``thompson``."""
    probs = np.asarray(probs, dtype=np.float64)
    m, k = probs.shape
    p = np.repeat(probs, repeats, axis=0)  # (M * repeats, K)
    rows = np.arange(len(p))
    pulls = np.zeros_like(p)
    wins = np.zeros_like(p)
    total = np.zeros(len(p))
    for t in range(horizon):
        if strategy == "ucb1":
            if t < k:  # every arm once first
                arms = np.full(len(p), t)
            else:
                bonus = np.sqrt(2.0 * np.log(t) / pulls)
                arms = np.argmax(wins / pulls + bonus, axis=1)
        elif strategy == "thompson":
            arms = np.argmax(rng.beta(1.0 + wins, 1.0 + pulls - wins), axis=1)
        else:
            raise ValueError(f"strategy must be ucb1 or thompson, got {strategy!r}")
        reward = (rng.random(len(p)) < p[rows, arms]).astype(np.float64)
        pulls[rows, arms] += 1.0
        wins[rows, arms] += reward
        total += reward
    return total.reshape(m, repeats).mean(axis=1)


def bandit_baselines(probs: np.ndarray, horizon: int, rng: np.random.Generator,
                     repeats: int = 100) -> dict[str, BanditScores]:
    """Expected total reward and regret per bandit of every reference strategy."""
    if horizon < 1 or repeats < 1:
        raise ValueError(f"horizon and repeats must be >= 1, got {horizon}, {repeats}")
    oracle = oracle_reward(probs, horizon)
    rewards = {"random": random_reward(probs, horizon),
               "ucb1": simulate("ucb1", probs, horizon, repeats, rng),
               "thompson": simulate("thompson", probs, horizon, repeats, rng),
               "oracle": oracle}
    return {name: BanditScores(name, rewards[name], oracle - rewards[name])
            for name in STRATEGIES}

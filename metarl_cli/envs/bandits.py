"""Bernoulli multi-armed bandits (Duan et al., 2016, "RL²", section 4.1).

A task is K arm probabilities p_i ~ U[0, 1]; pulling arm i pays 1 with probability p_i, else 0.
The RL² paper's trial is n pulls. Here one episode is those n pulls (the sampler's horizon), so a
recurrent policy carries its memory within the episode; the observation is a constant 1.0 and
episodes never terminate early.

Reward randomness is counter-based: ``reset`` draws one integer key per environment from the
generator it is given (the single environment takes its ``seed`` as key), and the uniform for
step t is a hash of (key, t). That keeps the batched form one NumPy expression per step and makes
it equal the single environment step for step for the same seeds, without numpy's global
generator and without one generator object per environment.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from metarl_cli.core.checks import check_integer

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
KEY_BOUND = 2**31 - 1  # keys (and gymnasium seeds) are drawn in [0, KEY_BOUND)


def _mix(z: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser (wrapping uint64 arithmetic)."""
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * _MIX1
        z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


def counter_uniforms(keys: np.ndarray, counter: int) -> np.ndarray:
    """Uniforms in [0, 1), one per key, for draw number ``counter`` of each key's stream.

    SplitMix64: the finaliser of ``mix(key) + (counter + 1) * golden``, top 53 bits as a double;
    a deterministic, vectorised stream per key. The key is mixed first so that neighbouring keys
    start far apart in the sequence (with ``key * golden`` instead, draw c + 1 of key k was draw
    c of key k + 1).
    """
    with np.errstate(over="ignore"):
        z = _mix(np.asarray(keys, dtype=np.uint64)) + np.uint64(counter + 1) * _GOLDEN
    return (_mix(z) >> np.uint64(11)).astype(np.float64) / float(2**53)


def reset_keys(rng: np.random.Generator, size: int) -> np.ndarray:
    """One reward-stream key per environment, drawn from the generator passed to reset."""
    return rng.integers(0, KEY_BOUND, size=size).astype(np.uint64)


@dataclass(frozen=True)
class BanditTask:
    probs: tuple[float, ...]  # success probability of every arm


def _sample_bandits(n: int, num_arms: int, rng: np.random.Generator) -> list[BanditTask]:
    probs = rng.uniform(0.0, 1.0, size=(n, num_arms))
    return [BanditTask(probs=tuple(float(p) for p in row)) for row in probs]


def _pull(probs: np.ndarray, arms: np.ndarray, uniforms: np.ndarray) -> np.ndarray:
    """Rewards of pulling ``arms`` (B,) on bandits ``probs`` (B, K): 1 where u < p_arm."""
    chosen = np.take_along_axis(probs, arms.reshape(-1, 1), axis=1)[:, 0]
    return (uniforms < chosen).astype(np.float64)


def _arms(actions: np.ndarray, num_arms: int) -> np.ndarray:
    arms = np.asarray(actions).astype(np.int64).reshape(-1)
    if arms.min(initial=0) < 0 or arms.max(initial=0) >= num_arms:
        raise ValueError(f"actions must be arm indices in [0, {num_arms}), got {arms}")
    return arms


class BernoulliBanditEnv(gym.Env):
    """Single-environment form, registered as ``metarl/BernoulliBandit-v0``."""

    def __init__(self, num_arms: int = 5) -> None:
        check_integer(2, num_arms=num_arms)
        self.num_arms = num_arms
        self.observation_space = gym.spaces.Box(0.0, 1.0, shape=(1,), dtype=np.float64)
        self.action_space = gym.spaces.Discrete(num_arms)
        self._probs = np.full((1, num_arms), 0.5)
        self._key = np.zeros(1, dtype=np.uint64)
        self._t = 0

    def sample_tasks(self, n: int, rng: np.random.Generator) -> list[BanditTask]:
        return _sample_bandits(n, self.num_arms, rng)

    def set_task(self, task: BanditTask) -> None:
        if len(task.probs) != self.num_arms:
            raise ValueError(f"task has {len(task.probs)} arms, the env {self.num_arms}")
        self._probs = np.asarray(task.probs, dtype=np.float64).reshape(1, -1)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        key = seed if seed is not None else int(self.np_random.integers(0, KEY_BOUND))
        self._key = np.array([key], dtype=np.uint64)
        self._t = 0
        return np.ones(1), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        reward = _pull(self._probs, _arms(action, self.num_arms),
                       counter_uniforms(self._key, self._t))
        self._t += 1
        return np.ones(1), float(reward[0]), False, False, {}


class BatchedBernoulliBandit:
    """B bandits pulled as one NumPy expression per step."""

    def __init__(self, num_arms: int = 5) -> None:
        self._single = BernoulliBanditEnv(num_arms)
        self.num_arms = num_arms
        self.observation_space = self._single.observation_space
        self.action_space = self._single.action_space
        self._probs = np.zeros((0, num_arms))
        self._keys = np.zeros(0, dtype=np.uint64)
        self._t = 0

    def sample_tasks(self, n: int, rng: np.random.Generator) -> list[BanditTask]:
        return self._single.sample_tasks(n, rng)

    def set_tasks(self, tasks: Sequence[BanditTask]) -> None:
        probs = np.array([t.probs for t in tasks], dtype=np.float64).reshape(len(tasks), -1)
        if probs.shape[1] != self.num_arms:
            raise ValueError(f"tasks have {probs.shape[1]} arms, the env {self.num_arms}")
        self._probs = probs

    def reset(self, rng: np.random.Generator) -> np.ndarray:
        self._keys = reset_keys(rng, len(self._probs))
        self._t = 0
        return np.ones((len(self._probs), 1))

    def step(self, actions: np.ndarray, active: np.ndarray | None = None
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        del active  # stepping every row costs less than selecting some
        rewards = _pull(self._probs, _arms(actions, self.num_arms),
                        counter_uniforms(self._keys, self._t))
        self._t += 1
        b = len(self._probs)
        return np.ones((b, 1)), rewards, np.zeros(b, dtype=bool)

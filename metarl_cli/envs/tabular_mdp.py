"""Random tabular MDPs (Duan et al., 2016, "RL²", section 4.2).

A task is an MDP with ``num_states`` states and ``num_actions`` actions: every transition row
P(. | s, a) ~ Dirichlet(1, ..., 1) and every mean reward mu(s, a) ~ N(1, 1). A step in state s
with action a pays mu(s, a) + eps, eps ~ N(0, 1), and moves to s' ~ P(. | s, a). Episodes start
in state 0 (our choice: the paper fixes the start but not which state), never terminate early
and last 10 steps (the sampler's horizon). The observation is the one-hot state.

Randomness is counter-based as in :mod:`metarl_cli.envs.bandits`: one key per environment drawn
from the generator passed to ``reset``, three uniforms per step (the transition and, by
Box-Muller, the reward noise), so the batched form is vectorised and equals the single one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from metarl_cli.core.checks import check_integer
from metarl_cli.envs.bandits import KEY_BOUND, counter_uniforms, reset_keys


@dataclass(frozen=True)
class MDPTask:
    transitions: tuple[tuple[tuple[float, ...], ...], ...]  # [s][a][s'] = P(s' | s, a)
    reward_means: tuple[tuple[float, ...], ...]  # [s][a] = mu(s, a)


def _sample_mdps(n: int, num_states: int, num_actions: int, rng: np.random.Generator
                 ) -> list[MDPTask]:
    transitions = rng.dirichlet(np.ones(num_states), size=(n, num_states, num_actions))
    means = rng.normal(1.0, 1.0, size=(n, num_states, num_actions))
    return [MDPTask(transitions=tuple(tuple(tuple(float(p) for p in row) for row in s)
                                      for s in tr),
                    reward_means=tuple(tuple(float(m) for m in s) for s in mu))
            for tr, mu in zip(transitions, means, strict=True)]


def _mdp_step(cum_transitions: np.ndarray, means: np.ndarray, states: np.ndarray,
              actions: np.ndarray, keys: np.ndarray, t: int) -> tuple[np.ndarray, np.ndarray]:
    """One step of B MDPs: next states and rewards. ``cum_transitions`` (B, S, A, S) holds the
    cumulative transition rows, ``means`` (B, S, A) the reward means."""
    rows = np.arange(len(states))
    u_next, u1, u2 = (counter_uniforms(keys, 3 * t + i) for i in range(3))
    noise = np.sqrt(-2.0 * np.log1p(-u1)) * np.cos(2.0 * np.pi * u2)  # Box-Muller, 1 - u1 > 0
    rewards = means[rows, states, actions] + noise
    cum = cum_transitions[rows, states, actions]  # (B, S)
    num_states = cum.shape[-1]
    next_states = np.minimum((cum <= u_next[:, None]).sum(-1), num_states - 1)
    return next_states, rewards


def _actions(actions: Any, num_actions: int) -> np.ndarray:
    a = np.asarray(actions).astype(np.int64).reshape(-1)
    if a.min(initial=0) < 0 or a.max(initial=0) >= num_actions:
        raise ValueError(f"actions must be in [0, {num_actions}), got {a}")
    return a


class TabularMDPEnv(gym.Env):
    """Single-environment form, registered as ``metarl/TabularMDP-v0``."""

    def __init__(self, num_states: int = 10, num_actions: int = 5) -> None:
        check_integer(1, num_states=num_states, num_actions=num_actions)
        self.num_states, self.num_actions = num_states, num_actions
        self.observation_space = gym.spaces.Box(0.0, 1.0, shape=(num_states,), dtype=np.float64)
        self.action_space = gym.spaces.Discrete(num_actions)
        uniform = np.full((1, num_states, num_actions, num_states), 1.0 / num_states)
        self._cum = np.cumsum(uniform, -1)
        self._means = np.ones((1, num_states, num_actions))
        self._state = np.zeros(1, dtype=np.int64)
        self._key = np.zeros(1, dtype=np.uint64)
        self._t = 0

    def sample_tasks(self, n: int, rng: np.random.Generator) -> list[MDPTask]:
        return _sample_mdps(n, self.num_states, self.num_actions, rng)

    def set_task(self, task: MDPTask) -> None:
        transitions = np.asarray(task.transitions, dtype=np.float64)
        if transitions.shape != (self.num_states, self.num_actions, self.num_states):
            raise ValueError(f"task transitions have shape {transitions.shape}, the env "
                             f"{(self.num_states, self.num_actions, self.num_states)}")
        self._cum = np.cumsum(transitions, -1)[None]
        self._means = np.asarray(task.reward_means, dtype=np.float64)[None]

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        key = seed if seed is not None else int(self.np_random.integers(0, KEY_BOUND))
        self._key = np.array([key], dtype=np.uint64)
        self._state = np.zeros(1, dtype=np.int64)
        self._t = 0
        return self._obs(), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        self._state, reward = _mdp_step(self._cum, self._means, self._state,
                                        _actions(action, self.num_actions), self._key, self._t)
        self._t += 1
        return self._obs(), float(reward[0]), False, False, {}

    def _obs(self) -> np.ndarray:
        return np.eye(self.num_states)[self._state[0]]


class BatchedTabularMDP:
    """B tabular MDPs stepped as NumPy arrays."""

    def __init__(self, num_states: int = 10, num_actions: int = 5) -> None:
        self._single = TabularMDPEnv(num_states, num_actions)
        self.num_states, self.num_actions = num_states, num_actions
        self.observation_space = self._single.observation_space
        self.action_space = self._single.action_space
        self._cum = np.zeros((0, num_states, num_actions, num_states))
        self._means = np.zeros((0, num_states, num_actions))
        self._states = np.zeros(0, dtype=np.int64)
        self._keys = np.zeros(0, dtype=np.uint64)
        self._t = 0

    def sample_tasks(self, n: int, rng: np.random.Generator) -> list[MDPTask]:
        return self._single.sample_tasks(n, rng)

    def set_tasks(self, tasks: Sequence[MDPTask]) -> None:
        transitions = np.array([t.transitions for t in tasks], dtype=np.float64)
        shape = (self.num_states, self.num_actions, self.num_states)
        if transitions.shape[1:] != shape:
            raise ValueError(f"task transitions have shape {transitions.shape[1:]}, the env "
                             f"{shape}")
        self._cum = np.cumsum(transitions, -1)
        self._means = np.array([t.reward_means for t in tasks], dtype=np.float64)

    def reset(self, rng: np.random.Generator) -> np.ndarray:
        self._keys = reset_keys(rng, len(self._cum))
        self._states = np.zeros(len(self._cum), dtype=np.int64)
        self._t = 0
        return np.eye(self.num_states)[self._states]

    def step(self, actions: np.ndarray, active: np.ndarray | None = None
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        del active  # stepping every row costs less than selecting some
        self._states, rewards = _mdp_step(self._cum, self._means, self._states,
                                          _actions(actions, self.num_actions), self._keys,
                                          self._t)
        self._t += 1
        return (np.eye(self.num_states)[self._states], rewards,
                np.zeros(len(self._states), dtype=bool))

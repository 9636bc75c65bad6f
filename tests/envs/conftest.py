"""Helpers for the batched families' tests: run a batch on random actions, then replay the
same actions through single environments and compare every step."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

Outputs = list[tuple[np.ndarray, ...]]


def run_batched(batched: Any, tasks: list[Any], seed: int, steps: int
                ) -> tuple[np.ndarray, Outputs]:
    """Reset with ``seed``, then ``steps`` steps of actions uniform in 1.5 x the action bounds
    (so that some are clipped): (first observation, [(actions, obs, rewards, terminated)])."""
    batched.set_tasks(tasks)
    obs = batched.reset(np.random.default_rng(seed))
    rng = np.random.default_rng(seed + 1)
    low, high = batched.action_space.low, batched.action_space.high
    outputs = []
    for _ in range(steps):
        actions = rng.uniform(1.5 * low, 1.5 * high, size=(len(tasks), *low.shape))
        outputs.append((actions, *batched.step(actions)))
    return obs, outputs


def start_singles(make: Callable[[], Any], tasks: list[Any], qpos: np.ndarray,
                  qvel: np.ndarray, first_obs: np.ndarray) -> list[Any]:
    """One single environment per task, put in the batch's reset state (qpos, qvel); their
    observations must equal the batch's first one (to 1e-10)."""
    singles = [make() for _ in tasks]
    for i, (env, task) in enumerate(zip(singles, tasks, strict=True)):
        env.reset(seed=i)
        env.set_task(task)
        env.set_state(qpos[i], qvel[i])
    np.testing.assert_allclose(first_obs, np.stack([env._get_obs() for env in singles]),
                               rtol=0, atol=1e-10)
    return singles


def replay_on_singles(outputs: Outputs, singles: Sequence[Any]) -> np.ndarray:
    """Step each single environment with its row of every step's actions and require the
    batch's observations and rewards (to 1e-10) and terminations; which environments ended."""
    ended = np.zeros(len(singles), dtype=bool)
    for actions, obs, rewards, terminated in outputs:
        results = [env.step(a) for env, a in zip(singles, actions, strict=True)]
        np.testing.assert_allclose(obs, np.stack([r[0] for r in results]), rtol=0, atol=1e-10)
        np.testing.assert_allclose(rewards, [r[1] for r in results], rtol=0, atol=1e-10)
        np.testing.assert_array_equal(terminated, [r[2] for r in results])
        ended |= terminated
    return ended


@pytest.fixture
def batched_vs_single() -> SimpleNamespace:
    """``.run`` (run_batched), ``.start`` (start_singles) and ``.replay`` (replay_on_singles)."""
    return SimpleNamespace(run=run_batched, start=start_singles, replay=replay_on_singles)

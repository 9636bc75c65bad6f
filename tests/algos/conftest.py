"""Fixtures shared by the algorithm tests: a few point-navigation tasks."""

from __future__ import annotations

import numpy as np
import pytest

from metarl_cli.envs.point_nav import BatchedPointNav, GoalTask


@pytest.fixture
def num_tasks() -> int:
    """How many tasks :func:`tasks` holds; a test module may override it."""
    return 2


@pytest.fixture
def tasks(num_tasks: int) -> list[GoalTask]:
    """Point-navigation goals from a fixed generator, the same in every test."""
    return BatchedPointNav().sample_tasks(num_tasks, np.random.default_rng(7))

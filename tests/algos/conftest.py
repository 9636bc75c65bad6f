"""Fixtures shared by the algorithm tests: a few point-navigation tasks, float64 on demand."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch

from metarl_cli.envs.point_nav import BatchedPointNav, GoalTask


@pytest.fixture
def double() -> Iterator[None]:
    """Everything (sampler tensors, policy) in float64 for tight comparisons."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


@pytest.fixture
def num_tasks() -> int:
    """How many tasks :func:`tasks` holds; a test module may override it."""
    return 2


@pytest.fixture
def tasks(num_tasks: int) -> list[GoalTask]:
    """Point-navigation goals from a fixed generator, the same in every test."""
    return BatchedPointNav().sample_tasks(num_tasks, np.random.default_rng(7))

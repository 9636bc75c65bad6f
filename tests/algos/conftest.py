"""Fixtures shared by the algorithm tests: point-navigation tasks, the step a learner takes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from torch.nn.utils import parameters_to_vector

from metarl_cli.envs.point_nav import BatchedPointNav, GoalTask


@pytest.fixture
def num_tasks() -> int:
    """How many tasks :func:`tasks` holds; a test module may override it."""
    return 2


@pytest.fixture
def tasks(num_tasks: int) -> list[GoalTask]:
    """Point-navigation goals from a fixed generator, the same in every test."""
    return BatchedPointNav().sample_tasks(num_tasks, np.random.default_rng(7))


@pytest.fixture
def step_taken(tasks: list[GoalTask]) -> Callable[[Any], torch.Tensor]:
    """learner -> how much one accepted ``train_step`` on :func:`tasks` moved its policy's
    parameters (flat)."""

    def taken(learner: Any) -> torch.Tensor:
        before = parameters_to_vector(learner.policy.parameters()).detach().clone()
        assert learner.train_step(tasks)["optim/accepted"] == 1.0
        return parameters_to_vector(learner.policy.parameters()).detach() - before

    return taken

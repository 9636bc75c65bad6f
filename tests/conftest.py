"""Shared fixtures: composing the shipped configs with Hydra's compose API; float64."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from metarl_cli.core.paths import CONFIG_DIR


@pytest.fixture
def compose_config() -> Callable[..., DictConfig]:
    """compose_config("env=halfcheetah_dir", ...) -> the train config with those overrides."""

    def _compose(*overrides: str) -> DictConfig:
        with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
            return compose("train", overrides=list(overrides))

    return _compose


@pytest.fixture
def double() -> Iterator[None]:
    """Everything (sampler tensors, policies) in float64 for tight comparisons."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)

"""MLP policies: shapes, choice by action space, repeatable sampling, functional calls, checks."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch.func import functional_call

from metarl_cli.policies.mlp import CategoricalMLPPolicy, GaussianMLPPolicy, mlp_policy

BOX_OBS = gym.spaces.Box(-np.inf, np.inf, shape=(3,), dtype=np.float64)
BOX_ACT = gym.spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float64)


def test_gaussian_policy_shapes_and_initial_std() -> None:
    policy = GaussianMLPPolicy(3, 2, [8, 8], "Tanh", init_std=0.5)
    obs = torch.randn(4, 5, 3)
    mean, log_std = policy(obs)
    assert mean.shape == log_std.shape == (4, 5, 2)
    torch.testing.assert_close(log_std, torch.full((4, 5, 2), math.log(0.5)))
    dist = policy.distribution((mean, log_std))
    assert dist.batch_shape == (4, 5) and dist.event_shape == (2,)
    action = policy.sample((mean, log_std), torch.Generator().manual_seed(0))
    assert action.shape == (4, 5, 2)
    assert dist.log_prob(action).shape == (4, 5)


def test_categorical_policy_shapes_and_valid_actions() -> None:
    policy = CategoricalMLPPolicy(3, 4, [8], "ReLU")
    obs = torch.randn(6, 7, 3)
    (logits,) = policy(obs)
    assert logits.shape == (6, 7, 4)
    action = policy.sample((logits,), torch.Generator().manual_seed(0))
    assert action.shape == (6, 7)
    assert action.dtype == torch.int64
    assert 0 <= action.min() and action.max() < 4
    assert policy.distribution((logits,)).log_prob(action).shape == (6, 7)


def test_categorical_sample_follows_the_probabilities() -> None:
    logits = torch.log(torch.tensor([0.7, 0.2, 0.1])).expand(20000, 3)
    action = CategoricalMLPPolicy.sample((logits,), torch.Generator().manual_seed(1))
    freq = torch.bincount(action, minlength=3).double() / 20000
    torch.testing.assert_close(freq, torch.tensor([0.7, 0.2, 0.1], dtype=torch.float64),
                               atol=0.02, rtol=0)


def test_mlp_policy_picks_the_policy_by_action_space() -> None:
    gaussian = mlp_policy(BOX_OBS, BOX_ACT, [8], init_std=2.0)
    assert isinstance(gaussian, GaussianMLPPolicy)
    torch.testing.assert_close(gaussian.log_std.detach(), torch.full((2,), math.log(2.0)))
    categorical = mlp_policy(BOX_OBS, gym.spaces.Discrete(5), [8])
    assert isinstance(categorical, CategoricalMLPPolicy)
    assert categorical(torch.zeros(3))[0].shape == (5,)


def test_mlp_policy_refuses_unsupported_spaces_naming_model() -> None:
    with pytest.raises(ValueError, match="model"):
        mlp_policy(gym.spaces.Discrete(3), BOX_ACT, [8])
    with pytest.raises(ValueError, match="model"):
        mlp_policy(BOX_OBS, gym.spaces.MultiBinary(3), [8])


@pytest.mark.parametrize("space", [BOX_ACT, gym.spaces.Discrete(4)], ids=["box", "discrete"])
def test_sample_with_the_same_generator_seed_is_repeatable(space) -> None:
    torch.manual_seed(0)
    policy = mlp_policy(BOX_OBS, space, [8])
    out = policy(torch.randn(10, 3))
    a = policy.sample(out, torch.Generator().manual_seed(7))
    b = policy.sample(out, torch.Generator().manual_seed(7))
    c = policy.sample(out, torch.Generator().manual_seed(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@pytest.mark.parametrize("space", [BOX_ACT, gym.spaces.Discrete(4)], ids=["box", "discrete"])
def test_functional_call_with_own_params_equals_forward(space) -> None:
    policy = mlp_policy(BOX_OBS, space, [8, 4], activation="Tanh")
    obs = torch.randn(5, 3)
    params = dict(policy.named_parameters())
    for x, y in zip(functional_call(policy, params, (obs,)), policy(obs), strict=True):
        torch.testing.assert_close(x, y)
    # and with other params it really uses them
    other = {n: p.detach() + 1.0 for n, p in params.items()}
    assert not torch.allclose(functional_call(policy, other, (obs,))[0], policy(obs)[0])


@pytest.mark.parametrize(("kwargs", "name"), [
    ({"activation": "NoSuchActivation"}, "activation"),
    ({"activation": "Linear"}, "activation"),
    ({"hidden_sizes": [8, 0]}, "hidden_sizes"),
    ({"init_std": 0.0}, "init_std"),
    ({"init_std": -1.0}, "init_std"),
    ({"init": "glorot"}, "init"),
])
def test_bad_policy_arguments_raise_value_error_naming_the_parameter(kwargs, name) -> None:
    args = {"hidden_sizes": [8], "activation": "ReLU", "init_std": 1.0} | kwargs
    with pytest.raises(ValueError, match=name):
        mlp_policy(BOX_OBS, BOX_ACT, **args)


def test_xavier_init_draws_glorot_uniform_weights_and_zero_biases() -> None:
    torch.manual_seed(0)
    policy = mlp_policy(BOX_OBS, BOX_ACT, [400, 300], init="xavier")
    layers = [m for m in policy.modules() if isinstance(m, torch.nn.Linear)]
    assert [tuple(m.weight.shape) for m in layers] == [(400, 3), (300, 400), (2, 300)]
    for layer in layers:
        fan_out, fan_in = layer.weight.shape
        bound = math.sqrt(6.0 / (fan_in + fan_out))
        assert layer.weight.abs().max() <= bound
        # uniform on [-bound, bound]: standard deviation bound / sqrt(3)
        assert layer.weight.std().item() == pytest.approx(bound / math.sqrt(3.0), rel=0.1)
        assert torch.count_nonzero(layer.bias) == 0
    torch.manual_seed(0)
    default = mlp_policy(BOX_OBS, BOX_ACT, [400, 300])
    first = next(m for m in default.modules() if isinstance(m, torch.nn.Linear))
    assert torch.count_nonzero(first.bias) > 0  # torch's default draws the biases too

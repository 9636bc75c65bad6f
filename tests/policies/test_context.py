"""PEARL's networks: the product of Gaussians against its closed form, masking, permutation
invariance, the tanh-Gaussian log-density, and the Discrete-action refusal."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from metarl_cli.policies.context import (
    TanhGaussianActor,
    gaussian_kl_to_standard_normal,
    pearl_networks,
    product_of_gaussians,
)


def test_product_of_two_gaussians_matches_the_closed_form() -> None:
    mu = torch.tensor([[1.0, -2.0], [3.0, 0.5]])  # two factors, latent 2
    var = torch.tensor([[1.0, 4.0], [3.0, 0.25]])
    mean, post_var = product_of_gaussians(mu, var)
    # 1D: var = v1 v2 / (v1 + v2), mean = (m1 v2 + m2 v1) / (v1 + v2)
    expected_var = var[0] * var[1] / (var[0] + var[1])
    expected_mean = (mu[0] * var[1] + mu[1] * var[0]) / (var[0] + var[1])
    torch.testing.assert_close(post_var, expected_var)
    torch.testing.assert_close(mean, expected_mean)
    torch.testing.assert_close(mean, torch.tensor([1.5, 1.5 / 4.25]))


def test_masked_factors_do_not_count_and_empty_context_is_the_prior() -> None:
    mu, var = torch.randn(3, 4), torch.rand(3, 4) + 0.1
    masked = product_of_gaussians(mu, var, torch.tensor([1.0, 0.0, 1.0]))
    kept = product_of_gaussians(mu[[0, 2]], var[[0, 2]])
    for a, b in zip(masked, kept, strict=True):
        torch.testing.assert_close(a, b)
    mean, post_var = product_of_gaussians(mu, var, torch.zeros(3))
    assert torch.equal(mean, torch.zeros(4)) and torch.equal(post_var, torch.ones(4))


def test_encoder_posterior_is_permutation_invariant() -> None:
    torch.manual_seed(0)
    nets = pearl_networks(gym.spaces.Box(-1, 1, (2,)), gym.spaces.Box(-1, 1, (2,)), [8], [8],
                          latent_dim=3, use_next_obs_in_context=True)
    assert nets.context_dim == 2 + 2 + 1 + 2
    context = torch.randn(2, 10, nets.context_dim)
    perm = torch.randperm(10)
    mean, var = nets.encoder.posterior(context)
    mean_p, var_p = nets.encoder.posterior(context[:, perm])
    torch.testing.assert_close(mean, mean_p)
    torch.testing.assert_close(var, var_p)
    assert mean.shape == (2, 3) and bool((var > 0).all())


def test_kl_to_standard_normal_by_hand() -> None:
    kl = gaussian_kl_to_standard_normal(torch.tensor([1.0, 0.0]), torch.tensor([1.0, 2.0]))
    assert kl.item() == pytest.approx(0.5 * 1.0 + 0.5 * (2.0 - 1.0 - np.log(2.0)))


def test_tanh_gaussian_log_prob_matches_change_of_variables() -> None:
    mean, log_std = torch.tensor([[0.3, -1.0]]), torch.tensor([[-0.5, 0.2]])
    noise = torch.tensor([[0.7, -1.3]])
    action, log_prob = TanhGaussianActor.squash(mean, log_std, noise)
    u = mean + log_std.exp() * noise
    base = torch.distributions.Normal(mean, log_std.exp()).log_prob(u).sum(-1)
    expected = base - torch.log(1 - torch.tanh(u) ** 2).sum(-1)
    torch.testing.assert_close(action, torch.tanh(u))
    torch.testing.assert_close(log_prob, expected)


def test_actions_map_onto_the_box_bounds() -> None:
    nets = pearl_networks(gym.spaces.Box(-1, 1, (2,)), gym.spaces.Box(-2, 4, (2,)), [8], [8])
    a = torch.tensor([[-1.0, 1.0], [0.0, 0.5]])
    env = nets.to_env_action(a)
    torch.testing.assert_close(env, torch.tensor([[-2.0, 4.0], [1.0, 2.5]]))
    torch.testing.assert_close(nets.normalize_action(env), a)


def test_discrete_actions_are_refused_with_the_fix() -> None:
    with pytest.raises(ValueError, match="algo=pearl needs continuous \\(Box\\) actions.*"
                                         "Discrete.*use algo=rl2 or algo=maml"):
        pearl_networks(gym.spaces.Box(-1, 1, (2,)), gym.spaces.Discrete(3), [8], [8])

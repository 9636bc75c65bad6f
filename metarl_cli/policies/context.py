"""PEARL's networks (Rakelly et al., 2019): a probabilistic context encoder, a tanh-Gaussian SAC
actor and twin Q critics (with target copies), all conditioned on the task latent z.

The encoder maps every context transition (o, a, r[, o']) on its own to a diagonal Gaussian
factor N(mu_j, var_j) over z; the posterior is their product, which does not depend on the
order of the transitions (permutation invariant) and is exact for Gaussians: precision =
sum_j 1/var_j, mean = var * sum_j mu_j/var_j. As in PEARL's code the prior N(0, I) is not a
factor of the product; with no context at all the posterior is the prior. Per-transition
weights (the sampler's mask) switch padded steps off inside the same sums, so any number of
real transitions per row is handled without Python loops.
"""

from __future__ import annotations

import math

import gymnasium as gym
import torch
import torch.nn.functional as F
from torch import nn

from metarl_cli.core.checks import check_integer
from metarl_cli.policies.mlp import mlp

LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0
MIN_VARIANCE = 1e-7


def product_of_gaussians(mu: torch.Tensor, var: torch.Tensor,
                         weights: torch.Tensor | None = None
                         ) -> tuple[torch.Tensor, torch.Tensor]:
    """Combine factors (..., M, L) into one Gaussian (..., L); ``weights`` (..., M) in [0, 1]
    scale each factor's precision (0: the transition does not count). Rows whose weights are
    all zero get the prior N(0, I)."""
    precision = 1.0 / var
    if weights is not None:
        precision = precision * weights.unsqueeze(-1)
    return posterior_from_sums(precision.sum(-2), (precision * mu).sum(-2))


def posterior_from_sums(precision: torch.Tensor, weighted_mean: torch.Tensor
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """The product's (mean, var) from its sufficient statistics sum 1/var_j and sum mu_j/var_j;
    zero precision (no context) gives the prior N(0, I)."""
    empty = precision <= 0
    safe = torch.where(empty, torch.ones_like(precision), precision)
    var = torch.where(empty, torch.ones_like(precision), 1.0 / safe)
    mean = torch.where(empty, torch.zeros_like(weighted_mean), weighted_mean * var)
    return mean, var


def gaussian_kl_to_standard_normal(mean: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, var) || N(0, I)) summed over the last axis."""
    return 0.5 * (var + mean**2 - 1.0 - torch.log(var)).sum(-1)


class ContextEncoder(nn.Module):
    """MLP from one context transition to the mean and variance of its Gaussian factor."""

    def __init__(self, context_dim: int, latent_dim: int, hidden_sizes: list[int]) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.net = mlp(context_dim, 2 * latent_dim, hidden_sizes, "ReLU")

    def forward(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.net(context)
        mu, raw = out[..., : self.latent_dim], out[..., self.latent_dim:]
        return mu, F.softplus(raw).clamp_min(MIN_VARIANCE)

    def posterior(self, context: torch.Tensor, weights: torch.Tensor | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, var) of the posterior given context (..., M, context_dim)."""
        mu, var = self(context)
        return product_of_gaussians(mu, var, weights)


class TanhGaussianActor(nn.Module):
    """SAC's actor: u ~ N(mean(o, z), std(o, z)), action tanh(u) in [-1, 1]."""

    def __init__(self, obs_dim: int, latent_dim: int, act_dim: int, hidden_sizes: list[int]
                 ) -> None:
        super().__init__()
        self.net = mlp(obs_dim + latent_dim, 2 * act_dim, hidden_sizes, "ReLU")
        self.act_dim = act_dim

    def forward(self, obs: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.net(torch.cat([obs, z], -1))
        mean, log_std = out[..., : self.act_dim], out[..., self.act_dim:]
        return mean, log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)

    @staticmethod
    def squash(mean: torch.Tensor, log_std: torch.Tensor, noise: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """tanh(mean + std * noise) and its log-density (the tanh change of variables
        written as 2 (log 2 - u - softplus(-2u)), which stays finite at |u| large)."""
        u = mean + log_std.exp() * noise
        log_prob = (-0.5 * noise**2 - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
        log_prob = log_prob - (2 * (math.log(2.0) - u - F.softplus(-2 * u))).sum(-1)
        return torch.tanh(u), log_prob


class QCritic(nn.Module):
    """Q(o, a, z), an MLP on the concatenation."""

    def __init__(self, obs_dim: int, act_dim: int, latent_dim: int, hidden_sizes: list[int]
                 ) -> None:
        super().__init__()
        self.net = mlp(obs_dim + act_dim + latent_dim, 1, hidden_sizes, "ReLU")

    def forward(self, obs: torch.Tensor, action: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([obs, action, z], -1)).squeeze(-1)


class PEARLNetworks(nn.Module):
    """Encoder, actor, twin critics and their target copies, as one module (one state_dict).

    Actions are the actor's tanh output mapped affinely onto the Box bounds (``action_low``,
    ``action_high`` buffers); the critics see actions in [-1, 1], the environment the mapped ones.
    """

    def __init__(self, obs_dim: int, act_dim: int, action_low: torch.Tensor,
                 action_high: torch.Tensor, hidden_sizes: list[int],
                 encoder_hidden_sizes: list[int], latent_dim: int,
                 use_next_obs_in_context: bool) -> None:
        super().__init__()
        self.obs_dim, self.act_dim, self.latent_dim = obs_dim, act_dim, latent_dim
        self.use_next_obs_in_context = use_next_obs_in_context
        self.context_dim = obs_dim + act_dim + 1 + (obs_dim if use_next_obs_in_context else 0)
        self.encoder = ContextEncoder(self.context_dim, latent_dim, encoder_hidden_sizes)
        self.actor = TanhGaussianActor(obs_dim, latent_dim, act_dim, hidden_sizes)
        self.qf1 = QCritic(obs_dim, act_dim, latent_dim, hidden_sizes)
        self.qf2 = QCritic(obs_dim, act_dim, latent_dim, hidden_sizes)
        self.target_qf1 = QCritic(obs_dim, act_dim, latent_dim, hidden_sizes)
        self.target_qf2 = QCritic(obs_dim, act_dim, latent_dim, hidden_sizes)
        self.target_qf1.load_state_dict(self.qf1.state_dict())
        self.target_qf2.load_state_dict(self.qf2.state_dict())
        for p in [*self.target_qf1.parameters(), *self.target_qf2.parameters()]:
            p.requires_grad_(False)
        self.register_buffer("action_low", action_low.clone())
        self.register_buffer("action_high", action_high.clone())

    def context(self, obs: torch.Tensor, actions: torch.Tensor, rewards: torch.Tensor,
                next_obs: torch.Tensor) -> torch.Tensor:
        """Context transitions (..., context_dim) from env-scale actions."""
        parts = [obs, self.normalize_action(actions), rewards.unsqueeze(-1)]
        if self.use_next_obs_in_context:
            parts.append(next_obs)
        return torch.cat(parts, -1)

    def to_env_action(self, action: torch.Tensor) -> torch.Tensor:
        """[-1, 1] -> the Box bounds."""
        return self.action_low + (action + 1.0) * 0.5 * (self.action_high - self.action_low)

    def normalize_action(self, action: torch.Tensor) -> torch.Tensor:
        """The Box bounds -> [-1, 1] (inverse of :meth:`to_env_action`)."""
        return 2.0 * (action - self.action_low) / (self.action_high - self.action_low) - 1.0


def pearl_networks(observation_space: gym.Space, action_space: gym.Space,
                   hidden_sizes: list[int], encoder_hidden_sizes: list[int], latent_dim: int = 5,
                   use_next_obs_in_context: bool = False) -> PEARLNetworks:
    """PEARL's networks for a family's spaces; the paper: 300x3 actor/critics, 200x3 encoder,
    latent_dim 5."""
    if isinstance(action_space, gym.spaces.Discrete):
        raise ValueError(f"algo=pearl needs continuous (Box) actions; env has Discrete "
                         f"actions ({action_space}); use algo=rl2 or algo=maml")
    if not isinstance(action_space, gym.spaces.Box) or len(action_space.shape) != 1:
        raise ValueError(f"algo=pearl needs a 1-D Box action space, got {action_space}")
    if not isinstance(observation_space, gym.spaces.Box) or len(observation_space.shape) != 1:
        raise ValueError(f"model: PEARL needs a 1-D Box observation space, got "
                         f"{observation_space}")
    check_integer(1, latent_dim=latent_dim)
    low = torch.as_tensor(action_space.low, dtype=torch.get_default_dtype())
    high = torch.as_tensor(action_space.high, dtype=torch.get_default_dtype())
    if not (torch.isfinite(low).all() and torch.isfinite(high).all()):
        raise ValueError(f"algo=pearl needs finite action bounds (its actor is squashed by "
                         f"tanh), got {action_space}")
    return PEARLNetworks(int(observation_space.shape[0]), int(action_space.shape[0]), low, high,
                         list(hidden_sizes), list(encoder_hidden_sizes), latent_dim,
                         use_next_obs_in_context)

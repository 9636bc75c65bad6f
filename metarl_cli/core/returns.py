"""Discounted returns, generalised advantage estimation and advantage normalisation.

All functions take tensors whose last axis is time and a mask that is 1 on the steps an
episode took; an episode's value after its last step is taken to be 0.
"""

from __future__ import annotations

import torch

from metarl_cli.core.baselines import fit_linear_baseline
from metarl_cli.core.types import EpisodeBatch


def discounted_returns(rewards: torch.Tensor, mask: torch.Tensor, gamma: float) -> torch.Tensor:
    """Return-to-go G_t = sum_k gamma^k r_{t+k} within each episode."""
    return gae(rewards, torch.zeros_like(rewards), mask, gamma, 1.0)


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float,
        lam: float) -> torch.Tensor:
    """Generalised advantage estimates (Schulman et al., 2016).

    delta_t = r_t + gamma V_{t+1} - V_t and A_t = delta_t + gamma lam A_{t+1}, with the terms
    beyond an episode's last step masked to 0.
    """
    advantages = torch.zeros_like(rewards)
    next_value = torch.zeros_like(rewards[..., 0])
    next_advantage = torch.zeros_like(rewards[..., 0])
    for t in range(rewards.shape[-1] - 1, -1, -1):
        m = mask[..., t]
        delta = rewards[..., t] + gamma * next_value - values[..., t]
        next_advantage = (delta + gamma * lam * next_advantage) * m
        next_value = values[..., t] * m
        advantages[..., t] = next_advantage
    return advantages


def normalize(advantages: torch.Tensor, mask: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Centre and scale by the standard deviation over the valid steps of each leading index.

    Normalisation is over the last two axes (rollouts, time), i.e. per task for (N, R, T) input.
    """
    count = mask.sum((-2, -1), keepdim=True).clamp_min(1.0)
    mean = (advantages * mask).sum((-2, -1), keepdim=True) / count
    var = (((advantages - mean) * mask) ** 2).sum((-2, -1), keepdim=True) / count
    return (advantages - mean) / (var.sqrt() + eps) * mask


def policy_gradient_advantages(batch: EpisodeBatch, gamma: float, gae_lambda: float
                               ) -> torch.Tensor:
    """Per-task normalised GAE advantages with a linear baseline fitted on the same episodes."""
    returns = discounted_returns(batch.rewards, batch.mask, gamma)
    values = fit_linear_baseline(batch.obs, returns, batch.mask)
    return normalize(gae(batch.rewards, values, batch.mask, gamma, gae_lambda), batch.mask)

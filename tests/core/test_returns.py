"""Discounting, GAE and advantage normalisation against values computed by hand."""

from __future__ import annotations

import pytest
import torch

from metarl_cli.core.returns import discounted_returns, gae, normalize, policy_gradient_advantages
from metarl_cli.core.types import EpisodeBatch

G = 0.9  # gamma
L = 0.5  # GAE lambda


@pytest.fixture
def two_episodes() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One task, two episodes of horizon 3; the second terminates after its 2nd step.

    The masked step carries a junk reward and a junk value that must never leak backwards.
    """
    rewards = torch.tensor([[[1.0, 2.0, 3.0], [4.0, 5.0, 7.0]]], dtype=torch.float64)
    values = torch.tensor([[[0.5, 1.0, 1.5], [2.0, -1.0, 9.0]]], dtype=torch.float64)
    mask = torch.tensor([[[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]]], dtype=torch.float64)
    return rewards, values, mask


def test_discounted_returns_match_hand_computed_values(two_episodes) -> None:
    rewards, _, mask = two_episodes
    expected = torch.tensor([[[1 + G * 2 + G**2 * 3, 2 + G * 3, 3.0],
                              [4 + G * 5, 5.0, 0.0]]], dtype=torch.float64)
    torch.testing.assert_close(discounted_returns(rewards, mask, G), expected)


def test_gae_matches_hand_computed_values(two_episodes) -> None:
    rewards, values, mask = two_episodes
    # episode 0 runs to the horizon: the value after its last step is 0
    d0_2 = 3 - 1.5
    d0_1 = 2 + G * 1.5 - 1.0
    d0_0 = 1 + G * 1.0 - 0.5
    # episode 1 terminates after step 1: its junk value 9.0 at step 2 must not be used
    d1_1 = 5 + G * 0.0 - (-1.0)
    d1_0 = 4 + G * (-1.0) - 2.0
    gl = G * L
    expected = torch.tensor([[[d0_0 + gl * d0_1 + gl**2 * d0_2, d0_1 + gl * d0_2, d0_2],
                              [d1_0 + gl * d1_1, d1_1, 0.0]]], dtype=torch.float64)
    torch.testing.assert_close(gae(rewards, values, mask, G, L), expected)


def test_gae_with_lambda_one_and_zero_values_equals_discounted_returns(two_episodes) -> None:
    rewards, _, mask = two_episodes
    torch.testing.assert_close(gae(rewards, torch.zeros_like(rewards), mask, G, 1.0),
                               discounted_returns(rewards, mask, G))


def test_gae_with_lambda_one_equals_returns_minus_values(two_episodes) -> None:
    rewards, values, mask = two_episodes
    expected = (discounted_returns(rewards, mask, G) - values) * mask
    torch.testing.assert_close(gae(rewards, values, mask, G, 1.0), expected)


def test_gae_with_lambda_zero_equals_one_step_td_errors(two_episodes) -> None:
    rewards, values, mask = two_episodes
    expected = torch.tensor([[[1 + G * 1.0 - 0.5, 2 + G * 1.5 - 1.0, 3 - 1.5],
                              [4 + G * (-1.0) - 2.0, 5 - (-1.0), 0.0]]], dtype=torch.float64)
    torch.testing.assert_close(gae(rewards, values, mask, G, 0.0), expected)


def test_normalize_divides_by_the_std_not_the_variance_per_task() -> None:
    # task 0 valid values 1, 5, 1, 5 (mean 3, std 2); task 1 valid 10, 10, 14, 14 (mean 12,
    # std 2); the masked steps hold junk that must not enter the statistics
    adv = torch.tensor([[[1.0, 5.0, 100.0], [1.0, 5.0, -50.0]],
                        [[10.0, 14.0, 3.0], [14.0, 10.0, 77.0]]], dtype=torch.float64)
    mask = torch.tensor([[[1.0, 1.0, 0.0], [1.0, 1.0, 0.0]],
                         [[1.0, 1.0, 0.0], [1.0, 1.0, 0.0]]], dtype=torch.float64)
    expected = torch.tensor([[[-1.0, 1.0, 0.0], [-1.0, 1.0, 0.0]],
                             [[-1.0, 1.0, 0.0], [1.0, -1.0, 0.0]]], dtype=torch.float64)
    torch.testing.assert_close(normalize(adv, mask), expected)


def test_normalize_gives_zero_mean_unit_std_over_valid_steps_and_zero_on_masked() -> None:
    gen = torch.Generator().manual_seed(0)
    adv = 3.0 + 5.0 * torch.randn(3, 4, 6, generator=gen, dtype=torch.float64)
    lengths = torch.tensor([[6, 2, 4, 1], [3, 3, 6, 5], [1, 1, 1, 2]])
    mask = (torch.arange(6) < lengths.unsqueeze(-1)).double()
    out = normalize(adv, mask)
    assert torch.all(out[mask == 0] == 0)
    for i in range(3):
        valid = out[i][mask[i] == 1]
        torch.testing.assert_close(valid.mean(), torch.tensor(0.0, dtype=torch.float64))
        torch.testing.assert_close(valid.std(unbiased=False),
                                   torch.tensor(1.0, dtype=torch.float64))


def _batch(n: int, r: int, t: int, seed: int) -> EpisodeBatch:
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, t + 1, (n, r), generator=gen)
    mask = (torch.arange(t) < lengths.unsqueeze(-1)).float()
    return EpisodeBatch(tasks=list(range(n)),
                        obs=torch.randn(n, r, t, 2, generator=gen),
                        actions=torch.randn(n, r, t, 2, generator=gen),
                        rewards=torch.randn(n, r, t, generator=gen) * mask,
                        mask=mask,
                        log_probs=torch.randn(n, r, t, generator=gen))


def test_policy_gradient_advantages_shape_masking_and_per_task_normalisation() -> None:
    batch = _batch(n=2, r=4, t=7, seed=3)
    adv = policy_gradient_advantages(batch, gamma=0.99, gae_lambda=0.97)
    assert adv.shape == (2, 4, 7)
    assert adv.dtype == batch.rewards.dtype
    assert torch.all(adv[batch.mask == 0] == 0)
    for i in range(2):
        valid = adv[i][batch.mask[i] == 1]
        assert abs(valid.mean().item()) < 1e-5
        assert valid.std(unbiased=False).item() == pytest.approx(1.0, abs=1e-4)

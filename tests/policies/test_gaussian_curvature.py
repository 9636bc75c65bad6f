"""The written-out KL curvature of the Gaussian MLP equals autograd's product, in float64."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from metarl_cli.core.adaptation import adapt_policy, inner_step, mean_kl
from metarl_cli.core.functional import broadcast_policy, task_distribution
from metarl_cli.core.optim import gradient_step_kl_product
from metarl_cli.core.types import EpisodeBatch
from metarl_cli.policies.gaussian_curvature import closed_form_layout, gaussian_mlp_kl_product
from metarl_cli.policies.mlp import CategoricalMLPPolicy, GaussianMLPPolicy

N, R, T, OBS, ACT, LR = 3, 4, 6, 3, 2, 0.3


def make_policy(hidden: list[int], activation: str) -> GaussianMLPPolicy:
    torch.manual_seed(0)
    policy = GaussianMLPPolicy(OBS, ACT, hidden, activation, init_std=0.7).double()
    with torch.no_grad():
        policy.log_std.copy_(torch.tensor([-0.4, 0.2]))  # two different stds
    return policy


def make_batch(seed: int, policy: GaussianMLPPolicy) -> EpisodeBatch:
    """Episodes with some steps masked out (terminated), as the samplers return them."""
    gen = torch.Generator().manual_seed(seed)
    obs = torch.randn(N, R, T, OBS, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        actions = policy.mean(obs) + torch.randn(N, R, T, ACT, generator=gen,
                                                 dtype=torch.float64)
    mask = torch.ones(N, R, T, dtype=torch.float64)
    mask[0, 1, 3:] = 0.0
    mask[2, :, 4:] = 0.0
    return EpisodeBatch([None] * N, obs, actions, torch.zeros(N, R, T, dtype=torch.float64),
                        mask, torch.zeros(N, R, T, dtype=torch.float64))


def autograd_product(policy: nn.Module, batch: EpisodeBatch, advantages: torch.Tensor,
                     post: EpisodeBatch, at: dict[str, torch.Tensor], second_order: bool):
    """The same product by core/optim.py's autograd route, with the KL taken at ``at``."""
    params = {n: p.detach().unsqueeze(0).expand(N, *p.shape).clone().requires_grad_()
              for n, p in policy.named_parameters()}
    adapted = list(inner_step(policy, params, batch, advantages, LR, second_order).values())
    with torch.no_grad():
        old = task_distribution(policy, at, post.obs)
    names = list(params)
    return gradient_step_kl_product(
        list(params.values()), adapted,
        lambda ps: mean_kl(policy, dict(zip(names, ps, strict=True)), post, old),
        list(at.values()))


def adapted_params(policy: nn.Module, batch: EpisodeBatch, advantages: torch.Tensor):
    return adapt_policy(broadcast_policy(policy, N), batch, advantages, LR).params


@pytest.mark.parametrize("second_order", [True, False])
@pytest.mark.parametrize(("hidden", "activation"),
                         [([5, 4], "ReLU"), ([5, 4], "Tanh"), ([6], "Tanh"), ([], "ReLU")])
def test_closed_form_equals_the_autograd_product(hidden, activation, second_order) -> None:
    policy = make_policy(hidden, activation)
    batch, post = make_batch(1, policy), make_batch(2, policy)
    advantages = torch.randn(N, R, T, generator=torch.Generator().manual_seed(3),
                             dtype=torch.float64)
    at = adapted_params(policy, batch, advantages)
    fast = gaussian_mlp_kl_product(policy, batch, advantages, LR, post, at, second_order)
    slow = autograd_product(policy, batch, advantages, post, at, second_order)
    gen = torch.Generator().manual_seed(4)
    size = sum(p.numel() for p in policy.parameters())
    for _ in range(3):
        v = torch.randn(size, generator=gen, dtype=torch.float64)
        expected = slow(v)
        assert expected.abs().max() > 1e-3
        torch.testing.assert_close(fast(v), expected, rtol=1e-9, atol=1e-12)


def test_closed_form_on_a_subsample_keeps_the_kl_at_the_full_step() -> None:
    # J from the first two rollouts of each task, F at the step taken on all four
    policy = make_policy([5, 4], "ReLU")
    batch, post = make_batch(1, policy), make_batch(2, policy)
    advantages = torch.randn(N, R, T, generator=torch.Generator().manual_seed(3),
                             dtype=torch.float64)
    at = adapted_params(policy, batch, advantages)
    sub, sub_adv, sub_post = batch.first_rollouts(2), advantages[:, :2], post.first_rollouts(2)
    fast = gaussian_mlp_kl_product(policy, sub, sub_adv, LR, sub_post, at, True)
    slow = autograd_product(policy, sub, sub_adv, sub_post, at, True)
    full = gaussian_mlp_kl_product(policy, batch, advantages, LR, post, at, True)
    v = torch.randn(sum(p.numel() for p in policy.parameters()),
                    generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    torch.testing.assert_close(fast(v), slow(v), rtol=1e-9, atol=1e-12)
    assert (fast(v) - full(v)).abs().max() > 1e-3 * full(v).abs().max()


def test_layout_only_for_gaussian_mlps_with_relu_or_tanh() -> None:
    assert closed_form_layout(make_policy([5, 4], "ReLU")) is not None
    assert closed_form_layout(make_policy([5, 4], "Tanh")).tanh  # type: ignore[union-attr]
    elu = make_policy([5], "ELU")
    assert closed_form_layout(elu) is None
    assert closed_form_layout(CategoricalMLPPolicy(OBS, 3, [5], "ReLU")) is None
    batch = make_batch(1, elu)
    with pytest.raises(ValueError, match="curvature=gradient_step"):
        gaussian_mlp_kl_product(elu, batch, torch.zeros(N, R, T), LR, batch,
                                dict(elu.named_parameters()), True)

"""Policies as functions of per-task parameter dicts: acting with shared or per-task params."""

from __future__ import annotations

import torch

from metarl_cli.core.functional import PerTaskPolicy, broadcast_policy
from metarl_cli.policies.mlp import CategoricalMLPPolicy, GaussianMLPPolicy


def _act(policy: PerTaskPolicy, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        return policy.act(obs, torch.Generator().manual_seed(0))


def test_acting_with_broadcast_params_equals_acting_with_per_task_copies() -> None:
    torch.manual_seed(0)
    obs = torch.randn(3, 4, 5)
    modules = [GaussianMLPPolicy(5, 2, [8], "Tanh", 0.5), CategoricalMLPPolicy(5, 3, [8], "ReLU")]
    for module in modules:
        shared = broadcast_policy(module, 3)
        copies = PerTaskPolicy(module, {n: p.clone() for n, p in shared.params.items()})
        (a_shared, lp_shared), (a_copies, lp_copies) = _act(shared, obs), _act(copies, obs)
        assert a_shared.shape[:2] == lp_shared.shape == (3, 4)
        torch.testing.assert_close(a_shared, a_copies, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(lp_shared, lp_copies, rtol=1e-6, atol=1e-6)


def test_acting_uses_each_tasks_own_params() -> None:
    torch.manual_seed(1)
    module = GaussianMLPPolicy(5, 2, [8], "Tanh", 0.5)
    params = {n: p.detach().unsqueeze(0).repeat(2, *[1] * p.dim()) for n, p in
              module.named_parameters()}
    params["mean.2.bias"][1] += 10.0  # task 1's mean is shifted by 10
    obs = torch.randn(2, 6, 5)
    actions, _ = _act(PerTaskPolicy(module, params), obs)
    reference, _ = _act(broadcast_policy(module, 2), obs)
    torch.testing.assert_close(actions[0], reference[0])
    torch.testing.assert_close(actions[1], reference[1] + 10.0)

"""Reptile for RL: the pseudo-gradient by hand, the outer update against per-task manual SGD
steps, the learner contract on point_nav."""

from __future__ import annotations

import copy
import functools

import numpy as np
import pytest
import torch
from torch import nn

from metarl_cli.algos.reptile import Reptile, reptile_pseudo_gradient
from metarl_cli.core.evaluation import meta_test
from metarl_cli.core.functional import PerTaskPolicy
from metarl_cli.core.returns import policy_gradient_advantages
from metarl_cli.core.sampler import Sampler
from metarl_cli.envs.point_nav import BatchedPointNav
from metarl_cli.policies.mlp import mlp_policy

NUM_TASKS, ROLLOUTS, HORIZON = 2, 3, 5
Adam = functools.partial(torch.optim.Adam, lr=1e-3)


def make_policy(seed: int = 0) -> nn.Module:
    env = BatchedPointNav()
    torch.manual_seed(seed)
    return mlp_policy(env.observation_space, env.action_space, [8], activation="Tanh",
                      init_std=0.5)


def make_reptile(policy: nn.Module | None = None, seed: int = 0, **kwargs) -> Reptile:
    sampler = Sampler(BatchedPointNav(), horizon=HORIZON, seed=seed)
    args = {"rollouts_per_task": ROLLOUTS, "optimizer": Adam} | kwargs
    return Reptile(policy if policy is not None else make_policy(seed), sampler, **args)


def test_pseudo_gradient_by_hand() -> None:
    meta = {"w": torch.tensor([1.0, 2.0]), "b": torch.tensor(0.5)}
    adapted = {"w": torch.tensor([[0.0, 2.0], [1.0, 4.0]]), "b": torch.tensor([1.5, -0.5])}
    grads = reptile_pseudo_gradient(meta, adapted)
    torch.testing.assert_close(grads["w"], torch.tensor([0.5, -1.0]))
    torch.testing.assert_close(grads["b"], torch.tensor(0.0))


def test_outer_step_moves_towards_the_mean_of_manually_adapted_parameters(double, tasks
                                                                          ) -> None:
    eps, lrs = 0.4, [0.3, 0.1]
    reptile = make_reptile(inner_lrs=lrs, inner_steps=2,
                           optimizer=functools.partial(torch.optim.SGD, lr=eps))
    theta = {n: p.detach().clone() for n, p in reptile.policy.named_parameters()}
    sampler_state = copy.deepcopy(reptile.sampler.state_dict())
    metrics = reptile.train_step(tasks)

    # the same inner loop by hand: per task, a copy of the policy and plain SGD steps
    sampler = Sampler(BatchedPointNav(), horizon=HORIZON, seed=0)
    sampler.load_state_dict(sampler_state)
    copies = [copy.deepcopy(reptile.policy) for _ in range(NUM_TASKS)]
    for module in copies:
        with torch.no_grad():
            for name, p in module.named_parameters():
                p.copy_(theta[name])
    env_steps = 0
    for lr in lrs:
        acting = PerTaskPolicy(reptile.policy, {
            n: torch.stack([dict(m.named_parameters())[n].detach() for m in copies])
            for n in theta})
        batch = sampler.sample(acting, tasks, ROLLOUTS)
        env_steps += batch.num_steps
        adv = policy_gradient_advantages(batch, reptile.rule.gamma, reptile.rule.gae_lambda)
        for i, module in enumerate(copies):
            dist = module.distribution(module(batch.obs[i]))
            mask = batch.mask[i]
            loss = -(dist.log_prob(batch.actions[i]) * adv[i] * mask).sum() / mask.sum()
            grads = torch.autograd.grad(loss, list(module.parameters()))
            with torch.no_grad():
                for p, g in zip(module.parameters(), grads, strict=True):
                    p -= lr * g
    for name, p in reptile.policy.named_parameters():
        mean_adapted = torch.stack([dict(m.named_parameters())[name].detach()
                                    for m in copies]).mean(0)
        torch.testing.assert_close(p.detach(), theta[name] + eps * (mean_adapted - theta[name]))
        assert not torch.allclose(p.detach(), theta[name])
    assert metrics["env_steps"] == env_steps == 2 * NUM_TASKS * ROLLOUTS * HORIZON


# ------------------------------------------------------------------------ learner contract
def test_train_step_metrics_meta_test_and_state_round_trip(tasks) -> None:
    source = make_reptile(inner_steps=3)
    curve = meta_test(source, source.sampler, tasks, steps=2, rollouts=ROLLOUTS)
    assert curve.returns.shape == (3, NUM_TASKS) and np.all(np.isfinite(curve.returns))
    metrics = source.train_step(tasks)
    assert {"meta_train/return_pre", "meta_train/return_post", "meta_train/return_step_2",
            "loss/pseudo_gradient_norm", "env_steps"} <= metrics.keys()
    assert metrics["loss/pseudo_gradient_norm"] > 0
    assert metrics["env_steps"] == 3 * NUM_TASKS * ROLLOUTS * HORIZON
    target = make_reptile(make_policy(seed=1), inner_steps=3)
    target.load_state_dict(copy.deepcopy(source.state_dict()))
    target.sampler.load_state_dict(copy.deepcopy(source.sampler.state_dict()))
    source.train_step(tasks)
    target.train_step(tasks)
    for p, q in zip(source.policy.parameters(), target.policy.parameters(), strict=True):
        assert torch.equal(p, q)


@pytest.mark.parametrize(("kwargs", "name"), [
    ({"inner_steps": 0}, "inner_steps"), ({"inner_lr": 0.0}, "inner_lr"),
    ({"gamma": 0.0}, "gamma"), ({"optimizer": None}, "optimizer"),
])
def test_bad_constructor_values_raise_value_error_naming_the_parameter(kwargs, name) -> None:
    with pytest.raises(ValueError, match=name):
        make_reptile(**kwargs)

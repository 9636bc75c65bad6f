"""E-MAML: the loss with its exploration term by hand, the learner contract on point_nav."""

from __future__ import annotations

import copy
import functools
import math

import numpy as np
import pytest
import torch
from torch import nn

from metarl_cli.algos.emaml import EMAML, exploration_credit
from metarl_cli.core import gradient_learner
from metarl_cli.core.evaluation import meta_test
from metarl_cli.core.functional import Params
from metarl_cli.core.sampler import Sampler
from metarl_cli.core.types import EpisodeBatch
from metarl_cli.envs.point_nav import BatchedPointNav
from metarl_cli.policies.mlp import GaussianMLPPolicy, mlp_policy

NUM_TASKS, ROLLOUTS, HORIZON = 3, 3, 5
Adam = functools.partial(torch.optim.Adam, lr=1e-3)


@pytest.fixture
def num_tasks() -> int:
    return NUM_TASKS  # three tasks, so that the normalised exploration credit is not just +-1


def make_emaml(policy: nn.Module | None = None, seed: int = 0, **kwargs) -> EMAML:
    if policy is None:
        env = BatchedPointNav()
        torch.manual_seed(seed)
        policy = mlp_policy(env.observation_space, env.action_space, [8], init_std=0.5)
    sampler = Sampler(BatchedPointNav(), horizon=HORIZON, seed=seed)
    return EMAML(policy, sampler, **({"rollouts_per_task": ROLLOUTS} | kwargs))


# ------------------------------------------------------------------------- loss by hand
def log_prob(theta: Params, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """Linear-mean diagonal Gaussian log-density, written out."""
    mean = obs @ theta["mean.0.weight"].T + theta["mean.0.bias"]
    log_std = theta["log_std"]
    z = (actions - mean) / log_std.exp()
    return (-0.5 * z**2 - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (x * mask).sum() / mask.sum()


def manual_step(theta: Params, batch: EpisodeBatch, adv: torch.Tensor, i: int, lr: float
                ) -> Params:
    loss = -masked_mean(log_prob(theta, batch.obs[i], batch.actions[i]) * adv[i], batch.mask[i])
    grads = torch.autograd.grad(loss, list(theta.values()), create_graph=True)
    return {n: p - lr * g for (n, p), g in zip(theta.items(), grads, strict=True)}


def test_exploration_credit_by_hand() -> None:
    rewards = torch.zeros(3, 2, 2)
    rewards[0, :, 0], rewards[1, 0, :], rewards[2, :, :] = -1.0, -3.0, 0.5
    post = EpisodeBatch([None] * 3, torch.zeros(3, 2, 2, 1), torch.zeros(3, 2, 2, 1), rewards,
                        torch.ones(3, 2, 2), torch.zeros(3, 2, 2))
    returns = torch.tensor([-1.0, -3.0, 1.0])  # per task: mean over its two episodes
    expected = (returns - returns.mean()) / returns.std(unbiased=False)
    torch.testing.assert_close(exploration_credit(post), expected)


def test_loss_equals_a_hand_written_one_away_from_the_sampling_parameters(double, tasks) -> None:
    torch.manual_seed(3)
    policy = GaussianMLPPolicy(2, 2, [], "Tanh", 0.5)
    lr, weight = 0.3, 0.8
    emaml = make_emaml(policy, inner_lr=lr, exploration_weight=weight)
    data = emaml.rule.sample_and_adapt(emaml.sampler, tasks, ROLLOUTS, 1)
    credit = exploration_credit(data.post)
    theta_old = {n: p.detach().clone().requires_grad_() for n, p in policy.named_parameters()}
    with torch.no_grad():
        for p in policy.parameters():
            p += 0.2 * torch.randn(p.shape)
    loss, _ = emaml.loss_and_kl(data, emaml.rule.adapted_params(data, True), credit)

    theta = dict(policy.named_parameters())
    pre, adv, post = data.batches[0], data.advantages[0], data.post
    returns = post.rewards.sum(-1).mean(-1)
    manual_credit = (returns - returns.mean()) / returns.std(unbiased=False)
    surrogates, explore = [], []
    for i in range(NUM_TASKS):
        adapted = manual_step(theta, pre, adv, i, lr)
        acting = {n: p.detach() for n, p in manual_step(theta_old, pre, adv, i, lr).items()}
        ratio = torch.exp(log_prob(adapted, post.obs[i], post.actions[i])
                          - log_prob(acting, post.obs[i], post.actions[i]))
        surrogates.append(-masked_mean(ratio * data.post_advantages[i], post.mask[i]))
        explore.append(manual_credit[i] * masked_mean(log_prob(theta, pre.obs[i],
                                                               pre.actions[i]), pre.mask[i]))
    expected = torch.stack(surrogates).mean() - weight * torch.stack(explore).mean()

    torch.testing.assert_close(credit, manual_credit)
    torch.testing.assert_close(loss, expected)
    got = torch.autograd.grad(loss, list(theta.values()))
    want = torch.autograd.grad(expected, list(theta.values()), retain_graph=True)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w)
    # the exploration term really changes the meta-gradient
    plain = torch.autograd.grad(torch.stack(surrogates).mean(), list(theta.values()))
    assert any(not torch.allclose(g, p) for g, p in zip(got, plain, strict=True))


def test_zero_exploration_weight_is_maml_surrogate(tasks) -> None:
    emaml = make_emaml(exploration_weight=0.0)
    data = emaml.rule.sample_and_adapt(emaml.sampler, tasks, ROLLOUTS, 1)
    loss, _ = emaml.loss_and_kl(data, emaml.rule.adapted_params(data, True),
                                exploration_credit(data.post))
    assert abs(loss.item()) < 1e-5  # mean normalised advantage at the sampling parameters


# ------------------------------------------------------------------------ learner contract
@pytest.mark.parametrize("outer_step", ["trpo", "vpg"])
def test_train_step_and_meta_test(tasks, outer_step: str) -> None:
    emaml = make_emaml(outer_step=outer_step, optimizer=Adam, inner_steps=2)
    before = [p.detach().clone() for p in emaml.policy.parameters()]
    metrics = emaml.train_step(tasks)
    assert {"meta_train/return_pre", "meta_train/return_post", "meta_train/return_step_1",
            "loss/surrogate_before", "optim/kl", "env_steps"} <= metrics.keys()
    assert metrics["env_steps"] == 3 * NUM_TASKS * ROLLOUTS * HORIZON
    if outer_step == "trpo":
        assert metrics["optim/accepted"] == 1.0 and 0 < metrics["optim/kl"] <= 0.01
    assert any(not torch.equal(p.detach(), b) for p, b in zip(emaml.policy.parameters(), before,
                                                              strict=True))
    curve = meta_test(emaml, emaml.sampler, tasks, steps=2, rollouts=ROLLOUTS)
    assert curve.returns.shape == (3, NUM_TASKS) and np.all(np.isfinite(curve.returns))


@pytest.mark.usefixtures("double")  # in float32 CG's amplified rounding decided the margin
def test_gradient_step_curvature_is_opt_in_and_takes_nearly_the_autograd_step(
        step_taken, monkeypatch) -> None:
    calls = []
    original = gradient_learner.gradient_step_kl_product

    def spy(*args):
        calls.append(1)
        return original(*args)

    monkeypatch.setattr(gradient_learner, "gradient_step_kl_product", spy)
    moved = {None: step_taken(make_emaml())}
    assert not calls  # the default is autograd's product
    moved["gradient_step"] = step_taken(make_emaml(curvature="gradient_step"))
    assert len(calls) == 1
    # the same curvature up to rounding, which conjugate gradient amplifies somewhat
    assert torch.cosine_similarity(moved["gradient_step"], moved[None], dim=0) > 0.999
    fast, full = moved["gradient_step"].norm().item(), moved[None].norm().item()
    assert fast == pytest.approx(full, rel=0.05)


@pytest.mark.usefixtures("double")
def test_closed_form_curvature_takes_nearly_the_gradient_step_products_step(
        step_taken) -> None:
    moved = [step_taken(make_emaml(curvature=curvature))
             for curvature in ("closed_form", "gradient_step")]
    assert not torch.equal(*moved)  # two different products...
    assert torch.cosine_similarity(*moved, dim=0) > 1 - 1e-6  # ...of the same curvature
    assert moved[0].norm().item() == pytest.approx(moved[1].norm().item(), rel=1e-3)


def test_state_dict_round_trips(tasks) -> None:
    source = make_emaml(outer_step="vpg", optimizer=Adam)
    source.train_step(tasks)
    target = make_emaml(seed=1, outer_step="vpg", optimizer=Adam)
    target.load_state_dict(copy.deepcopy(source.state_dict()))
    target.sampler.load_state_dict(copy.deepcopy(source.sampler.state_dict()))
    source.train_step(tasks)
    target.train_step(tasks)
    for p, q in zip(source.policy.parameters(), target.policy.parameters(), strict=True):
        assert torch.equal(p, q)


@pytest.mark.parametrize(("kwargs", "name"), [
    ({"outer_step": "ppo"}, "outer_step"), ({"exploration_weight": -1.0}, "exploration_weight"),
    ({"outer_step": "vpg"}, "optimizer"), ({"max_kl": 0.0}, "max_kl"),
    ({"curvature": "exact"}, "curvature"),
])
def test_bad_constructor_values_raise_value_error_naming_the_parameter(kwargs, name) -> None:
    with pytest.raises(ValueError, match=name):
        make_emaml(**kwargs)

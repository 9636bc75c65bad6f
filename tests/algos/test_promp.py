"""ProMP: the LVC estimator's meta-gradient on an analytic bandit, the outer loss by hand,
the learner contract on a tiny point-navigation batch."""

from __future__ import annotations

import copy
import functools
import math

import numpy as np
import pytest
import torch
from torch import nn

from metarl_cli.algos.promp import ProMP, adapt_kl_coeffs
from metarl_cli.core.adaptation import inner_step
from metarl_cli.core.evaluation import meta_test
from metarl_cli.core.functional import Params, expand_params
from metarl_cli.core.sampler import Sampler
from metarl_cli.core.types import EpisodeBatch
from metarl_cli.envs.point_nav import BatchedPointNav
from metarl_cli.policies.mlp import CategoricalMLPPolicy, GaussianMLPPolicy, mlp_policy

NUM_TASKS, ROLLOUTS, HORIZON = 2, 3, 5
Adam = functools.partial(torch.optim.Adam, lr=1e-3)


def make_promp(policy: nn.Module | None = None, seed: int = 0, **kwargs) -> ProMP:
    if policy is None:
        env = BatchedPointNav()
        torch.manual_seed(seed)
        policy = mlp_policy(env.observation_space, env.action_space, [8], init_std=0.5)
    sampler = Sampler(BatchedPointNav(), horizon=HORIZON, seed=seed)
    args = {"rollouts_per_task": ROLLOUTS, "optimizer": Adam} | kwargs
    return ProMP(policy, sampler, **args)


# ------------------------------------------------------------- LVC estimator on a bandit
REWARDS = torch.tensor([1.0, -0.5, 2.0, 0.3], dtype=torch.float64)
ALPHA = 0.7


def bandit_policy() -> CategoricalMLPPolicy:
    """Softmax over 4 arms; logits = w * 1 + b with the constant observation 1."""
    policy = CategoricalMLPPolicy(1, len(REWARDS), [], "Tanh").double()
    with torch.no_grad():
        policy.logits[0].weight.copy_(torch.tensor([[0.2], [-0.1], [0.0], [0.4]]))
        policy.logits[0].bias.copy_(torch.tensor([0.1, 0.3, -0.2, 0.0]))
    return policy


def expected_return(policy: nn.Module, params: Params) -> torch.Tensor:
    """J(params) = sum_a pi_params(a) r(a), exactly."""
    logits = torch.func.functional_call(policy, params, (torch.ones(1, dtype=torch.float64),))[0]
    return (torch.softmax(logits, -1) * REWARDS).sum()


def one_pull(arm: int) -> EpisodeBatch:
    """One task, one episode of one step: the arm pulled and its reward."""
    ones = torch.ones(1, 1, 1, dtype=torch.float64)
    return EpisodeBatch([None], ones.unsqueeze(-1), torch.tensor([[[arm]]]),
                        REWARDS[arm].view(1, 1, 1), ones, torch.zeros_like(ones))


def expected_estimated_meta_gradient(estimator: str) -> Params:
    """E over the inner pull a ~ pi_theta of the gradient, through the estimated inner step
    theta'(a) = theta + alpha * grad J_hat(a), of <v, theta'(a)>, with v = grad J at the true
    adapted parameters: the estimator's meta-gradient of the post-update objective, with the
    expectation taken exactly over the 4 arms."""
    policy = bandit_policy()
    theta = dict(policy.named_parameters())
    true_adapted = {n: p.detach() + ALPHA * g for (n, p), g in zip(
        theta.items(), torch.autograd.grad(expected_return(policy, theta), list(theta.values())),
        strict=True)}
    at = {n: p.clone().requires_grad_() for n, p in true_adapted.items()}
    v = dict(zip(at, torch.autograd.grad(expected_return(policy, at), list(at.values())),
                 strict=True))
    with torch.no_grad():
        probs = torch.softmax(policy(torch.ones(1, dtype=torch.float64))[0], -1)
    total = {n: torch.zeros_like(p) for n, p in theta.items()}
    for arm in range(len(REWARDS)):
        batch = one_pull(arm)
        adapted = inner_step(policy, expand_params(policy, 1), batch, batch.rewards, ALPHA,
                             create_graph=True, estimator=estimator)
        inner = sum((adapted[n][0] * v[n]).sum() for n in theta)
        grads = torch.autograd.grad(inner, list(theta.values()))
        for n, g in zip(theta, grads, strict=True):
            total[n] += probs[arm] * g
    return total


def true_meta_gradient() -> Params:
    """d/dtheta J(theta + alpha grad J(theta)), exactly (second order through the inner step)."""
    policy = bandit_policy()
    theta = dict(policy.named_parameters())
    grads = torch.autograd.grad(expected_return(policy, theta), list(theta.values()),
                                create_graph=True)
    adapted = {n: p + ALPHA * g for (n, p), g in zip(theta.items(), grads, strict=True)}
    meta = torch.autograd.grad(expected_return(policy, adapted), list(theta.values()))
    return dict(zip(theta, meta, strict=True))


def test_lvc_meta_gradient_equals_the_true_meta_gradient_in_expectation() -> None:
    truth = true_meta_gradient()
    estimated = expected_estimated_meta_gradient("lvc")
    for name in truth:
        torch.testing.assert_close(estimated[name], truth[name], atol=1e-12, rtol=1e-10)


def test_log_likelihood_meta_gradient_is_biased_on_the_same_bandit() -> None:
    truth = true_meta_gradient()
    estimated = expected_estimated_meta_gradient("log_likelihood")
    error = sum(((estimated[n] - truth[n]) ** 2).sum() for n in truth) ** 0.5
    norm = sum((truth[n] ** 2).sum() for n in truth) ** 0.5
    assert error > 0.05 * norm, (error, norm)


# ------------------------------------------------------------------- outer loss by hand
def gaussian_log_prob(mean: torch.Tensor, log_std: torch.Tensor, x: torch.Tensor
                      ) -> torch.Tensor:
    z = (x - mean) / log_std.exp()
    return (-0.5 * z**2 - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)


def gaussian_kl(mean0, log_std0, mean1, log_std1) -> torch.Tensor:
    """KL(N(mean0, std0) || N(mean1, std1)) of diagonal Gaussians, summed over dimensions."""
    var0, var1 = (2 * log_std0).exp(), (2 * log_std1).exp()
    return (log_std1 - log_std0 + (var0 + (mean0 - mean1) ** 2) / (2 * var1) - 0.5).sum(-1)


def linear_out(theta: Params, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mean = obs @ theta["mean.0.weight"].T + theta["mean.0.bias"]
    return mean, theta["log_std"]


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (x * mask).sum() / mask.sum()


def manual_adapted(theta: Params, theta_old: Params, batch: EpisodeBatch, adv: torch.Tensor,
                   i: int, lr: float) -> Params:
    """Task i's LVC inner step written out: ratio to the acting (theta_old) policy."""
    old = gaussian_log_prob(*linear_out(theta_old, batch.obs[i]), batch.actions[i]).detach()
    new = gaussian_log_prob(*linear_out(theta, batch.obs[i]), batch.actions[i])
    loss = -masked_mean(torch.exp(new - old) * adv[i], batch.mask[i])
    grads = torch.autograd.grad(loss, list(theta.values()), create_graph=True)
    return {n: p - lr * g for (n, p), g in zip(theta.items(), grads, strict=True)}


def test_promp_loss_equals_a_hand_written_one_away_from_the_sampling_parameters(
        double, tasks) -> None:
    torch.manual_seed(3)
    policy = GaussianMLPPolicy(2, 2, [], "Tanh", 0.5)
    lr, clip_eps, coeff = 0.3, 0.1, 0.7
    promp = make_promp(policy, inner_lr=lr, clip_eps=clip_eps, inner_kl_penalty=coeff)
    data = promp.rule.sample_and_adapt(promp.sampler, tasks, ROLLOUTS, 1)
    theta_old = {n: p.detach().clone() for n, p in policy.named_parameters()}
    with torch.no_grad():  # as in a later ProMP epoch: the meta-parameters have moved
        for p in policy.parameters():
            p += 0.2 * torch.randn(p.shape)
    loss, inner_kls, _ = promp.loss(data, second_order=True)

    theta = dict(policy.named_parameters())
    pre, adv, post, post_adv = data.batches[0], data.advantages[0], data.post, data.post_advantages
    surrogates, kls = [], []
    for i in range(NUM_TASKS):
        adapted = manual_adapted(theta, theta_old, pre, adv, i, lr)
        adapted_old = {n: p.detach() for n, p in
                       manual_adapted(
                           {n: p.clone().requires_grad_() for n, p in theta_old.items()},
                           theta_old, pre, adv, i, lr).items()}
        ratio = torch.exp(gaussian_log_prob(*linear_out(adapted, post.obs[i]), post.actions[i])
                          - gaussian_log_prob(*linear_out(adapted_old, post.obs[i]),
                                              post.actions[i]))
        clipped = torch.minimum(ratio * post_adv[i],
                                ratio.clamp(1 - clip_eps, 1 + clip_eps) * post_adv[i])
        surrogates.append(-masked_mean(clipped, post.mask[i]))
        kl = gaussian_kl(*linear_out(theta_old, pre.obs[i]), *linear_out(theta, pre.obs[i]))
        kls.append(masked_mean(kl, pre.mask[i]))
    expected = torch.stack(surrogates).mean() + coeff * torch.stack(kls).mean()

    assert inner_kls.shape == (1,) and inner_kls.item() > 0
    torch.testing.assert_close(inner_kls[0], torch.stack(kls).mean())
    torch.testing.assert_close(loss, expected)
    got = torch.autograd.grad(loss, list(theta.values()))
    want = torch.autograd.grad(expected, list(theta.values()))
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w)


def test_adaptive_inner_kl_coefficients_halve_keep_or_double() -> None:
    coeffs = torch.tensor([1.0, 1.0, 1.0])
    kls = torch.tensor([0.001, 0.01, 0.1])
    torch.testing.assert_close(adapt_kl_coeffs(coeffs, kls, 0.01), torch.tensor([0.5, 1.0, 2.0]))


# ------------------------------------------------------------------------ learner contract
def test_train_step_reports_metrics_and_moves_the_policy_by_adam_steps(tasks) -> None:
    promp = make_promp(ppo_epochs=3)
    before = {n: p.detach().clone() for n, p in promp.policy.named_parameters()}
    metrics = promp.train_step(tasks)
    assert {"meta_train/return_pre", "meta_train/return_post", "meta_train/adaptation_gain",
            "loss/surrogate_before", "loss/surrogate_after", "optim/kl", "optim/inner_kl",
            "env_steps"} <= metrics.keys()
    assert metrics["env_steps"] == 2 * NUM_TASKS * ROLLOUTS * HORIZON
    # at the sampling parameters the clipped surrogate is the mean normalised advantage (0)
    # and the inner KL is 0
    assert abs(metrics["loss/surrogate_before"]) < 1e-5
    assert metrics["loss/surrogate_after"] < metrics["loss/surrogate_before"]
    assert metrics["optim/inner_kl"] > 0
    for name, p in promp.policy.named_parameters():
        assert not torch.equal(p.detach(), before[name]), name
        assert (p.detach() - before[name]).abs().max() <= 3 * 1.01e-3  # 3 Adam steps of 1e-3


def test_adaptive_penalty_updates_the_coefficients_and_state_round_trips(tasks) -> None:
    source = make_promp(adaptive_inner_kl_penalty=True, target_inner_kl=1e-9)
    source.train_step(tasks)
    assert source.inner_kl_coeffs.item() == pytest.approx(2 * 5e-4)  # inner KL far above target
    target = make_promp(make_promp(seed=1).policy, adaptive_inner_kl_penalty=True)
    target.load_state_dict(copy.deepcopy(source.state_dict()))
    target.sampler.load_state_dict(copy.deepcopy(source.sampler.state_dict()))
    assert torch.equal(target.inner_kl_coeffs, source.inner_kl_coeffs)
    source.train_step(tasks)
    target.train_step(tasks)
    for p, q in zip(source.policy.parameters(), target.policy.parameters(), strict=True):
        assert torch.equal(p, q)


def test_meta_test_runs_before_and_after_training(tasks) -> None:
    promp = make_promp()
    for _ in range(2):
        curve = meta_test(promp, promp.sampler, tasks, steps=2, rollouts=ROLLOUTS)
        assert curve.returns.shape == (3, NUM_TASKS)
        assert np.all(np.isfinite(curve.returns))
        promp.train_step(tasks)


@pytest.mark.parametrize(("kwargs", "name"), [
    ({"clip_eps": 0.0}, "clip_eps"), ({"ppo_epochs": 0}, "ppo_epochs"),
    ({"inner_kl_penalty": -1.0}, "inner_kl_penalty"), ({"inner_lr": -0.1}, "inner_lr"),
    ({"optimizer": None}, "optimizer"),
])
def test_bad_constructor_values_raise_value_error_naming_the_parameter(kwargs, name) -> None:
    with pytest.raises(ValueError, match=name):
        make_promp(**kwargs)

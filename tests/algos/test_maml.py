"""MAML's maths on a tiny point-navigation batch: inner step, meta-gradient, outer steps.

Two tasks, three rollouts, horizon 5, one hidden layer of 8 units: every test runs in well
under a second.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable

import numpy as np
import pytest
import torch
from torch import nn
from torch.func import functional_call
from torch.nn.utils import parameters_to_vector

from metarl_cli.algos.maml import MAML
from metarl_cli.core import adaptation, gradient_learner
from metarl_cli.core.adaptation import inner_step
from metarl_cli.core.evaluation import AdaptationCurve, meta_test
from metarl_cli.core.functional import Params, PerTaskPolicy
from metarl_cli.core.returns import policy_gradient_advantages
from metarl_cli.core.sampler import Sampler
from metarl_cli.core.types import EpisodeBatch
from metarl_cli.envs.point_nav import BatchedPointNav, GoalTask
from metarl_cli.policies.mlp import mlp_policy

NUM_TASKS, ROLLOUTS, HORIZON = 2, 3, 5
GAMMA, LAMBDA = 0.99, 1.0
METRIC_KEYS = {"meta_train/return_pre", "meta_train/return_post",
               "meta_train/adaptation_gain", "optim/kl", "optim/accepted",
               "optim/line_search_steps", "env_steps"}
Adam = functools.partial(torch.optim.Adam, lr=1e-3)


def make_policy(seed: int = 0, activation: str = "ReLU") -> nn.Module:
    env = BatchedPointNav()
    torch.manual_seed(seed)
    return mlp_policy(env.observation_space, env.action_space, [8], activation=activation,
                      init_std=0.5)


def make_maml(policy: nn.Module | None = None, seed: int = 0, **kwargs) -> MAML:
    sampler = Sampler(BatchedPointNav(), horizon=HORIZON, seed=seed)
    args = {"rollouts_per_task": ROLLOUTS, "gamma": GAMMA, "gae_lambda": LAMBDA} | kwargs
    return MAML(policy if policy is not None else make_policy(), sampler, **args)


def sample(maml: MAML, tasks: list[GoalTask]) -> EpisodeBatch:
    return maml.sampler.sample(maml.exploration_policy(len(tasks)), tasks, ROLLOUTS)


def to_double(batch: EpisodeBatch) -> EpisodeBatch:
    return EpisodeBatch(batch.tasks, batch.obs.double(), batch.actions.double(),
                        batch.rewards.double(), batch.mask.double(), batch.log_probs.double())


def pg_loss(policy: nn.Module, batch: EpisodeBatch, advantages: torch.Tensor) -> torch.Tensor:
    """-mean over valid steps of log_prob * advantage, with the module's own forward."""
    log_prob = policy.distribution(policy(batch.obs)).log_prob(batch.actions)
    return -(log_prob * advantages * batch.mask).sum() / batch.mask.sum()


# ------------------------------------------------------------------------------- inner step
def per_task(theta: Params, num_tasks: int = NUM_TASKS) -> Params:
    """Parameters without a task axis repeated along a leading task axis (differentiably)."""
    return {n: p.unsqueeze(0).expand(num_tasks, *p.shape) for n, p in theta.items()}


@pytest.mark.parametrize(("step", "lr"), [(0, 0.1), (1, 0.1 * 0.25), (3, 0.1 * 0.25)])
def test_inner_step_equals_a_manual_sgd_step(tasks, step: int, lr: float) -> None:
    maml = make_maml(inner_lr=0.1, later_lr_scale=0.25)
    batch = sample(maml, tasks)
    adv = policy_gradient_advantages(batch, GAMMA, LAMBDA)
    theta = {n: p.detach().clone().requires_grad_() for n, p in maml.policy.named_parameters()}
    adapted = inner_step(maml.policy, per_task(theta), batch, adv, maml.rule.step_size(step), False)
    for i in range(NUM_TASKS):
        manual = copy.deepcopy(maml.policy)
        pg_loss(manual, batch.task(i), adv[i : i + 1]).backward()
        with torch.no_grad():
            for p in manual.parameters():
                p -= lr * p.grad
        moved = False
        for name, p in manual.named_parameters():
            torch.testing.assert_close(adapted[name][i], p, atol=1e-6, rtol=0)
            moved |= not torch.allclose(p, theta[name], atol=1e-6, rtol=0)
        assert moved, "the inner step should move the parameters"


# ------------------------------------------------------------------------ meta-gradient
def meta_objective(maml: MAML, theta: Params, inner: EpisodeBatch, inner_adv: torch.Tensor,
                   post: EpisodeBatch, post_adv: torch.Tensor, create_graph: bool
                   ) -> torch.Tensor:
    """f(theta): post-adaptation loss, averaged over tasks, of theta - lr grad L_inner(theta)."""
    adapted = inner_step(maml.policy, per_task(theta), inner, inner_adv, maml.rule.step_size(0),
                         create_graph)
    losses = []
    for i in range(NUM_TASKS):
        out = functional_call(maml.policy, {n: p[i] for n, p in adapted.items()},
                              (post.obs[i],))
        log_prob = maml.policy.distribution(out).log_prob(post.actions[i])
        mask = post.mask[i]
        losses.append(-(log_prob * post_adv[i] * mask).sum() / mask.sum())
    return torch.stack(losses).mean()


@pytest.fixture
def double_problem(tasks) -> tuple[MAML, EpisodeBatch, torch.Tensor, EpisodeBatch, torch.Tensor]:
    maml = make_maml(make_policy(activation="Tanh"), inner_lr=0.5)
    inner, post = sample(maml, tasks), sample(maml, tasks)
    maml.policy.double()
    inner, post = to_double(inner), to_double(post)
    return (maml, inner, policy_gradient_advantages(inner, GAMMA, LAMBDA),
            post, policy_gradient_advantages(post, GAMMA, LAMBDA))


def _gradient(maml: MAML, objective: Callable[[Params], torch.Tensor]) -> Params:
    theta = dict(maml.policy.named_parameters())
    grads = torch.autograd.grad(objective(theta), list(theta.values()))
    return dict(zip(theta, grads, strict=True))


def _dot(a: Params, b: Params) -> float:
    return sum((a[n] * b[n]).sum().item() for n in a)


def test_second_order_meta_gradient_matches_finite_differences(double_problem) -> None:
    maml, inner, inner_adv, post, post_adv = double_problem

    def f(theta: Params, create_graph: bool = True) -> torch.Tensor:
        return meta_objective(maml, theta, inner, inner_adv, post, post_adv, create_graph)

    grad = _gradient(maml, f)
    theta0 = {n: p.detach() for n, p in maml.policy.named_parameters()}
    gen = torch.Generator().manual_seed(11)
    eps = 1e-5
    for _ in range(3):
        direction = {n: torch.randn(p.shape, generator=gen, dtype=torch.float64)
                     for n, p in theta0.items()}

        def at(sign: float, direction: Params = direction) -> float:
            theta = {n: (p + sign * eps * direction[n]).requires_grad_()
                     for n, p in theta0.items()}
            return f(theta).item()

        finite_diff = (at(1.0) - at(-1.0)) / (2 * eps)
        analytic = _dot(grad, direction)
        assert abs(finite_diff - analytic) < 1e-4 * abs(analytic), (finite_diff, analytic)


def test_first_order_meta_gradient_differs_from_second_order(double_problem) -> None:
    maml, inner, inner_adv, post, post_adv = double_problem
    second = _gradient(maml, lambda t: meta_objective(maml, t, inner, inner_adv, post,
                                                      post_adv, True))
    first = _gradient(maml, lambda t: meta_objective(maml, t, inner, inner_adv, post,
                                                     post_adv, False))
    diff = sum(((second[n] - first[n]) ** 2).sum().item() for n in second) ** 0.5
    norm = _dot(second, second) ** 0.5
    assert diff > 0.1 * norm


# ---------------------------------------------------------------------------- outer steps
def test_trpo_train_step_reports_the_metrics_and_respects_max_kl(tasks) -> None:
    max_kl = 0.01
    maml = make_maml(outer_step="trpo", max_kl=max_kl)
    before = [p.detach().clone() for p in maml.policy.parameters()]
    metrics = maml.train_step(tasks)
    assert METRIC_KEYS <= metrics.keys()
    assert all(isinstance(v, float) for v in metrics.values())
    assert metrics["env_steps"] == 2 * NUM_TASKS * ROLLOUTS * HORIZON  # pre and post batches
    assert metrics["meta_train/adaptation_gain"] == pytest.approx(
        metrics["meta_train/return_post"] - metrics["meta_train/return_pre"])
    # at the old parameters the surrogate is the mean normalised advantage, i.e. 0: the
    # differentiable adaptation reproduces the acting policy exactly
    assert abs(metrics["loss/surrogate_before"]) < 1e-5
    assert metrics["optim/accepted"] == 1.0
    assert 0 < metrics["optim/kl"] <= max_kl
    assert metrics["loss/surrogate_after"] < metrics["loss/surrogate_before"]
    changed = [not torch.equal(p.detach(), b) for p, b in zip(maml.policy.parameters(), before,
                                                                strict=True)]
    assert any(changed)


@pytest.mark.parametrize("curvature", ["closed_form", "autograd"])
def test_trpo_adapts_once_for_the_gradient_and_once_per_line_search_point(
        tasks, monkeypatch, curvature: str) -> None:
    calls: list[bool] = []
    original = gradient_learner.AdaptationRule.adapted_params

    def counted(self, data, second_order):
        calls.append(second_order)
        return original(self, data, second_order)

    monkeypatch.setattr(gradient_learner.AdaptationRule, "adapted_params", counted)
    metrics = make_maml(curvature=curvature).train_step(tasks)
    assert calls == [True] + [False] * int(metrics["optim/line_search_steps"])


def test_trpo_train_step_with_two_inner_steps_reports_each_step(tasks) -> None:
    maml = make_maml(outer_step="trpo", inner_steps=2)
    metrics = maml.train_step(tasks)
    assert {"meta_train/return_step_0", "meta_train/return_step_1",
            "meta_train/return_step_2"} <= metrics.keys()
    assert metrics["env_steps"] == 3 * NUM_TASKS * ROLLOUTS * HORIZON
    assert metrics["optim/kl"] <= 0.01


def test_autograd_curvature_takes_nearly_the_gradient_step_products_step(step_taken) -> None:
    moved = [step_taken(make_maml(curvature=curvature))
             for curvature in ("gradient_step", "autograd")]
    assert not torch.equal(*moved)  # two different products...
    assert torch.cosine_similarity(*moved, dim=0) > 0.999  # ...of the same curvature
    assert moved[0].norm().item() == pytest.approx(moved[1].norm().item(), rel=0.05)


@pytest.mark.usefixtures("double")  # so that conjugate gradient has no rounding to amplify
def test_default_closed_form_curvature_takes_the_gradient_step_products_step(
        step_taken, monkeypatch) -> None:
    calls = []
    product = gradient_learner.gaussian_mlp_kl_product
    monkeypatch.setattr(gradient_learner, "gaussian_mlp_kl_product",
                        lambda *a: calls.append(1) or product(*a))
    moved = [step_taken(make_maml())]
    moved.append(step_taken(make_maml(curvature="gradient_step")))
    assert len(calls) == 1  # the default wrote the product out; gradient_step did not
    # equal products (tests/policies/test_gaussian_curvature.py); conjugate gradient on this
    # ill-conditioned tiny problem amplifies their rounding to about 1e-5 of the step
    assert torch.cosine_similarity(*moved, dim=0) > 1 - 1e-6
    assert moved[0].norm().item() == pytest.approx(moved[1].norm().item(), rel=1e-3)


def test_closed_form_curvature_falls_back_where_it_does_not_apply(tasks, monkeypatch) -> None:
    calls = []
    product = gradient_learner.gradient_step_kl_product
    monkeypatch.setattr(gradient_learner, "gradient_step_kl_product",
                        lambda *a: calls.append(1) or product(*a))
    maml = make_maml(make_policy(activation="ELU"))  # no closed form for ELU
    assert maml.curvature == "closed_form"
    assert maml.train_step(tasks)["optim/accepted"] == 1.0
    assert calls == [1]


def test_subsampled_curvature_takes_a_step_within_the_bound_near_the_full_one(tasks) -> None:
    moved, kls = [], []
    for cg_subsample in (1.0, 0.5):
        maml = make_maml(cg_subsample=cg_subsample)
        before = parameters_to_vector(maml.policy.parameters()).detach().clone()
        metrics = maml.train_step(tasks)
        assert metrics["optim/accepted"] == 1.0
        kls.append(metrics["optim/kl"])
        moved.append(parameters_to_vector(maml.policy.parameters()).detach() - before)
    assert not torch.equal(*moved)  # half of the rollouts give another curvature...
    assert 0 < kls[1] <= 0.01  # ...and the line search still holds the KL on all of them
    assert torch.cosine_similarity(*moved, dim=0) > 0.5


def test_vpg_train_step_with_adam_changes_the_parameters(tasks) -> None:
    maml = make_maml(outer_step="vpg", optimizer=Adam)
    before = {n: p.detach().clone() for n, p in maml.policy.named_parameters()}
    metrics = maml.train_step(tasks)
    assert {"meta_train/return_pre", "meta_train/return_post", "env_steps",
            "optim/kl"} <= metrics.keys()
    for name, p in maml.policy.named_parameters():
        assert not torch.equal(p.detach(), before[name]), name
        # Adam's first step moves each entry by about lr
        assert (p.detach() - before[name]).abs().max() <= 1.01e-3


def test_trpo_train_step_with_zero_advantages_skips_the_update(tasks) -> None:
    # tolerance 1.0: every episode terminates on its first step; one rollout per task
    sampler = Sampler(BatchedPointNav(tolerance=1.0), horizon=HORIZON, seed=0)
    maml = MAML(make_policy(), sampler, rollouts_per_task=1, outer_step="trpo")
    before = [p.detach().clone() for p in maml.policy.parameters()]
    metrics = maml.train_step(tasks)
    assert metrics["optim/accepted"] == 0.0
    assert all(torch.equal(p.detach(), b) for p, b in zip(maml.policy.parameters(), before,
                                                          strict=True))


def test_ppo_train_step_takes_several_clipped_adam_steps(tasks) -> None:
    maml = make_maml(outer_step="ppo", ppo_epochs=4, clip_eps=0.2, optimizer=Adam)
    before = {n: p.detach().clone() for n, p in maml.policy.named_parameters()}
    metrics = maml.train_step(tasks)
    assert {"loss/surrogate_before", "optim/kl", "meta_train/return_post"} <= metrics.keys()
    assert abs(metrics["loss/surrogate_before"]) < 1e-5  # mean normalised advantage
    assert metrics["optim/kl"] > 0
    moved = 0.0
    for name, p in maml.policy.named_parameters():
        step = (p.detach() - before[name]).abs().max().item()
        assert step <= 4 * 1.01e-3, name  # at most 4 Adam steps of about lr each
        moved = max(moved, step)
    assert moved > 1.5e-3  # more than one step's worth


def test_ppo_loss_is_the_clipped_surrogate(tasks, monkeypatch) -> None:
    seen: list[float | None] = []
    original = adaptation.surrogate_loss

    def spy(ratio, advantages, mask, clip_eps=None):
        seen.append(clip_eps)
        return original(ratio, advantages, mask, clip_eps)

    monkeypatch.setattr(adaptation, "surrogate_loss", spy)
    make_maml(outer_step="ppo", ppo_epochs=3, clip_eps=0.15, optimizer=Adam).train_step(tasks)
    assert seen == [0.15] * 4  # three epochs, then the KL of the step, from the same pass


# ------------------------------------------------------------------- step-size schedules
def test_inner_lrs_give_each_adaptation_step_its_own_rate(tasks) -> None:
    maml = make_maml(inner_lrs=[0.2, 0.05])
    policy = maml.exploration_policy(NUM_TASKS)
    batch = maml.sampler.sample(policy, tasks, ROLLOUTS)
    base = make_maml(inner_lr=1.0, later_lr_scale=1.0).adapt(policy, batch)
    for step, lr in [(0, 0.2), (1, 0.05), (4, 0.05)]:
        adapted = maml.adapt(PerTaskPolicy(policy.policy, policy.params, step=step), batch)
        for name, p in policy.params.items():
            torch.testing.assert_close(adapted.params[name] - p, lr * (base.params[name] - p),
                                       atol=1e-7, rtol=1e-5)


@pytest.mark.parametrize(("outer_step", "first_order"),
                         [("trpo", False), ("vpg", False), ("vpg", True)])
def test_learned_step_sizes_are_meta_trained_saved_and_used(tasks, outer_step: str,
                                                            first_order: bool) -> None:
    maml = make_maml(learn_inner_lr=True, inner_lr=0.3, outer_step=outer_step,
                     first_order=first_order, optimizer=Adam)
    assert maml.step_sizes is not None
    metrics = maml.train_step(tasks)
    if outer_step == "trpo":
        assert metrics["optim/accepted"] == 1.0
    sizes = maml.step_sizes.for_step(0)
    assert any(not torch.all(s == 0.3) for s in sizes.values()), "step sizes should be trained"
    # meta-test adaptation uses them, entry by entry: p - size * grad
    policy = maml.exploration_policy(NUM_TASKS)
    batch = maml.sampler.sample(policy, tasks, ROLLOUTS)
    unit = make_maml(maml.policy, inner_lr=1.0, later_lr_scale=1.0).adapt(policy, batch)
    adapted = maml.adapt(policy, batch)
    later = maml.adapt(PerTaskPolicy(policy.policy, policy.params, step=3), batch)
    for name, p in policy.params.items():
        expected = p + sizes[name].detach() * (unit.params[name] - p)
        torch.testing.assert_close(adapted.params[name], expected, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(later.params[name], expected, atol=1e-6, rtol=1e-5)
    state = copy.deepcopy(maml.state_dict())
    fresh = make_maml(make_policy(seed=1), learn_inner_lr=True, outer_step=outer_step,
                      optimizer=Adam)
    fresh.load_state_dict(state)
    assert fresh.step_sizes is not None
    for name, s in fresh.step_sizes.for_step(0).items():
        assert torch.equal(s, sizes[name])


# ---------------------------------------------------------------------------- adaptation
def test_adapt_increments_step_and_adapts_each_task_differently(tasks) -> None:
    maml = make_maml()
    policy = maml.exploration_policy(NUM_TASKS)
    assert policy.step == 0
    adapted = maml.adapt(policy, maml.sampler.sample(policy, tasks, ROLLOUTS))
    assert adapted.step == 1
    for name, p in maml.policy.named_parameters():
        assert adapted.params[name].shape == (NUM_TASKS, *p.shape)
        assert not adapted.params[name].requires_grad
        for i in range(NUM_TASKS):
            assert not torch.equal(adapted.params[name][i], p.detach())
    assert any(not torch.allclose(a[0], a[1]) for a in adapted.params.values())
    again = maml.adapt(adapted, maml.sampler.sample(adapted, tasks, ROLLOUTS))
    assert again.step == 2


def test_adapt_uses_the_later_step_size_after_the_first_step(tasks) -> None:
    maml = make_maml(inner_lr=0.1, later_lr_scale=0.5)
    policy = maml.exploration_policy(NUM_TASKS)
    batch = maml.sampler.sample(policy, tasks, ROLLOUTS)
    first = maml.adapt(policy, batch)
    later = maml.adapt(PerTaskPolicy(policy.policy, policy.params, step=1), batch)
    for name, p in policy.params.items():
        torch.testing.assert_close(later.params[name] - p, 0.5 * (first.params[name] - p),
                                   atol=1e-7, rtol=1e-5)


def test_state_dict_round_trips_policy_and_optimizer(tasks) -> None:
    source = make_maml(make_policy(seed=0), seed=0, outer_step="vpg", optimizer=Adam)
    source.train_step(tasks)
    target = make_maml(make_policy(seed=1), seed=0, outer_step="vpg", optimizer=Adam)
    target.load_state_dict(copy.deepcopy(source.state_dict()))
    for (name, p), q in zip(source.policy.named_parameters(), target.policy.parameters(),
                            strict=True):
        assert torch.equal(p, q), name
    # with the same sampler state, both continue identically (Adam's moments came along)
    target.sampler.load_state_dict(copy.deepcopy(source.sampler.state_dict()))
    source.train_step(tasks)
    target.train_step(tasks)
    for p, q in zip(source.policy.parameters(), target.policy.parameters(), strict=True):
        assert torch.equal(p, q)
    fresh = make_maml(make_policy(seed=1), seed=0, outer_step="vpg", optimizer=Adam)
    fresh.load_state_dict({"policy": copy.deepcopy(source.state_dict()["policy"]),
                           "optimizer": fresh.optimizer.state_dict()})
    fresh.sampler.load_state_dict(copy.deepcopy(source.sampler.state_dict()))
    source.train_step(tasks)
    fresh.train_step(tasks)
    assert any(not torch.equal(p, q) for p, q in zip(source.policy.parameters(),
                                                     fresh.policy.parameters(), strict=True))


# ------------------------------------------------------------------------------ validation
@pytest.mark.parametrize(("kwargs", "name"), [
    ({"outer_step": "nope"}, "outer_step"),
    ({"inner_lr": 0.0}, "inner_lr"),
    ({"gamma": 1.5}, "gamma"),
    ({"gae_lambda": 0.0}, "gae_lambda"),
    ({"max_kl": -1.0}, "max_kl"),
    ({"outer_step": "vpg"}, "optimizer"),
    ({"outer_step": "ppo"}, "optimizer"),
    ({"ppo_epochs": 0}, "ppo_epochs"),
    ({"clip_eps": 1.5}, "clip_eps"),
    ({"inner_lrs": [0.1, 0.0]}, "inner_lrs"),
    ({"curvature": "exact"}, "curvature"),
    ({"cg_subsample": 0.0}, "cg_subsample"),
    ({"cg_subsample": 1.5}, "cg_subsample"),
    ({"cg_subsample": 0.5, "curvature": "autograd"}, "cg_subsample"),
    ({"cg_subsample": 0.5, "inner_steps": 2}, "cg_subsample"),
    ({"cg_subsample": 0.5, "learn_inner_lr": True}, "cg_subsample"),
])
def test_bad_constructor_values_raise_value_error_naming_the_parameter(kwargs, name) -> None:
    with pytest.raises(ValueError, match=name):
        make_maml(**kwargs)


# ------------------------------------------------------------------------------- meta-test
def test_meta_test_runs_before_training_and_returns_the_adaptation_curve(tasks) -> None:
    maml = make_maml()
    steps = 2
    curve = meta_test(maml, maml.sampler, tasks, steps=steps, rollouts=ROLLOUTS)
    assert isinstance(curve, AdaptationCurve)
    assert curve.returns.shape == (steps + 1, NUM_TASKS)
    assert np.all(np.isfinite(curve.returns))
    assert np.all(curve.returns < 0)  # point navigation rewards are negative distances
    assert curve.env_steps == (steps + 1) * NUM_TASKS * ROLLOUTS * HORIZON
    assert curve.mean.shape == curve.std.shape == (steps + 1,)

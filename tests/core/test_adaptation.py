"""The shared adaptation pieces: step-size schedules, inner losses, outer objectives, metrics,
and the gradient learners' adaptation rule, outer update and checkpoints."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from metarl_cli.core.adaptation import (
    LearnedStepSizes,
    StepSchedule,
    adaptation_metrics,
    inner_step,
    likelihood_ratio,
    mean_kl,
    pg_losses,
    surrogate_and_kl,
    surrogate_loss,
    task_means,
)
from metarl_cli.core.functional import expand_params, task_distribution
from metarl_cli.core.gradient_learner import (
    AdaptationRule,
    TrustRegion,
    check_curvature,
    load_parts_state_dict,
    outer_update,
    parts_state_dict,
)
from metarl_cli.core.optim import hessian_vector_product
from metarl_cli.core.sampler import Sampler
from metarl_cli.core.types import EpisodeBatch
from metarl_cli.envs.point_nav import BatchedPointNav
from metarl_cli.policies.mlp import GaussianMLPPolicy, mlp_policy

# one task, one rollout, three steps (the third is after the episode ended)
MASK = torch.tensor([[[1.0, 1.0, 0.0]]])
ADV = torch.tensor([[[1.0, -2.0, 5.0]]])


def test_schedule_first_then_scaled_and_explicit_list_repeats_its_last_rate() -> None:
    schedule = StepSchedule(0.5, later_lr_scale=0.5)
    assert [schedule(k) for k in range(4)] == [0.5, 0.25, 0.25, 0.25]
    listed = StepSchedule(0.5, 0.5, inner_lrs=(0.3, 0.2, 0.1))
    assert [listed(k) for k in range(5)] == [0.3, 0.2, 0.1, 0.1, 0.1]


@pytest.mark.parametrize(("kwargs", "name"), [
    ({"inner_lr": 0.0}, "inner_lr"), ({"inner_lr": 0.1, "later_lr_scale": -1.0}, "later_lr_scale"),
    ({"inner_lr": 0.1, "inner_lrs": (0.1, 0.0)}, "inner_lrs"),
    ({"inner_lr": 0.1, "inner_lrs": ()}, "inner_lrs"),
])
def test_schedule_refuses_bad_rates(kwargs, name) -> None:
    with pytest.raises(ValueError, match=name):
        StepSchedule(**kwargs)


def test_learned_step_sizes_start_from_the_schedule_and_reuse_the_last_step() -> None:
    policy = GaussianMLPPolicy(2, 2, [3], "Tanh", 1.0)
    sizes = LearnedStepSizes(policy, steps=2, schedule=StepSchedule(0.4, 0.5))
    names = [n for n, _ in policy.named_parameters()]
    assert list(sizes.for_step(0)) == names
    for name, p in policy.named_parameters():
        assert sizes.for_step(0)[name].shape == p.shape
        assert torch.all(sizes.for_step(0)[name] == 0.4)
        assert torch.all(sizes.for_step(1)[name] == 0.2)
        assert sizes.for_step(5)[name] is sizes.for_step(1)[name]
    assert len(list(sizes.parameters())) == 2 * len(names)


def test_task_means_average_over_valid_steps_only() -> None:
    x = torch.tensor([[[1.0, 3.0, 100.0]], [[2.0, 2.0, 2.0]]])
    mask = torch.tensor([[[1.0, 1.0, 0.0]], [[1.0, 1.0, 1.0]]])
    torch.testing.assert_close(task_means(x, mask), torch.tensor([2.0, 2.0]))


def test_log_likelihood_loss_by_hand() -> None:
    log_probs = torch.tensor([[[-1.0, -0.25, -7.0]]])
    expected = -((-1.0 * 1.0) + (-0.25 * -2.0)) / 2  # = 0.25
    torch.testing.assert_close(pg_losses(log_probs, ADV, MASK), torch.tensor([expected]))


def test_lvc_loss_by_hand_value_and_gradient() -> None:
    log_probs = torch.tensor([[[-1.0, -0.25, -7.0]]], requires_grad=True)
    old = torch.tensor([[[-1.5, -0.25, -7.0]]])
    loss = pg_losses(log_probs, ADV, MASK, "lvc", old)
    expected = -(math.exp(0.5) * 1.0 + 1.0 * -2.0) / 2
    torch.testing.assert_close(loss, torch.tensor([expected]))
    # without old log-probs: ratio 1 in value, gradient = the log-likelihood gradient
    fresh = pg_losses(log_probs, ADV, MASK, "lvc")
    torch.testing.assert_close(fresh, torch.tensor([-(1.0 - 2.0) / 2]))
    (grad,) = torch.autograd.grad(fresh.sum(), log_probs)
    torch.testing.assert_close(grad, torch.tensor([[[-0.5, 1.0, 0.0]]]))


def test_unknown_estimator_is_refused() -> None:
    with pytest.raises(ValueError, match="inner_estimator"):
        pg_losses(torch.zeros(1, 1, 3), ADV, MASK, "dice")


def test_surrogate_and_ppo_clipped_surrogate_by_hand() -> None:
    ratio = torch.tensor([[[0.5, 1.5, 1.0, 1.3]]])
    adv = torch.tensor([[[1.0, -1.0, 2.0, 1.0]]])
    mask = torch.ones(1, 1, 4)
    # unclipped: (0.5 - 1.5 + 2 + 1.3) / 4
    torch.testing.assert_close(surrogate_loss(ratio, adv, mask), torch.tensor(-2.3 / 4))
    # clip 0.2: min(0.5, 0.8) = 0.5; min(-1.5, -1.2) = -1.5; 2; min(1.3, 1.2) = 1.2
    torch.testing.assert_close(surrogate_loss(ratio, adv, mask, clip_eps=0.2),
                               torch.tensor(-(0.5 - 1.5 + 2.0 + 1.2) / 4))


def test_adaptation_metrics_in_sampling_order() -> None:
    def batch(reward: float, steps: int) -> EpisodeBatch:
        mask = torch.zeros(1, 2, 3)
        mask[..., :steps] = 1.0
        return EpisodeBatch([None], torch.zeros(1, 2, 3, 1), torch.zeros(1, 2, 3, 1),
                            torch.full((1, 2, 3), reward), mask, torch.zeros(1, 2, 3))

    two = adaptation_metrics([batch(-2.0, 3), batch(-1.0, 2)])
    assert two == {"meta_train/return_pre": -6.0, "meta_train/return_post": -2.0,
                   "meta_train/adaptation_gain": 4.0, "env_steps": 10.0}
    three = adaptation_metrics([batch(-2.0, 3), batch(-1.0, 3), batch(0.0, 3)])
    assert three["meta_train/return_step_1"] == -3.0
    assert three["env_steps"] == 18.0


# ----------------------------------------------------------------------- shared learner pieces
def test_schedule_keeps_a_list_of_rates_as_a_tuple() -> None:
    schedule = StepSchedule(0.5, 0.5, inner_lrs=[0.3, 0.2])
    assert schedule.inner_lrs == (0.3, 0.2) and schedule(3) == 0.2


def _point_nav_rule(**kwargs) -> tuple[AdaptationRule, Sampler, list]:
    env = BatchedPointNav()
    torch.manual_seed(0)
    policy = mlp_policy(env.observation_space, env.action_space, [4], activation="Tanh",
                        init_std=0.5)
    rule = AdaptationRule(policy, StepSchedule(0.3), 0.99, 1.0, **kwargs)
    return rule, Sampler(env, horizon=4, seed=0), env.sample_tasks(2, np.random.default_rng(7))


@pytest.mark.parametrize("clip_eps", [None, 0.2])
def test_surrogate_and_kl_from_one_pass_equal_the_two_functions(clip_eps) -> None:
    rule, sampler, tasks = _point_nav_rule()
    data = rule.sample_and_adapt(sampler, tasks, rollouts=3, steps=1)
    assert data.post is not None and data.post_dist is not None and \
        data.post_advantages is not None
    shifted = {n: p + 0.05 for n, p in rule.adapted_params(data, False)[-1].items()}
    loss, kl = surrogate_and_kl(rule.policy, shifted, data.post, data.post_dist,
                                data.post_advantages, clip_eps)
    ratio = likelihood_ratio(rule.policy, shifted, data.post, data.post_dist)
    assert torch.equal(loss, surrogate_loss(ratio, data.post_advantages, data.post.mask,
                                            clip_eps))
    assert torch.equal(kl, mean_kl(rule.policy, shifted, data.post, data.post_dist))
    assert kl > 0


@pytest.mark.parametrize("second_order", [True, False])
def test_rule_kl_curvature_equals_autograd_product_of_the_outer_kl(second_order) -> None:
    rule, sampler, tasks = _point_nav_rule()
    data = rule.sample_and_adapt(sampler, tasks, rollouts=3, steps=1)
    assert data.post is not None and data.post_dist is not None
    params = list(rule.policy.parameters())
    kl = mean_kl(rule.policy, rule.adapted_params(data, second_order)[-1], data.post,
                 data.post_dist)
    full = hessian_vector_product(kl, params)
    build = rule.kl_curvature(data, second_order)
    assert build is not None
    fast = build()
    gen = torch.Generator().manual_seed(1)
    for _ in range(2):
        v = torch.randn(sum(p.numel() for p in params), generator=gen)
        expected = full(v)
        assert expected.abs().max() > 1e-3
        torch.testing.assert_close(fast(v), expected, rtol=1e-4, atol=1e-5 * expected.abs().max())


def test_rule_kl_curvature_on_a_subsample_uses_its_first_rollouts_at_the_full_point() -> None:
    rule, sampler, tasks = _point_nav_rule()
    data = rule.sample_and_adapt(sampler, tasks, rollouts=4, steps=1)
    assert data.post is not None
    params = list(rule.policy.parameters())
    half = [b.first_rollouts(2) for b in (data.batches[0], data.post)]
    # theta -> the adapted params' values plus the change of a step on the first 2 rollouts
    step = inner_step(rule.policy, expand_params(rule.policy, len(tasks)), half[0],
                      data.advantages[0][:, :2], rule.step_size(0), create_graph=True)
    point = data.acting[-1].params
    shifted = {n: point[n] + step[n] - step[n].detach() for n in point}
    with torch.no_grad():
        old = task_distribution(rule.policy, point, half[1].obs)
    full = hessian_vector_product(mean_kl(rule.policy, shifted, half[1], old), params)
    build = rule.kl_curvature(data, True, subsample=0.5)
    whole = rule.kl_curvature(data, True)
    assert build is not None and whole is not None
    fast, all_rollouts = build(), whole()
    v = torch.randn(sum(p.numel() for p in params), generator=torch.Generator().manual_seed(1))
    expected = full(v)
    torch.testing.assert_close(fast(v), expected, rtol=1e-4, atol=1e-5 * expected.abs().max())
    assert (all_rollouts(v) - expected).abs().max() > 1e-3 * expected.abs().max()


def test_trust_region_refuses_a_curvature_it_cannot_subsample() -> None:
    region = TrustRegion(0.01, 10, 1e-5, 15, 0.8, cg_subsample=0.5)
    check_curvature("gradient_step", region, one_plain_step=True)
    with pytest.raises(ValueError, match="cg_subsample"):
        check_curvature("autograd", region, one_plain_step=True)
    with pytest.raises(ValueError, match="cg_subsample"):
        check_curvature("gradient_step", region, one_plain_step=False)
    with pytest.raises(ValueError, match="curvature"):
        check_curvature("exact", region, one_plain_step=True)
    with pytest.raises(ValueError, match="cg_subsample"):
        TrustRegion(0.01, 10, 1e-5, 15, 0.8, cg_subsample=0.0)


def test_rule_kl_curvature_is_none_where_the_cheap_form_is_not_exact() -> None:
    rule, sampler, tasks = _point_nav_rule()
    assert rule.kl_curvature(rule.sample_and_adapt(sampler, tasks, 2, steps=2), True) is None
    learned = AdaptationRule(rule.policy, rule.schedule, 0.99, 1.0,
                             learned=LearnedStepSizes(rule.policy, 1, rule.schedule))
    assert learned.kl_curvature(learned.sample_and_adapt(sampler, tasks, 2, 1), True) is None


def test_rule_refuses_bad_discounts_and_estimators() -> None:
    policy = GaussianMLPPolicy(2, 2, [], "Tanh", 1.0)
    with pytest.raises(ValueError, match="gae_lambda"):
        AdaptationRule(policy, StepSchedule(0.1), 0.99, 0.0)
    with pytest.raises(ValueError, match="inner_estimator"):
        AdaptationRule(policy, StepSchedule(0.1), 0.99, 1.0, estimator="dice")


@pytest.mark.parametrize(("kwargs", "name"), [
    ({"max_kl": 0.0}, "max_kl"), ({"cg_iters": 0}, "cg_iters"),
    ({"line_search_steps": 0}, "line_search_steps"), ({"backtrack_ratio": 1.5}, "backtrack_ratio"),
])
def test_trust_region_refuses_bad_settings(kwargs, name) -> None:
    settings = {"max_kl": 0.01, "cg_iters": 10, "cg_damping": 1e-5, "line_search_steps": 15,
                "backtrack_ratio": 0.8} | kwargs
    with pytest.raises(ValueError, match=name):
        TrustRegion(**settings)


def test_outer_update_with_an_optimizer_takes_its_epochs_and_reports_the_first_loss() -> None:
    x = torch.tensor([1.0, -2.0], requires_grad=True)
    optimizer = torch.optim.SGD([x], lr=0.25)
    metrics = outer_update([x], lambda _: ((x**2).sum(), x.detach().abs().sum()), optimizer,
                           TrustRegion(0.01, 10, 1e-5, 15, 0.8), epochs=2)
    assert metrics == {"loss/surrogate_before": 5.0, "optim/kl": 0.75}  # x halves each epoch
    torch.testing.assert_close(x.detach(), torch.tensor([0.25, -0.5]))


def test_parts_state_dict_leaves_out_absent_parts_and_loads_back() -> None:
    source, target = torch.nn.Linear(2, 1), torch.nn.Linear(2, 1)
    state = parts_state_dict(policy=source, optimizer=None)
    assert list(state) == ["policy"]
    load_parts_state_dict(state, policy=target, optimizer=None)
    assert all(torch.equal(p, q) for p, q in zip(source.parameters(), target.parameters(),
                                                 strict=True))

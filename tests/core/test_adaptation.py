"""The shared adaptation pieces: step-size schedules, inner losses, outer objectives, metrics."""

from __future__ import annotations

import math

import pytest
import torch

from metarl_cli.core.adaptation import (
    LearnedStepSizes,
    StepSchedule,
    adaptation_metrics,
    pg_losses,
    surrogate_loss,
    task_means,
)
from metarl_cli.core.types import EpisodeBatch
from metarl_cli.policies.mlp import GaussianMLPPolicy

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

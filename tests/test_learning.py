"""Learning test: a short MAML-TRPO training on 2D navigation makes adaptation pay off."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from omegaconf import DictConfig

from metarl_cli.commands.experiment import build_experiment, run_meta_test


@pytest.mark.slow
def test_maml_learns_to_adapt_on_point_nav(compose_config: Callable[..., DictConfig]) -> None:
    cfg = compose_config("meta_batch_size=10", "algo.rollouts_per_task=10", "eval.num_tasks=20",
                         "eval.rollouts=10", "eval.steps=1", "algo.max_kl=0.02")
    exp = build_experiment(cfg)
    before = run_meta_test(exp, cfg, 0).mean
    for _ in range(15):
        exp.learner.train_step(exp.task_sets.train_batch(cfg.meta_batch_size))
    after = run_meta_test(exp, cfg, 15).mean
    # one adaptation step now gains clearly more than it did before training,
    # and the adapted policy is clearly better than the untrained adapted policy
    assert after[1] - after[0] > (before[1] - before[0]) + 10.0, (before, after)
    assert after[1] > before[1] + 10.0, (before, after)

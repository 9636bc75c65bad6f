"""The experiment: task family, policy, sampler and learner, built from one config."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from metarl_cli.commands.preflight import check_settings
from metarl_cli.core.allocator import keep_freed_memory
from metarl_cli.core.build import ConfigError, accepts, build
from metarl_cli.core.evaluation import AdaptationCurve, MetaLearner, meta_test
from metarl_cli.core.sampler import Sampler
from metarl_cli.core.tasks import TaskSets


@dataclass
class Experiment:
    """Everything a run needs, built from one config."""

    learner: MetaLearner
    sampler: Sampler
    task_sets: TaskSets
    family: Any


def build_experiment(cfg: DictConfig) -> Experiment:
    check_settings(cfg)
    if cfg.torch_threads is not None:
        torch.set_num_threads(int(cfg.torch_threads))
    if OmegaConf.select(cfg, "keep_freed_memory", default=True):  # runs saved before the key
        keep_freed_memory()
    torch.manual_seed(cfg.seed)
    family = build(cfg.env.family, "env.family")
    try:
        task_sets = TaskSets(family, cfg.task_seed, cfg.env.num_train_tasks,
                             cfg.env.num_test_tasks, legacy_task_seed(cfg))
        task_sets.test_tasks(cfg.eval.num_tasks)
    except ValueError as error:
        raise ConfigError(f"env: {error}") from error
    policy = build(cfg.model, "model", observation_space=family.observation_space,
                   action_space=family.action_space).to(cfg.device)
    sampler = Sampler(family, cfg.env.horizon, cfg.seed, cfg.device)
    optimizer = build(cfg.optimizer, "optimizer")
    # a learner that wants the fixed training tasks up front (PEARL's initial data) gets them
    tasks = {"train_tasks": task_sets.train_tasks} if accepts(cfg.algo, "algo", "train_tasks") \
        else {}
    learner = build(cfg.algo, "algo", policy=policy, sampler=sampler, optimizer=optimizer,
                    **tasks)
    if getattr(learner, "adapts_per_episode", False) and step_budget(cfg) is not None:
        raise ConfigError(f"eval.step_budget: {type(learner).__name__} adapts one episode at a "
                          "time, so episodes are not collected by a step budget; leave "
                          "eval.step_budget null")
    return Experiment(learner, sampler, task_sets, family)


def run_meta_test(exp: Experiment, cfg: DictConfig, iteration: int) -> AdaptationCurve:
    """Meta-test on the held-out tasks with generators of its own, so it never perturbs
    training and gives the same numbers for the same checkpoint."""
    sampler = Sampler(exp.family, cfg.env.horizon, cfg.seed + 1_000_003 * (iteration + 1),
                      cfg.device)
    return meta_test(exp.learner, sampler, exp.task_sets.test_tasks(cfg.eval.num_tasks),
                     cfg.eval.steps, cfg.eval.rollouts, step_budget(cfg))


def step_budget(cfg: DictConfig) -> int | None:
    """``eval.step_budget``; null for runs saved before the key existed."""
    return OmegaConf.select(cfg, "eval.step_budget", default=None)


def legacy_task_seed(cfg: DictConfig) -> int | None:
    """``eval.legacy_task_seed``; null for runs saved before the key existed."""
    return OmegaConf.select(cfg, "eval.legacy_task_seed", default=None)


def meta_test_record(cfg: DictConfig, curve: AdaptationCurve) -> dict[str, Any]:
    """The protocol and result of a meta-test, as summary.json and the eval records hold it."""
    return {"num_tasks": cfg.eval.num_tasks, "rollouts": cfg.eval.rollouts,
            "step_budget": step_budget(cfg), "legacy_task_seed": legacy_task_seed(cfg),
            "return_mean": curve.mean.tolist(), "return_std": curve.std.tolist()}

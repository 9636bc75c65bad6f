"""``metarl train``: meta-train a learner, meta-testing on held-out tasks as it goes.

The composition root: the only code that reads the config. It builds the task family, policy,
sampler and learner, then loops meta-iterations, meta-tests every ``eval_every`` iterations
(and before training and at the end), logs and checkpoints.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from metarl_cli.core.build import ConfigError, build
from metarl_cli.core.checkpoint import save_checkpoint
from metarl_cli.core.evaluation import AdaptationCurve, MetaLearner, meta_test
from metarl_cli.core.logging import RunLogger
from metarl_cli.core.paths import CONFIG_DIR
from metarl_cli.core.sampler import Sampler
from metarl_cli.core.tasks import TaskSets


@dataclass
class Experiment:
    """Everything a run needs, built from one config."""

    learner: MetaLearner
    sampler: Sampler
    task_sets: TaskSets
    family: Any


def check_settings(cfg: DictConfig) -> None:
    """Refuse impossible top-level values before anything is built."""
    for key in ("eval_every", "checkpoint_every", "meta_batch_size",
                "eval.num_tasks", "eval.rollouts", "env.horizon"):
        value = OmegaConf.select(cfg, key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"{key}: expected an integer >= 1, got {value!r}")
    for key in ("iterations", "eval.steps"):
        value = OmegaConf.select(cfg, key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ConfigError(f"{key}: expected an integer >= 0, got {value!r}")
    for key in ("seed", "task_seed"):
        if not isinstance(cfg[key], int) or cfg[key] < 0:
            raise ConfigError(f"{key}: expected an integer >= 0, got {cfg[key]!r}")
    if cfg.device not in ("cpu", "cuda") and not str(cfg.device).startswith("cuda:"):
        raise ConfigError(f"device: expected cpu or cuda, got {cfg.device!r}")
    if str(cfg.device).startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("device: CUDA is not available on this machine; use device=cpu")


def build_experiment(cfg: DictConfig) -> Experiment:
    check_settings(cfg)
    if cfg.torch_threads is not None:
        torch.set_num_threads(int(cfg.torch_threads))
    torch.manual_seed(cfg.seed)
    family = build(cfg.env.family, "env.family")
    try:
        task_sets = TaskSets(family, cfg.task_seed, cfg.env.num_train_tasks,
                             cfg.env.num_test_tasks)
        task_sets.test_tasks(cfg.eval.num_tasks)
    except ValueError as error:
        raise ConfigError(f"env: {error}") from error
    policy = build(cfg.model, "model", observation_space=family.observation_space,
                   action_space=family.action_space).to(cfg.device)
    sampler = Sampler(family, cfg.env.horizon, cfg.seed, cfg.device)
    optimizer = build(cfg.optimizer, "optimizer")
    learner = build(cfg.algo, "algo", policy=policy, sampler=sampler, optimizer=optimizer)
    return Experiment(learner, sampler, task_sets, family)


def run_meta_test(exp: Experiment, cfg: DictConfig, iteration: int) -> AdaptationCurve:
    """Meta-test on the held-out tasks with generators of its own, so it never perturbs
    training and gives the same numbers for the same checkpoint."""
    sampler = Sampler(exp.family, cfg.env.horizon, cfg.seed + 1_000_003 * (iteration + 1),
                      cfg.device)
    return meta_test(exp.learner, sampler, exp.task_sets.test_tasks(cfg.eval.num_tasks),
                     cfg.eval.steps, cfg.eval.rollouts)


def checkpoint_state(exp: Experiment, iteration: int, env_steps: int) -> dict[str, Any]:
    return {"iteration": iteration, "env_steps": env_steps, "learner": exp.learner.state_dict(),
            "sampler": exp.sampler.state_dict(), "task_sets": exp.task_sets.state_dict(),
            "torch_rng": torch.get_rng_state()}


def format_curve(curve: AdaptationCurve) -> str:
    rows = ["step  mean return   std (over tasks)"]
    rows += [f"{k:>4}  {m:>11.2f}   {s:.2f}" for k, (m, s) in
             enumerate(zip(curve.mean, curve.std, strict=True))]
    return "\n".join(rows)


def hparams(cfg: DictConfig) -> dict[str, Any]:
    """Flat scalar view of the config for TensorBoard's HPARAMS tab."""
    choices = HydraConfig.get().runtime.choices
    flat: dict[str, Any] = {f"{g}": str(c) for g, c in choices.items() if not g.startswith("hydra")}
    for group in ("algo", "model", "optimizer"):
        for key, value in OmegaConf.to_container(cfg[group], resolve=True).items():
            if not key.startswith("_"):
                flat[f"{group}.{key}"] = value if isinstance(value, int | float | str | bool) \
                    else str(value)
    flat |= {k: cfg[k] for k in ("seed", "task_seed", "iterations", "meta_batch_size")}
    return flat


def train(cfg: DictConfig, run_dir: Path) -> AdaptationCurve:
    exp = build_experiment(cfg)
    logger: RunLogger = build(cfg.logger, "logger", run_dir=run_dir)
    env_steps, started = 0, time.perf_counter()
    curve = run_meta_test(exp, cfg, 0)
    logger.log_meta_test(0, curve, env_steps)
    print(f"meta-test before training: {' '.join(f'{m:.1f}' for m in curve.mean)}")
    for iteration in range(1, cfg.iterations + 1):
        tick = time.perf_counter()
        metrics = exp.learner.train_step(exp.task_sets.train_batch(cfg.meta_batch_size))
        seconds = time.perf_counter() - tick
        steps = int(metrics.pop("env_steps"))
        env_steps += steps
        metrics |= {"time/iteration_s": seconds, "perf/env_steps_per_s": steps / seconds}
        logger.log_iteration(iteration, metrics, env_steps)
        print(f"iter {iteration:>4}/{cfg.iterations}  "
              f"return pre {metrics['meta_train/return_pre']:8.2f}  "
              f"post {metrics['meta_train/return_post']:8.2f}  "
              f"kl {metrics.get('optim/kl', float('nan')):.4f}  "
              f"{steps / seconds:9,.0f} steps/s  {seconds:5.1f}s", flush=True)
        if iteration % cfg.eval_every == 0 or iteration == cfg.iterations:
            curve = run_meta_test(exp, cfg, iteration)
            logger.log_meta_test(iteration, curve, env_steps)
            print(f"meta-test @ {iteration}: {' '.join(f'{m:.1f}' for m in curve.mean)}")
        state = checkpoint_state(exp, iteration, env_steps)
        save_checkpoint(state, run_dir / "checkpoints" / "latest.pt")
        if iteration % cfg.checkpoint_every == 0:
            save_checkpoint(state, run_dir / "checkpoints" / f"iter_{iteration:06d}.pt")
    summary = {
        "algo": HydraConfig.get().runtime.choices.get("algo"),
        "env": HydraConfig.get().runtime.choices.get("env"),
        "env_source": cfg.env.source,
        "seed": cfg.seed, "task_seed": cfg.task_seed, "iterations": cfg.iterations,
        "env_steps": env_steps, "wall_clock_s": time.perf_counter() - started,
        "meta_test": {"num_tasks": cfg.eval.num_tasks, "rollouts": cfg.eval.rollouts,
                      "return_mean": curve.mean.tolist(), "return_std": curve.std.tolist()},
    }
    logger.finish(summary, hparams(cfg), curve)
    return curve


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="train")
def main(cfg: DictConfig) -> None:
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        curve = train(cfg, run_dir)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    print("\nfinal meta-test on held-out tasks (return after k adaptation steps):")
    print(format_curve(curve))
    print(f"run_dir: {run_dir}")

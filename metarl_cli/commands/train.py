"""``metarl train``: meta-train a learner, meta-testing on held-out tasks as it goes.

The composition root: the only code that reads the config. It builds the task family, policy,
sampler and learner, then loops meta-iterations, meta-tests every ``eval_every`` iterations
(and before training and at the end), logs and checkpoints.

What it promises when things go wrong (docs/RELIABILITY.md lists each promise and its test):
bad input is refused before anything runs, in one line naming the key (exit code 2), leaving
no run directory behind; ``resume=<run dir>`` / ``resume=auto`` continues a run in its own
directory from its newest good checkpoint and ends with the numbers of an uninterrupted run;
SIGINT/SIGTERM stop after the current iteration with a checkpoint; a NaN or inf stops the run
naming the iteration and the quantity; in a multirun a failing job is reported and the other
jobs still run.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import re
import signal
import sys
import threading
import time
import traceback
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.errors import HydraException, MissingConfigException
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from tqdm import tqdm

from metarl_cli.core.build import ConfigError, build
from metarl_cli.core.checkpoint import LATEST, Checkpoint, latest_checkpoint, save_checkpoint
from metarl_cli.core.evaluation import AdaptationCurve, MetaLearner, meta_test
from metarl_cli.core.logging import LogPoint, RunLogger
from metarl_cli.core.paths import CONFIG_DIR
from metarl_cli.core.progress import console_progress, run_summary
from metarl_cli.core.sampler import Sampler
from metarl_cli.core.tasks import TaskSets

# Keys a resumed run may change: they alter neither its numbers nor its meaning.
RESUMABLE_KEYS = ("iterations", "torch_threads", "progress")
EXIT_BAD_INPUT = 2
EXIT_FAULT = 1
STEP_SIZE_HINT = "lower the step sizes (algo.inner_lr, algo.max_kl, optimizer.lr)"


class RunFault(RuntimeError):
    """A started run that cannot go on (NaN/inf, a failed checkpoint write): one line."""


@dataclass
class Experiment:
    """Everything a run needs, built from one config."""

    learner: MetaLearner
    sampler: Sampler
    task_sets: TaskSets
    family: Any


@dataclass
class Outcome:
    curve: AdaptationCurve
    iteration: int
    stopped_by: int | None = None  # the signal that stopped the run early


@dataclass
class _Session:
    """One ``metarl train`` process: its flags and, in a multirun, the jobs that failed."""

    verbose: bool = False
    jobs: int = 0
    failed: list[str] = field(default_factory=list)


SESSION = _Session()


# --- bad input: refused before anything runs ---
def check_settings(cfg: DictConfig) -> None:
    """Refuse impossible top-level values before anything is built."""
    try:
        OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as error:
        key = getattr(error, "full_key", None) or "config"
        raise ConfigError(f"{key}: {_first_line(error)}") from error
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
        if not isinstance(cfg[key], int) or isinstance(cfg[key], bool) or cfg[key] < 0:
            raise ConfigError(f"{key}: expected an integer >= 0, got {cfg[key]!r}")
    threads = cfg.get("torch_threads")
    if threads is not None and (not isinstance(threads, int) or isinstance(threads, bool)
                                or threads < 1):
        raise ConfigError(f"torch_threads: expected an integer >= 1 or null, got {threads!r}")
    lr = OmegaConf.select(cfg, "optimizer.lr")
    if lr is not None and (not isinstance(lr, int | float) or isinstance(lr, bool) or lr <= 0):
        raise ConfigError(f"optimizer.lr: expected a learning rate > 0, got {lr!r}")
    if cfg.device not in ("cpu", "cuda") and not str(cfg.device).startswith("cuda:"):
        raise ConfigError(f"device: expected cpu or cuda, got {cfg.device!r}")
    if str(cfg.device).startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("device: CUDA is not available on this machine; use device=cpu")


def compose_checked(overrides: list[str]) -> DictConfig:
    """Compose the train config as Hydra will, turning its errors into one-line ConfigErrors."""
    try:
        with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
            return compose("train", overrides=overrides)
    except MissingConfigException as error:
        missing = str(error.missing_cfg_file or "")
        group, _, choice = missing.rpartition("/")
        if group and error.options:
            raise ConfigError(f"{group}: unknown choice {choice!r} (there is no {missing}.yaml); "
                              f"choose one of {', '.join(error.options)}") from error
        raise ConfigError(" ".join(str(error).split("\n")[0].split())) from error
    except HydraException as error:
        unknown = re.match(r"Could not override '([^']+)'", str(error))
        if unknown:
            raise ConfigError(_unknown_key(unknown.group(1), overrides)) from error
        ambiguous = re.match(r"Ambiguous value for argument '([^=]+)=([^']*)'", str(error))
        if ambiguous:
            key, value = ambiguous.groups()
            raise ConfigError(f"{key}: ambiguous value {value}; write {key}=[{value}] for a list, "
                              f"{key}='{value}' for a string, or add -m to sweep") from error
        lines = [line.strip() for line in str(error).splitlines() if line.strip()
                 and not line.startswith("See https://")]
        raise ConfigError("; ".join(lines) or type(error).__name__) from error


def _unknown_key(key: str, overrides: list[str]) -> str:
    """The message for an override of a key the config lacks, listing the keys it has."""
    others = [o for o in overrides if override_key(o) != key]
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=others)
    parent, _, name = key.rpartition(".")
    node = OmegaConf.select(cfg, parent) if parent else cfg
    if not isinstance(node, DictConfig):
        return f"{key}: unknown key ({parent or 'the config'} has no key {name!r})"
    keys = [k for k in node if not str(k).startswith("_")]
    where = f"keys of {parent}" if parent else "top-level keys"
    return f"{key}: unknown key; valid {where}: {', '.join(map(str, keys))}"


def job_overrides(overrides: list[Override], multirun: bool) -> list[list[str]] | None:
    """The task overrides of every job this command line will run (None: cannot tell)."""
    choices: list[list[str]] = []
    for override in overrides:
        if not override.is_sweep_override():
            choices.append([override.input_line])
        elif multirun and override.is_discrete_sweep():
            key = override.get_key_element()
            choices.append([f"{key}={value}" for value in override.sweep_string_iterator()])
        elif multirun:
            return None  # interval sweeps: the sweeper picks values (e.g. Optuna)
        else:
            choices.append([override.input_line])  # compose explains the ambiguity
    return [list(job) for job in itertools.product(*choices)]


def override_key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


# --- the experiment ---
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


# --- checkpoints: everything a resumed run needs to continue to the bit ---
def checkpoint_state(exp: Experiment, cfg: DictConfig, iteration: int, env_steps: int,
                     curve: AdaptationCurve, totals: Mapping[str, float]) -> dict[str, Any]:
    return {"iteration": iteration, "env_steps": env_steps, "algo": str(cfg.algo._target_),
            "learner": exp.learner.state_dict(), "sampler": exp.sampler.state_dict(),
            "task_sets": exp.task_sets.state_dict(), "torch_rng": torch.get_rng_state(),
            "last_meta_test": {"returns": torch.from_numpy(curve.returns.copy()),
                               "env_steps": curve.env_steps},
            "totals": dict(totals)}


def restore(exp: Experiment, cfg: DictConfig, ckpt: Checkpoint
            ) -> tuple[int, int, AdaptationCurve, dict[str, float]]:
    """Load a checkpoint into ``exp``: iteration, env steps, last meta-test, running totals."""
    state, algo = ckpt.state, str(cfg.algo._target_)
    if state.get("algo") != algo:
        raise ConfigError(f"resume: {ckpt.path} was written by algo {state.get('algo')!r}, "
                          f"not {algo!r}; resume it with the config of the run that wrote it")
    if ckpt.iteration > cfg.iterations:
        raise ConfigError(f"iterations: the run already did {ckpt.iteration} iterations; "
                          f"give iterations>={ckpt.iteration} to continue it")
    try:
        exp.learner.load_state_dict(state["learner"])
        exp.sampler.load_state_dict(state["sampler"])
        exp.task_sets.load_state_dict(state["task_sets"])
        torch.set_rng_state(state["torch_rng"])
        last = state["last_meta_test"]
        curve = AdaptationCurve(last["returns"].numpy(), int(last["env_steps"]))
        totals = {str(k): float(v) for k, v in state["totals"].items()}
    except (KeyError, RuntimeError, ValueError, TypeError, AttributeError) as error:
        raise ConfigError(f"resume: {ckpt.path} does not fit this config "
                          f"({_first_line(error)}); resume it with the config of the run "
                          "that wrote it") from error
    return ckpt.iteration, int(state["env_steps"]), curve, totals


# --- numerical faults ---
def check_finite(iteration: int, metrics: Mapping[str, float], learner: MetaLearner) -> None:
    """Stop on a NaN or inf in a reported quantity or anywhere in the learner's state."""
    for key, value in metrics.items():
        if not math.isfinite(value):
            raise RunFault(f"iteration {iteration}: {key} is {value}; {STEP_SIZE_HINT}")
    for name, tensor in _tensors(learner.state_dict(), "learner"):
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise RunFault(f"iteration {iteration}: {name} holds nan or inf; {STEP_SIZE_HINT}")


def _tensors(state: Any, prefix: str) -> Iterator[tuple[str, torch.Tensor]]:
    if isinstance(state, torch.Tensor):
        yield prefix, state
    elif isinstance(state, Mapping):
        for key, value in state.items():
            yield from _tensors(value, f"{prefix}.{key}")
    elif isinstance(state, list | tuple):
        for i, value in enumerate(state):
            yield from _tensors(value, f"{prefix}.{i}")


@contextmanager
def numerical_guard(iteration: int, phase: str) -> Iterator[None]:
    """Numerical failures raised inside (a non-finite TRPO curvature, torch.distributions
    refusing nan parameters) become a RunFault naming the iteration and the quantity."""
    try:
        yield
    except FloatingPointError as error:
        raise RunFault(f"iteration {iteration}: {phase}: {_first_line(error)}") from error
    except ValueError as error:
        found = re.match(r"Expected parameter (\w+)", str(error))
        if "invalid values" not in str(error) or not found:
            raise
        raise RunFault(f"iteration {iteration}: {phase}: the policy's {found.group(1)} is nan "
                       f"or inf; {STEP_SIZE_HINT}") from error


# --- signals: finish the iteration, checkpoint, then stop ---
class StopRequest:
    """SIGINT/SIGTERM ask the run to stop after the current iteration; a second one stops
    the process at once (checkpoints are atomic, so that is safe too)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is not None:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        self.signum = signum
        os.write(2, f"\n{signal.Signals(signum).name}: stopping after the current iteration "
                    "(send it again to stop at once)\n".encode())


# --- output ---
def format_curve(curve: AdaptationCurve) -> str:
    rows = ["step  mean return   std (over tasks)"]
    rows += [f"{k:>4}  {m:>11.2f}   {s:.2f}" for k, (m, s) in
             enumerate(zip(curve.mean, curve.std, strict=True))]
    return "\n".join(rows)


def notice(line: str) -> None:
    """A line on stderr that does not break a progress bar."""
    tqdm.write(line, file=sys.stderr)


def hparams(cfg: DictConfig, choices: Mapping[str, str], overrides: list[str]
            ) -> dict[str, Any]:
    """Flat scalar view of the config for TensorBoard's HPARAMS tab."""
    flat: dict[str, Any] = {f"{g}": str(c) for g, c in choices.items() if not g.startswith("hydra")}
    for group in ("algo", "model", "optimizer"):
        for key, value in OmegaConf.to_container(cfg[group], resolve=True).items():
            if not key.startswith("_"):
                flat[f"{group}.{key}"] = value if isinstance(value, int | float | str | bool) \
                    else str(value)
    flat |= {k: cfg[k] for k in ("seed", "task_seed", "iterations", "meta_batch_size")}
    for override in overrides:  # every key set on the command line
        key = override_key(override)
        if key == "resume":
            continue
        value = OmegaConf.select(cfg, key, default=None)
        flat.setdefault(key, value if isinstance(value, int | float | str | bool) else str(value))
    return flat


# --- the loop ---
def checked_meta_test(exp: Experiment, cfg: DictConfig, iteration: int) -> AdaptationCurve:
    with numerical_guard(iteration, "meta-test"):
        curve = run_meta_test(exp, cfg, iteration)
    check_finite(iteration, {f"meta_test/return/step_{k}": float(m)
                             for k, m in enumerate(curve.mean)}, exp.learner)
    return curve


def train(cfg: DictConfig, run_dir: Path, choices: Mapping[str, str], overrides: list[str],
          resume: bool = False) -> Outcome:
    """Train in ``run_dir``; with ``resume``, continue from its newest good checkpoint."""
    progress = console_progress(cfg.get("progress", "auto"), cfg.iterations)
    exp = build_experiment(cfg)
    ckpt_dir = run_dir / "checkpoints"
    start = latest_checkpoint(ckpt_dir) if resume else None
    totals = {"wall_clock_s": 0.0, "skipped_updates": 0.0}
    iteration, env_steps, curve = 0, 0, None
    if start is not None:
        iteration, env_steps, curve, totals = restore(exp, cfg, start)
    keep = LogPoint(iteration, env_steps) if start else LogPoint(-1, -1) if resume else None
    logger: RunLogger = build(cfg.logger, "logger", run_dir=run_dir, keep_until=keep)
    if start is not None:
        notice(f"resuming {run_dir} at iteration {iteration} from {start.path.name}")
    clock = time.perf_counter() - totals["wall_clock_s"]

    def save(curve: AdaptationCurve) -> None:
        logger.flush()  # the logs reach the disk before the checkpoint that covers them
        totals["wall_clock_s"] = time.perf_counter() - clock
        state = checkpoint_state(exp, cfg, iteration, env_steps, curve, totals)
        try:
            save_checkpoint(state, ckpt_dir / LATEST, keep_previous=True)
            if iteration > 0 and iteration % cfg.checkpoint_every == 0:
                save_checkpoint(state, ckpt_dir / f"iter_{iteration:06d}.pt")
        except OSError as error:
            raise RunFault(f"iteration {iteration}: cannot write a checkpoint in {ckpt_dir} "
                           f"({error}); the previous one is intact: free the space and "
                           f"resume with: metarl train resume={run_dir}") from error

    try:
        with StopRequest() as stop:
            if curve is None:
                curve = checked_meta_test(exp, cfg, 0)
                logger.log_meta_test(0, curve, env_steps)
                progress.meta_test(0, curve.mean)
                save(curve)
            while iteration < cfg.iterations and stop.signum is None:
                iteration += 1
                tick = time.perf_counter()
                tasks = exp.task_sets.train_batch(cfg.meta_batch_size)
                with numerical_guard(iteration, "meta-train step"):
                    metrics = exp.learner.train_step(tasks)
                check_finite(iteration, metrics, exp.learner)
                seconds = time.perf_counter() - tick
                steps = int(metrics.pop("env_steps"))
                env_steps += steps
                metrics |= {"time/iteration_s": seconds, "perf/env_steps_per_s": steps / seconds}
                if metrics.get("optim/accepted") == 0.0:
                    totals["skipped_updates"] += 1
                    why = "the gradient was zero" if metrics.get("optim/line_search_steps") \
                        == 0.0 else "the line search found no acceptable step"
                    notice(f"iteration {iteration}: {why}; the update was skipped "
                           "(optim/accepted=0)")
                logger.log_iteration(iteration, metrics, env_steps)
                progress.iteration(iteration, metrics, steps, seconds)
                if iteration % cfg.eval_every == 0 or iteration == cfg.iterations:
                    curve = checked_meta_test(exp, cfg, iteration)
                    logger.log_meta_test(iteration, curve, env_steps)
                    progress.meta_test(iteration, curve.mean)
                save(curve)
    except RunFault as fault:
        progress.close()
        logger.close()
        last = latest_checkpoint(ckpt_dir) if ckpt_dir.is_dir() else None
        kept = f"the last good checkpoint is {last.path} (iteration {last.iteration})" \
            if last else "there is no checkpoint yet"
        raise RunFault(f"{fault}. The run stopped; {kept}") from fault
    progress.close()
    if stop.signum is not None and iteration < cfg.iterations:
        logger.close()
        return Outcome(curve, iteration, stop.signum)
    summary = {
        "algo": choices.get("algo"), "env": choices.get("env"), "env_source": cfg.env.source,
        "seed": cfg.seed, "task_seed": cfg.task_seed, "iterations": cfg.iterations,
        "env_steps": env_steps, "wall_clock_s": time.perf_counter() - clock,
        "skipped_updates": int(totals["skipped_updates"]),
        "meta_test": {"num_tasks": cfg.eval.num_tasks, "rollouts": cfg.eval.rollouts,
                      "return_mean": curve.mean.tolist(), "return_std": curve.std.tolist()},
    }
    logger.finish(summary, hparams(cfg, choices, overrides), curve)
    return Outcome(curve, iteration)


# --- resume: find the run, take back its config ---
def is_run_dir(path: Path) -> bool:
    return (path / ".hydra" / "config.yaml").is_file()


def find_resumable(resume: str, overrides: list[str], run_dir: str | None) -> Path | None:
    """The run directory ``resume=`` names, or for ``auto`` the newest run under ./outputs
    started with the same overrides (None: nothing to resume)."""
    if resume != "auto":
        path = Path(resume).expanduser()
        return path.resolve() if is_run_dir(path) else None
    if run_dir is not None:
        return Path(run_dir).resolve() if is_run_dir(Path(run_dir)) else None
    wanted = sorted(o for o in overrides if override_key(o) != "resume")
    for path in sorted(Path("outputs").glob("*/*/.hydra/overrides.yaml"), reverse=True):
        saved = OmegaConf.to_container(OmegaConf.load(path))
        if isinstance(saved, list) and \
                sorted(str(o) for o in saved if override_key(str(o)) != "resume") == wanted:
            return path.parent.parent.resolve()
    return None


def resumed_config(cfg: DictConfig, run_dir: Path, overrides: list[str]
                   ) -> tuple[DictConfig, dict[str, str], list[str]]:
    """The run's own config, choices and overrides; only RESUMABLE_KEYS may change (and the
    change is written back to ``.hydra/``, so that the run keeps describing itself)."""
    hydra_dir = run_dir / ".hydra"
    try:
        saved = OmegaConf.load(hydra_dir / "config.yaml")
        saved_overrides = [str(o) for o in OmegaConf.load(hydra_dir / "overrides.yaml")]
        choices = OmegaConf.load(hydra_dir / "hydra.yaml").hydra.runtime.choices
    except (OSError, OmegaConfBaseException) as error:
        raise ConfigError(f"resume: cannot read {hydra_dir} ({_first_line(error)}); it is not "
                          "a complete run directory") from error
    assert isinstance(saved, DictConfig)
    changed: dict[str, str] = {}
    for override in overrides:
        key = override_key(override)
        if key == "resume" or override in saved_overrides:
            continue
        if key not in RESUMABLE_KEYS:
            raise ConfigError(f"resume: {override} differs from the settings of {run_dir} (see "
                              f"its .hydra/overrides.yaml); a resumed run keeps them, only "
                              f"{', '.join(RESUMABLE_KEYS)} may change")
        changed[key] = override
    if changed:
        for key in changed:
            OmegaConf.update(saved, key, OmegaConf.select(cfg, key), force_add=True)
        saved_overrides = [o for o in saved_overrides if override_key(o) not in changed]
        saved_overrides += list(changed.values())
        _write_yaml(hydra_dir / "config.yaml", saved)
        _write_yaml(hydra_dir / "overrides.yaml", OmegaConf.create(saved_overrides))
    saved.resume = cfg.resume
    OmegaConf.set_struct(saved, True)
    return saved, {str(k): str(v) for k, v in choices.items()}, saved_overrides


def _write_yaml(path: Path, node: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(OmegaConf.to_yaml(node))
    os.replace(tmp, path)


def remove_unstarted_run_dir(run_dir: Path, job_name: str) -> None:
    """Delete what Hydra created for a run refused before it started: ``run_dir`` if it holds
    nothing but Hydra's own files, then its parents left empty, up to the working directory."""
    if not run_dir.is_dir():
        return
    own = {".hydra", ".hydra/config.yaml", ".hydra/hydra.yaml", ".hydra/overrides.yaml",
           f"{job_name}.log"}
    entries = list(run_dir.rglob("*"))
    if any(p.relative_to(run_dir).as_posix() not in own for p in entries):
        return
    for path in sorted(entries, key=lambda p: len(p.parts), reverse=True):
        if path.is_dir():
            path.rmdir()
        else:
            path.unlink()
    run_dir.rmdir()
    cwd, parent = Path.cwd().resolve(), run_dir.resolve().parent
    while cwd in parent.parents:
        try:
            parent.rmdir()
        except OSError:  # not empty: another run lives there
            break
        parent = parent.parent


# --- entry points ---
def report_failure(error: BaseException, code: int, multirun: bool, overrides: list[str]) -> None:
    """One ``error:`` line (a traceback first with --verbose or HYDRA_FULL_ERROR=1); exit with
    ``code``, except in a multirun, where the job is recorded and the next one runs."""
    if SESSION.verbose or os.environ.get("HYDRA_FULL_ERROR") == "1":
        traceback.print_exception(error)
    job = f"job {HydraConfig.get().job.num} ({' '.join(overrides)}): " if multirun else ""
    print(f"error: {job}{error}", file=sys.stderr, flush=True)
    if not multirun:
        sys.exit(code)
    SESSION.failed.append(f"{job}{error}")


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="train")
def hydra_main(cfg: DictConfig) -> float:
    """One run (or one multirun job). Returns the final meta-test return after the last
    adaptation step (what a sweeper such as Optuna maximises); nan for a failed job."""
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    overrides = list(hydra_cfg.overrides.task)
    resume = cfg.get("resume")
    resuming = resume is not None and hydra_cfg.output_subdir is None and (
        resume == "auto" or Path(str(resume)).expanduser().resolve() == run_dir.resolve())
    SESSION.jobs += 1
    try:
        if resuming:
            cfg, choices, overrides = resumed_config(cfg, run_dir, overrides)
        else:
            if resume is not None and multirun:
                raise ConfigError("resume: not available with --multirun; resume each job with "
                                  "metarl train resume=<its directory>")
            if resume not in (None, "auto"):
                raise ConfigError(f"resume: {resume} is not a run directory (no .hydra/"
                                  "config.yaml); give the run_dir a metarl train printed, or "
                                  "resume=auto")
            if resume == "auto":
                notice(f"resume=auto: no earlier run in outputs/ with these overrides; "
                       f"starting a new one in {run_dir}")
            choices = {str(k): str(v) for k, v in hydra_cfg.runtime.choices.items()}
        outcome = train(cfg, run_dir, choices, overrides, resume=resuming)
    except ConfigError as error:
        if not resuming:
            remove_unstarted_run_dir(run_dir, hydra_cfg.job.name)
        report_failure(error, EXIT_BAD_INPUT, multirun, overrides)
        return float("nan")
    except RunFault as error:
        report_failure(error, EXIT_FAULT, multirun, overrides)
        return float("nan")
    except Exception as error:  # a bug: in a multirun, report it and let the other jobs run
        if not multirun:
            raise
        traceback.print_exception(error)
        report_failure(error, EXIT_FAULT, multirun, overrides)
        return float("nan")
    if outcome.stopped_by is not None:
        name = signal.Signals(outcome.stopped_by).name
        print(f"\nstopped by {name} after iteration {outcome.iteration}; checkpoint "
              f"{run_dir / 'checkpoints' / LATEST}\nresume with: metarl train "
              f"resume={run_dir}", file=sys.stderr, flush=True)
        sys.exit(128 + outcome.stopped_by)
    print("\nfinal meta-test on held-out tasks (return after k adaptation steps):")
    print(format_curve(outcome.curve))
    print(run_summary(json.loads((run_dir / "summary.json").read_text())))
    print(f"run_dir: {run_dir}")
    return float(outcome.curve.mean[-1])


def preflight(args: list[str], multirun: bool) -> list[str]:
    """Check the command line before Hydra creates anything; return the overrides that point
    Hydra at the run to resume (its own directory, its ``.hydra/`` left as it is)."""
    parser = OverridesParser.create()
    parsed = []
    for arg in args:
        try:
            parsed += parser.parse_overrides([arg])
        except HydraException as error:
            raise ConfigError(f"{arg}: not a valid override ({_first_line(error)}); write "
                              "key=value, quoting values with spaces or brackets") from error
    task = [o for o in parsed if not o.is_hydra_override()]
    resume = next((o for o in reversed(task) if o.key_or_group == "resume"), None)
    if multirun and resume is not None:
        raise ConfigError("resume: not available with --multirun; resume each job with "
                          "metarl train resume=<its directory>")
    for job in job_overrides(task, multirun) or []:
        compose_checked(job)
    if resume is None or resume.value() is None:
        return []
    run_dir = next((str(o.value()) for o in parsed if o.key_or_group == "hydra.run.dir"), None)
    found = find_resumable(str(resume.value()), [o.input_line for o in task], run_dir)
    if found is None:
        return []
    quoted = str(found).replace("\\", "\\\\").replace("'", "\\'")
    return ["hydra.output_subdir=null"] + ([] if run_dir else [f"hydra.run.dir='{quoted}'"])


def main() -> None:
    """``metarl train [--verbose] [-m] [overrides]``: preflight checks, then Hydra."""
    args = sys.argv[1:]
    SESSION.verbose = "--verbose" in args
    args = [a for a in args if a != "--verbose"]
    flags = {a for a in args if a.startswith("-")}
    if flags <= {"-m", "--multirun"}:  # --help, --cfg, ... go to Hydra untouched
        try:
            args += preflight([a for a in args if not a.startswith("-")], bool(flags))
        except ConfigError as error:
            if SESSION.verbose or os.environ.get("HYDRA_FULL_ERROR") == "1":
                traceback.print_exc()
            print(f"error: {error}", file=sys.stderr)
            sys.exit(EXIT_BAD_INPUT)
    sys.argv = [sys.argv[0], *args]
    hydra_main()
    if SESSION.failed:
        print(f"error: {len(SESSION.failed)} of {SESSION.jobs} multirun jobs failed (above); "
              "the other jobs finished", file=sys.stderr)
        sys.exit(EXIT_FAULT)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__

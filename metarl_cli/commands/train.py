"""``metarl train``: meta-train a learner, meta-testing on held-out tasks as it goes.

The composition root: the only code that reads the config. It builds the experiment, then loops
meta-iterations, meta-tests every ``eval_every`` iterations (and before training and at the
end), logs and checkpoints.

What it promises when things go wrong (docs/RELIABILITY.md lists each promise and its test):
bad input is refused before anything runs (``preflight``); ``resume=<run dir>`` /
``resume=auto`` continues a run in its own directory (``resume``); SIGINT/SIGTERM and NaN/inf
stop the run (``core.faults``); in a multirun a failing job is reported and the other jobs
still run.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from metarl_cli.commands.experiment import (
    Experiment,
    build_experiment,
    meta_test_record,
    run_meta_test,
)
from metarl_cli.commands.preflight import (
    MULTIRUN_RESUME,
    already_a_run,
    holds_run,
    is_run_dir,
    override_key,
    preflight,
    resume_command,
)
from metarl_cli.commands.resume import (
    checkpoint_state,
    remove_unstarted_run_dir,
    restore,
    resumed_config,
)
from metarl_cli.core.build import ConfigError, build
from metarl_cli.core.checkpoint import (
    LATEST,
    latest_checkpoint,
    package_versions,
    save_checkpoint,
    version_changes,
)
from metarl_cli.core.evaluation import AdaptationCurve
from metarl_cli.core.faults import RunFault, StopRequest, check_finite, numerical_guard
from metarl_cli.core.logging import LogPoint, RunLogger
from metarl_cli.core.paths import CONFIG_DIR, RunDirInUse, run_dir_lock
from metarl_cli.core.progress import console_progress, run_summary

EXIT_BAD_INPUT = 2
EXIT_FAULT = 1
FAILED_JOBS = ".failed_jobs"  # in the sweep directory: one file per failed job


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
    sweep_dir: Path | None = None


SESSION = _Session()


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
          resume: bool = False, on_resumed: Callable[[], None] | None = None) -> Outcome:
    """Train in ``run_dir``, holding its lock; with ``resume``, continue from its newest good
    checkpoint and then call ``on_resumed`` (before anything is written)."""
    try:
        with run_dir_lock(run_dir):
            return _train(cfg, run_dir, choices, overrides, resume, on_resumed)
    except RunDirInUse as error:
        raise ConfigError(f"run_dir: {error} that trains there; wait for it to end, or stop "
                          "it first") from error


def _train(cfg: DictConfig, run_dir: Path, choices: Mapping[str, str], overrides: list[str],
           resume: bool, on_resumed: Callable[[], None] | None) -> Outcome:
    if not resume and holds_run(run_dir):  # e.g. two multirun jobs given the same directory
        raise ConfigError(already_a_run(run_dir))
    progress = console_progress(cfg.get("progress", "auto"), cfg.iterations)
    exp = build_experiment(cfg)
    ckpt_dir = run_dir / "checkpoints"
    start = latest_checkpoint(ckpt_dir) if resume else None
    if resume and start is None and trained_past_zero(run_dir):
        raise ConfigError(f"resume: {run_dir} has no checkpoint to continue from (checkpoints/ "
                          "is missing or empty), so resuming would start it over and cut its "
                          "logs; start a new run instead")
    totals = {"wall_clock_s": 0.0, "skipped_updates": 0.0}
    iteration, env_steps, curve = 0, 0, None
    if start is not None:
        iteration, env_steps, curve, totals = restore(exp, cfg, start)
    if on_resumed is not None:
        on_resumed()
    keep = LogPoint(iteration, env_steps) if start else LogPoint(-1, -1) if resume else None
    logger: RunLogger = build(cfg.logger, "logger", run_dir=run_dir, keep_until=keep)
    if start is not None:
        notice(f"resuming {run_dir} at iteration {iteration} from {start.path.name}")
        changed = version_changes(start.state.get("versions", {}))
        if changed:
            notice(f"note: {start.path.name} was written with {changed}; the run goes on, but "
                   "not bit for bit as it would have with those")
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
                           f"({error}); the previous one is intact: mend the cause (e.g. free "
                           f"the space) and resume with: {resume_command(run_dir)}") from error

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
        "skipped_updates": int(totals["skipped_updates"]), "versions": package_versions(),
        "meta_test": meta_test_record(cfg, curve),
    }
    logger.finish(summary, hparams(cfg, choices, overrides), curve)
    return Outcome(curve, iteration)


def trained_past_zero(run_dir: Path) -> bool:
    """The run finished, or logged a meta-training iteration (not only the first meta-test)."""
    if (run_dir / "summary.json").is_file():
        return True
    path = run_dir / "metrics.jsonl"
    for line in path.read_text().splitlines() if path.is_file() else []:
        try:
            if json.loads(line).get("iteration", 0) >= 1:
                return True
        except (ValueError, AttributeError):
            continue  # a line torn by a kill
    return False


# --- entry points ---
def report_failure(error: BaseException, code: int, multirun: bool, overrides: list[str]) -> None:
    """One ``error:`` line (a traceback first with --verbose or HYDRA_FULL_ERROR=1); exit with
    ``code``, except in a multirun, where the job is recorded and the next one runs."""
    if SESSION.verbose or os.environ.get("HYDRA_FULL_ERROR") == "1":
        traceback.print_exception(error)
    hydra_cfg = HydraConfig.get()
    job = f"job {hydra_cfg.job.num} ({' '.join(overrides)}): " if multirun else ""
    print(f"error: {job}{error}", file=sys.stderr, flush=True)
    if not multirun:
        sys.exit(code)
    SESSION.failed.append(f"{job}{error}")
    # for the process that launched the sweep, which a parallel launcher's jobs do not share
    try:
        marker = Path(hydra_cfg.sweep.dir) / FAILED_JOBS / f"job{hydra_cfg.job.num}.txt"
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(f"{job}{error}\n")
    except OSError:
        pass


class SweepRecorder(Callback):
    """A Hydra callback (``hydra.callbacks`` in configs/train.yaml): in the process that
    launched a sweep, note its directory, where every failed job leaves a line."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        SESSION.sweep_dir = Path(str(config.hydra.sweep.dir))
        shutil.rmtree(SESSION.sweep_dir / FAILED_JOBS, ignore_errors=True)  # an earlier sweep's


def failed_jobs() -> list[str]:
    """The failed jobs of the multirun this process launched, as each job's own process
    recorded them (joblib, submitit and Ray run jobs in other processes)."""
    if SESSION.sweep_dir is None:
        return list(SESSION.failed)
    found = [p.read_text().strip() for p in sorted((SESSION.sweep_dir / FAILED_JOBS).glob(
        "job*.txt"))]
    return found or list(SESSION.failed)


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="train")
def hydra_main(cfg: DictConfig) -> float:
    """One run (or one multirun job). Returns the final meta-test return after the last
    adaptation step (what a sweeper such as Optuna maximises); nan for a failed job."""
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    overrides = [str(o) for o in OmegaConf.to_container(hydra_cfg.overrides.task)]  # unresolved
    resume = cfg.get("resume")
    resuming = resume is not None and hydra_cfg.output_subdir is None and (
        resume == "auto" or Path(str(resume)).expanduser().resolve() == run_dir.resolve())
    SESSION.jobs += 1
    try:
        write_back = None
        if resuming:
            cfg, choices, overrides, write_back = resumed_config(cfg, run_dir, overrides)
        else:
            if resume is not None and multirun:
                raise ConfigError(MULTIRUN_RESUME)
            if resume == "":
                raise ConfigError("resume: empty; give the run_dir a metarl train printed, or "
                                  "resume=auto")
            if resume not in (None, "auto") and is_run_dir(Path(str(resume)).expanduser()):
                raise ConfigError(f"resume: {resume} is a run, and a resumed run continues in "
                                  f"its own directory; drop hydra.run.dir (or set it to {resume})")
            if resume not in (None, "auto"):
                raise ConfigError(f"resume: {resume} is not a run directory (no .hydra/"
                                  "config.yaml); give the run_dir a metarl train printed, or "
                                  "resume=auto")
            if resume == "auto":
                notice(f"resume=auto: no earlier run in outputs/ with these overrides; "
                       f"starting a new one in {run_dir}")
            choices = {str(k): str(v) for k, v in hydra_cfg.runtime.choices.items()}
        outcome = train(cfg, run_dir, choices, overrides, resume=resuming, on_resumed=write_back)
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
              f"{run_dir / 'checkpoints' / LATEST}\nresume with: {resume_command(run_dir)}",
              file=sys.stderr, flush=True)
        sys.exit(128 + outcome.stopped_by)
    print("\nfinal meta-test on held-out tasks (return after k adaptation steps):")
    print(format_curve(outcome.curve))
    print(run_summary(json.loads((run_dir / "summary.json").read_text())))
    print(f"run_dir: {run_dir}")
    return float(outcome.curve.mean[-1])


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
    failed = failed_jobs() if flags else []
    if failed:  # SESSION.jobs counts the jobs run in this process (all, but for a parallel
        # launcher's, whose count is not known here)
        of = f" of {SESSION.jobs}" if SESSION.jobs >= len(failed) else ""
        jobs = "jobs" if of or len(failed) > 1 else "job"
        print(f"error: {len(failed)}{of} multirun {jobs} failed (above); the other jobs "
              "finished", file=sys.stderr)
        sys.exit(EXIT_FAULT)

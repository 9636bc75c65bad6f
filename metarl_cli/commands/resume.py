"""Continuing a run in its own directory from its newest good checkpoint.

A checkpoint holds everything the next iteration depends on, so a resumed run ends with the
numbers of an uninterrupted run; the run keeps its own config (only ``RESUMABLE_KEYS`` may
change). A run refused before it started leaves no directory behind.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from metarl_cli.commands.experiment import Experiment
from metarl_cli.commands.preflight import override_key
from metarl_cli.core.build import ConfigError
from metarl_cli.core.checkpoint import Checkpoint, package_versions
from metarl_cli.core.evaluation import AdaptationCurve
from metarl_cli.core.faults import first_line
from metarl_cli.core.paths import read_saved_config, read_saved_overrides, write_atomic

# Keys a resumed run may change: where and how long it runs, not what it computes. The physics
# threads change no number (tested), nor does keep_freed_memory (measured: docs/PERFORMANCE.md);
# torch threads and the device change only floating-point rounding, so a run can move between
# machines (a GPU machine's run continued on a laptop).
RESUMABLE_KEYS = ("iterations", "torch_threads", "progress", "device", "sampler.num_threads",
                  "keep_freed_memory")


# --- checkpoints: everything a resumed run needs to continue to the bit ---
def checkpoint_state(exp: Experiment, cfg: DictConfig, iteration: int, env_steps: int,
                     curve: AdaptationCurve, totals: Mapping[str, float]) -> dict[str, Any]:
    return {"iteration": iteration, "env_steps": env_steps, "algo": str(cfg.algo._target_),
            "learner": exp.learner.state_dict(), "sampler": exp.sampler.state_dict(),
            "task_sets": exp.task_sets.state_dict(), "torch_rng": torch.get_rng_state(),
            "last_meta_test": {"returns": torch.from_numpy(curve.returns.copy()),
                               "env_steps": curve.env_steps},
            "totals": dict(totals), "versions": package_versions()}


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
                          f"({first_line(error)}); resume it with the config of the run "
                          "that wrote it") from error
    return ckpt.iteration, int(state["env_steps"]), curve, totals


# --- the run's config ---
def resumed_config(cfg: DictConfig, run_dir: Path, overrides: list[str]
                   ) -> tuple[DictConfig, dict[str, str], list[str], Callable[[], None] | None]:
    """The run's own config, choices and overrides; only RESUMABLE_KEYS may change. The last
    item (None when nothing changed) writes the change back to ``.hydra/``, so that the run keeps
    describing itself: call it once the run has been built and its checkpoint restored, so that
    a refused value is never written."""
    hydra_dir = run_dir / ".hydra"
    try:
        saved = read_saved_config(hydra_dir / "config.yaml")
        saved_overrides = read_saved_overrides(hydra_dir / "overrides.yaml")
        choices = OmegaConf.load(hydra_dir / "hydra.yaml").hydra.runtime.choices
    except (OSError, OmegaConfBaseException, yaml.YAMLError, ValueError) as error:
        raise ConfigError(f"resume: cannot read {hydra_dir} ({first_line(error)}); it is not "
                          "a complete run directory") from error
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
    write_back: Callable[[], None] | None = None
    if changed:
        for key in changed:
            OmegaConf.update(saved, key, OmegaConf.select(cfg, key), force_add=True)
        saved_overrides = [o for o in saved_overrides if override_key(o) not in changed]
        saved_overrides += list(changed.values())
        config_yaml = OmegaConf.to_yaml(saved)  # before the resume key is set below
        overrides_yaml = OmegaConf.to_yaml(OmegaConf.create(saved_overrides))

        def write() -> None:
            write_atomic(hydra_dir / "config.yaml", config_yaml)
            write_atomic(hydra_dir / "overrides.yaml", overrides_yaml)
        write_back = write

    saved.resume = cfg.resume
    OmegaConf.set_struct(saved, True)
    return saved, {str(k): str(v) for k, v in choices.items()}, saved_overrides, write_back


# --- a run refused before it started leaves nothing behind ---
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

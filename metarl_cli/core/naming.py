"""Multirun directory names: the overrides that differ between jobs, with the seed as a folder.

``hydra.sweep.subdir`` calls the ``metarl_run_subdir`` resolver, so a sweep such as
``algo.inner_lr=0.1,0.5 seed=0,1 iterations=10`` gives ``algo.inner_lr=0.1/seed=0``,
``algo.inner_lr=0.1/seed=1``, ...: the seeds of one setting sit side by side, and keys that had
one value on the sweep's command line (``iterations=10``) are left out, so
``tensorboard --logdir multirun/...`` shows a short, readable legend. The full config of every
job is in its ``.hydra/`` either way.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from metarl_cli.core.paths import claim_fresh_dir

RESOLVER = "metarl_run_subdir"
FRESH_DIR = "metarl_fresh_dir"


def constant_keys(sweep_overrides: Iterable[str]) -> set[str]:
    """Keys given exactly one value on a sweep's command line (not a sweep like ``a=1,2``)."""
    parsed = OverridesParser.create().parse_overrides(list(sweep_overrides))
    return {o.key_or_group for o in parsed if not o.is_sweep_override()}


def run_subdir(job_overrides: Iterable[str], exclude_keys: Iterable[str],
               constant: set[str], seed: object) -> str:
    """``<differing overrides>/seed=<seed>``, or ``seed=<seed>`` when nothing else differs.
    An excluded key (``torch_threads``, ``device``, ...) is named after all when the sweep
    varies it, so that such jobs do not share a directory."""
    skip = {k for k in exclude_keys if k in constant or k == "seed"} | constant
    parsed = OverridesParser.create().parse_overrides(list(job_overrides))
    lines = sorted(o.input_line or "" for o in parsed if o.key_or_group not in skip)
    name = ",".join(lines)
    return f"{name}/seed={seed}" if name else f"seed={seed}"


def sweep_constant_keys(sweep_dir: str, job_overrides: Iterable[str],
                        sweeper_params: Iterable[str]) -> set[str]:
    """Keys that are the same in every job of the sweep.

    The basic sweeper (also under the joblib, submitit and ray launchers) saves the command line
    in ``<sweep_dir>/multirun.yaml``; a sweeper that does not (Optuna) varies exactly the keys of
    its ``params``, so the job's other overrides are the constant ones. Otherwise: none known.
    """
    path = Path(sweep_dir) / "multirun.yaml"
    if path.is_file():
        overrides = OmegaConf.select(OmegaConf.load(path), "hydra.overrides.task", default=None)
        return constant_keys(overrides or [])
    params = set(sweeper_params)
    if not params:
        return set()
    parsed = OverridesParser.create().parse_overrides(list(job_overrides))
    return {o.key_or_group for o in parsed} - params


def _resolve(job_overrides: Iterable[str], exclude_keys: Iterable[str], sweep_dir: str,
             sweeper_params: Iterable[str] | None, seed: object) -> str:
    constant = sweep_constant_keys(sweep_dir, job_overrides, sweeper_params or [])
    return run_subdir(job_overrides, exclude_keys, constant, seed)


def register_resolvers() -> None:
    """Make the resolvers known to OmegaConf (idempotent; every job process imports this):
    this module's, and ``metarl_fresh_dir`` for the default run directory of a single run."""
    if not OmegaConf.has_resolver(RESOLVER):
        OmegaConf.register_new_resolver(RESOLVER, _resolve)
    if not OmegaConf.has_resolver(FRESH_DIR):
        OmegaConf.register_new_resolver(FRESH_DIR, claim_fresh_dir)

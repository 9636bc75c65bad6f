"""Multirun directory names: the overrides that differ, the seed as a folder."""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

from metarl_cli.core.naming import constant_keys, run_subdir, sweep_constant_keys


def test_constant_keys_are_those_with_one_value() -> None:
    line = ["algo.inner_lr=0.1,0.5", "seed=0,1", "iterations=10", "model.hidden_sizes=[8,8]",
            "env=glob(point*)"]
    assert constant_keys(line) == {"iterations", "model.hidden_sizes"}


def test_subdir_keeps_what_differs_and_puts_the_seed_last() -> None:
    job = ["iterations=10", "algo.inner_lr=0.5", "seed=1", "torch_threads=1", "env=point_nav"]
    name = run_subdir(job, ["seed", "torch_threads"], {"iterations", "torch_threads"}, 1)
    assert name == "algo.inner_lr=0.5,env=point_nav/seed=1"
    assert run_subdir(["seed=3", "iterations=10"], ["seed"], {"iterations"}, 3) == "seed=3"


def test_an_excluded_key_that_the_sweep_varies_is_named() -> None:
    # torch_threads=1,2: two jobs that would otherwise both be seed=0/
    names = {run_subdir([f"torch_threads={t}", "seed=0"], ["seed", "torch_threads"], set(), 0)
             for t in (1, 2)}
    assert names == {"torch_threads=1/seed=0", "torch_threads=2/seed=0"}


def test_sweep_constants_from_multirun_yaml(tmp_path: Path) -> None:
    OmegaConf.save({"hydra": {"overrides": {"task": ["lr=1,2", "iterations=3"]}}},
                   tmp_path / "multirun.yaml")
    assert sweep_constant_keys(str(tmp_path), ["lr=1", "iterations=3"], []) == {"iterations"}


def test_sweep_constants_from_a_sweepers_params(tmp_path: Path) -> None:
    # Optuna writes no multirun.yaml: its params vary, the job's other overrides do not.
    job = ["algo.inner_lr=0.3", "iterations=3", "seed=0"]
    assert sweep_constant_keys(str(tmp_path), job, ["algo.inner_lr"]) == {"iterations", "seed"}
    assert sweep_constant_keys(str(tmp_path), job, []) == set()

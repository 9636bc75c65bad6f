"""Real sweeps through Hydra's launcher and sweeper plugins, then `metarl plot` over them."""

from __future__ import annotations

import csv
import importlib.util
import json
import subprocess
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

TINY = ["iterations=1", "meta_batch_size=2", "algo.rollouts_per_task=2", "eval.num_tasks=2",
        "eval.rollouts=2", "eval.steps=1", "env.horizon=10", "model.hidden_sizes=[8]",
        "torch_threads=1"]


def metarl(*args: str, cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["metarl", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


def sweep_runs(sweep: Path) -> list[str]:
    return sorted(str(p.parent.relative_to(sweep)) for p in sweep.rglob("summary.json"))


def hparams_of(run: Path) -> tuple[set[str], set[str]]:
    """The HPARAMS tab's hyperparameter names and metric tags for one run."""
    content = EventAccumulator(str(run / "tb")).Reload().PluginTagToContent("hparams")
    data = {tag: plugin_data_pb2.HParamsPluginData.FromString(c) for tag, c in content.items()}
    names = set(data["_hparams_/session_start_info"].session_start_info.hparams)
    metrics = {m.name.tag for m in data["_hparams_/experiment"].experiment.metric_infos}
    return names, metrics


def test_a_failed_job_in_parallel_worker_processes_fails_the_sweep(tmp_path: Path) -> None:
    # joblib runs the jobs in other processes: the count comes from the sweep directory
    sweep = tmp_path / "sweep"
    result = metarl("train", "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", *TINY,
                    "algo.inner_lr=0.1,-1", f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert "inner_lr must be > 0, got -1" in result.stderr
    assert result.stderr.splitlines()[-1] == \
        "error: 1 multirun job failed (above); the other jobs finished"
    assert sweep_runs(sweep) == ["algo.inner_lr=0.1/seed=0"]


def test_joblib_sweep_gives_four_readable_run_dirs_and_a_plot(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    result = metarl("train", "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", *TINY,
                    "algo.inner_lr=0.1,0.5", "seed=0,1", f"hydra.sweep.dir={sweep}",
                    cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Joblib.Parallel" in result.stderr + result.stdout  # the joblib launcher ran them
    assert sweep_runs(sweep) == ["algo.inner_lr=0.1/seed=0", "algo.inner_lr=0.1/seed=1",
                                 "algo.inner_lr=0.5/seed=0", "algo.inner_lr=0.5/seed=1"]
    assert "iter    1/1" not in result.stdout  # multirun jobs are quiet until their summary
    assert result.stdout.count("run_dir: ") == 4
    names, metrics = hparams_of(sweep / "algo.inner_lr=0.5" / "seed=1")
    assert {"algo.inner_lr", "seed", "env.horizon", "eval.num_tasks"} <= names
    assert {"hparam/meta_test/return/step_0", "hparam/meta_test/return/step_1",
            "hparam/meta_test/return/last"} <= metrics

    out = tmp_path / "cmp.png"
    plotted = metarl("plot", str(sweep), "--out", str(out), cwd=tmp_path, timeout=120)
    assert plotted.returncode == 0, plotted.stderr
    assert out.stat().st_size > 0
    with open(out.with_suffix(".csv"), newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["curve"] == "adaptation" and r["x"] == "1"]
    finals = {lr: [json.loads((sweep / f"algo.inner_lr={lr}" / f"seed={s}" / "summary.json")
                              .read_text())["meta_test"]["return_mean"][1] for s in (0, 1)]
              for lr in ("0.1", "0.5")}
    assert [(r["group"], r["runs"]) for r in rows] == [("algo.inner_lr=0.1", "2"),
                                                       ("algo.inner_lr=0.5", "2")]
    for row, lr in zip(rows, ("0.1", "0.5"), strict=True):
        assert float(row["estimate"]) == pytest.approx(sum(finals[lr]) / 2)
        assert (float(row["ci_low"]), float(row["ci_high"])) == pytest.approx(
            (min(finals[lr]), max(finals[lr])))


def test_optuna_sweep_maximises_the_returned_final_return(tmp_path: Path) -> None:
    sweep = tmp_path / "optuna"
    result = metarl("train", "-m", "hydra/sweeper=maml_lr", "hydra.sweeper.n_trials=2",
                    "hydra.sweeper.n_jobs=1", *TINY, f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    runs = sweep_runs(sweep)
    assert len(runs) == 2 and all(r.startswith("algo.inner_lr=") and ",algo.max_kl=" in r
                                  and r.endswith("/seed=0") for r in runs)
    finals = [json.loads((sweep / r / "summary.json").read_text())["meta_test"]["return_mean"][-1]
              for r in runs]
    best = OmegaConf.load(sweep / "optimization_results.yaml")
    assert best.best_value == pytest.approx(max(finals))


def test_ray_launcher_on_a_local_ray_instance(tmp_path: Path) -> None:
    if importlib.util.find_spec("hydra_plugins.hydra_ray_launcher") is None:
        pytest.skip("hydra-ray-launcher is not installed (pip install -e '.[ray]')")
    pytest.importorskip("ray", reason="ray is installed but cannot be imported here")
    sweep = tmp_path / "ray"
    result = metarl("train", "-m", "hydra/launcher=ray_local", *TINY, "seed=0,1",
                    f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert sweep_runs(sweep) == ["seed=0", "seed=1"]

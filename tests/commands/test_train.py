"""A real tiny `metarl train` through the console script, and its failure modes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

TINY = ["iterations=2", "eval_every=1", "meta_batch_size=3", "algo.rollouts_per_task=4",
        "eval.num_tasks=3", "eval.rollouts=4", "eval.steps=2", "env.horizon=20"]


def metarl(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["metarl", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    tmp = tmp_path_factory.mktemp("train")
    result = metarl("train", *TINY, f"hydra.run.dir={tmp / 'run'}", cwd=tmp)
    assert result.returncode == 0, result.stderr
    return tmp / "run", result.stdout


def test_last_line_names_the_run_dir(tiny_run: tuple[Path, str]) -> None:
    run_dir, stdout = tiny_run
    assert stdout.strip().splitlines()[-1] == f"run_dir: {run_dir}"
    assert "return after k adaptation steps" in stdout


def test_run_dir_is_self_describing(tiny_run: tuple[Path, str]) -> None:
    run_dir, _ = tiny_run
    assert (run_dir / ".hydra" / "config.yaml").is_file()
    assert (run_dir / "adaptation_curve.png").stat().st_size > 0
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in records if "meta_train/return_pre" in r] == [1, 2]
    assert [r["iteration"] for r in records if "meta_test/return" in r] == [0, 1, 2]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["env"] == "point_nav" and summary["algo"] == "maml"
    assert len(summary["meta_test"]["return_mean"]) == 3  # eval.steps=2 -> steps 0, 1, 2
    assert summary["meta_test"]["return_mean"] == records[-1]["meta_test/return"]


def test_checkpoint_loads_without_code_execution(tiny_run: tuple[Path, str]) -> None:
    run_dir, _ = tiny_run
    state = torch.load(run_dir / "checkpoints" / "latest.pt", weights_only=True)
    assert state["iteration"] == 2 and state["env_steps"] > 0
    assert "mean.0.weight" in state["learner"]["policy"]


def test_tensorboard_has_the_documented_tags(tiny_run: tuple[Path, str]) -> None:
    run_dir, _ = tiny_run
    events = EventAccumulator(str(run_dir / "tb")).Reload()
    scalars = set(events.Tags()["scalars"])
    expected = {"meta_train/return_pre", "meta_train/return_post", "meta_train/adaptation_gain",
                "meta_test/return/step_0", "meta_test/return/step_1", "meta_test/return/step_2",
                "loss/surrogate_before", "optim/kl", "optim/line_search_steps",
                "optim/accepted", "env_steps", "perf/env_steps_per_s", "time/iteration_s",
                "by_env_steps/meta_test/return/step_1"}
    assert expected <= scalars, expected - scalars
    assert [e.step for e in events.Scalars("meta_test/return/step_0")] == [0, 1, 2]
    assert "meta_test/adaptation_curve" in events.Tags()["images"]
    assert "custom_scalars__config__" in events.Tags()["tensors"]


def test_same_seed_gives_the_same_numbers(tiny_run: tuple[Path, str], tmp_path: Path) -> None:
    run_dir, _ = tiny_run
    result = metarl("train", *TINY, f"hydra.run.dir={tmp_path / 'again'}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr

    def numbers(path: Path) -> list[dict[str, object]]:
        records = [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines()]
        return [{k: v for k, v in r.items() if not k.startswith(("time/", "perf/"))}
                for r in records]

    assert numbers(tmp_path / "again") == numbers(run_dir)


def test_unknown_algo_lists_the_choices(tmp_path: Path) -> None:
    result = metarl("train", "algo=nope", cwd=tmp_path)
    assert result.returncode != 0
    assert "algo/nope" in result.stderr and "maml" in result.stderr


def test_bad_value_is_one_clear_line_and_exit_2(tmp_path: Path) -> None:
    result = metarl("train", "algo.inner_lr=-1", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == "error: algo: inner_lr must be > 0, got -1"


def test_list_and_module_entry_point(tmp_path: Path) -> None:
    listed = subprocess.run([sys.executable, "-m", "metarl_cli", "list"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0
    for choice in ("maml", "point_nav", "halfcheetah_vel", "ant_goal", "maml17_point_nav"):
        assert choice in listed.stdout


def test_train_help_shows_the_groups(tmp_path: Path) -> None:
    result = metarl("train", "--help", cwd=tmp_path)
    assert result.returncode == 0
    assert "algo: maml" in result.stdout and "env:" in result.stdout

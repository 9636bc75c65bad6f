"""A real tiny `metarl train` through the console script, and its failure modes."""

from __future__ import annotations

import json
import math
import os
import shlex
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from metarl_cli.commands.experiment import build_experiment, run_meta_test
from metarl_cli.commands.preflight import resume_command
from metarl_cli.commands.resume import checkpoint_state, restore
from metarl_cli.commands.train import train
from metarl_cli.core.build import ConfigError
from metarl_cli.core.checkpoint import Checkpoint, load_checkpoint
from metarl_cli.core.faults import RunFault, StopRequest, check_finite

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
    assert "algo: " in result.stdout and "maml" in result.stdout and "env:" in result.stdout


# --- reliability: numerical faults, skipped updates, signals, multirun, foreign checkpoints ---
IN_PROCESS = ["iterations=2", "meta_batch_size=2", "algo.rollouts_per_task=4",
              "eval.num_tasks=2", "eval.rollouts=2", "eval.steps=1", "env.horizon=10",
              "model.hidden_sizes=[8]", "torch_threads=1", "progress=quiet"]


def test_a_nan_stops_the_run_naming_iteration_and_quantity(tmp_path: Path) -> None:
    result = metarl("train", *TINY, "algo.outer_step=vpg", "optimizer=sgd", "optimizer.lr=1e30",
                    f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: iteration 1: ") and "nan" in last, result.stderr
    checkpoint = tmp_path / "run" / "checkpoints" / "latest.pt"
    assert f"the last good checkpoint is {checkpoint} (iteration 0)" in last
    assert load_checkpoint(checkpoint)["iteration"] == 0
    assert "Traceback" not in result.stderr


def test_check_finite_names_the_quantity(compose_config: Callable[..., DictConfig]) -> None:
    exp = build_experiment(compose_config(*IN_PROCESS))
    check_finite(3, {"loss/surrogate_before": 0.5}, exp.learner)
    with pytest.raises(RunFault, match="iteration 3: loss/surrogate_before is nan"):
        check_finite(3, {"loss/surrogate_before": math.nan}, exp.learner)
    with torch.no_grad():
        exp.learner.policy.log_std[0] = math.inf
    with pytest.raises(RunFault, match=r"iteration 4: learner\.policy\.log_std holds nan or inf"):
        check_finite(4, {}, exp.learner)


def test_a_rejected_trpo_step_is_reported_and_counted(
        compose_config: Callable[..., DictConfig], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = compose_config(*IN_PROCESS)
    original = type(build_experiment(cfg).learner).train_step

    def rejected(self: object, tasks: list[object]) -> dict[str, float]:
        return original(self, tasks) | {"optim/accepted": 0.0}

    monkeypatch.setattr(type(build_experiment(cfg).learner), "train_step", rejected)
    train(cfg, tmp_path, {"algo": "maml", "env": "point_nav"}, [])
    assert "iteration 2: the line search found no acceptable step; the update was skipped" \
        in capsys.readouterr().err
    assert json.loads((tmp_path / "summary.json").read_text())["skipped_updates"] == 2
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["optim/accepted"] for r in records if "optim/accepted" in r] == [0.0, 0.0]


def test_sigint_is_a_request_to_stop_not_an_exception() -> None:
    before = signal.getsignal(signal.SIGINT)  # SIG_IGN in a background job, else Python's
    with StopRequest() as stop:
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.signum == signal.SIGINT
    assert signal.getsignal(signal.SIGINT) is before


def test_a_checkpoint_of_another_algorithm_is_refused(
        compose_config: Callable[..., DictConfig], tmp_path: Path) -> None:
    cfg = compose_config(*IN_PROCESS)
    exp = build_experiment(cfg)
    state = checkpoint_state(exp, cfg, 1, 100, run_meta_test(exp, cfg, 0), {})
    foreign = Checkpoint(tmp_path / "latest.pt", state | {"algo": "metarl_cli.algos.rl2.RL2"})
    with pytest.raises(ConfigError, match="was written by algo 'metarl_cli.algos.rl2.RL2', not "
                                          "'metarl_cli.algos.maml.MAML'"):
        restore(exp, cfg, foreign)
    wider = build_experiment(compose_config(*IN_PROCESS, "model.hidden_sizes=[9]"))
    with pytest.raises(ConfigError, match="latest.pt does not fit this config"):
        restore(wider, cfg, Checkpoint(tmp_path / "latest.pt", state))


def test_multirun_reports_the_failing_job_and_finishes_the_others(tmp_path: Path) -> None:
    result = metarl("train", "-m", *TINY, "iterations=1", "algo.inner_lr=0.5,-1,0.1",
                    f"hydra.sweep.dir={tmp_path / 'sweep'}", cwd=tmp_path)
    assert result.returncode == 1
    assert "error: job 1 (" in result.stderr and "inner_lr must be > 0, got -1" in result.stderr
    assert "error: 1 of 3 multirun jobs failed" in result.stderr
    assert len(list((tmp_path / "sweep").rglob("summary.json"))) == 2


def test_a_failed_checkpoint_write_stops_the_run_keeping_the_last_one(
        compose_config: Callable[..., DictConfig], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    import metarl_cli.commands.train as train_module

    real_save = train_module.save_checkpoint

    def disk_fills_after_iteration_1(state: dict[str, object], path: Path, **kw: bool) -> None:
        if state["iteration"] >= 2:
            raise OSError(28, "No space left on device")
        real_save(state, path, **kw)

    monkeypatch.setattr(train_module, "save_checkpoint", disk_fills_after_iteration_1)
    with pytest.raises(RunFault, match=r"iteration 2: cannot write a checkpoint .*No space "
                                       r"left.*last good checkpoint is .*latest.pt \(iteration 1"):
        train(compose_config(*IN_PROCESS, "iterations=3"), tmp_path,
              {"algo": "maml", "env": "point_nav"}, [])
    assert load_checkpoint(tmp_path / "checkpoints" / "latest.pt")["iteration"] == 1


def test_the_resume_hint_is_a_command_that_parses() -> None:
    assert resume_command(Path("/runs/12-00-00")) == "metarl train resume=/runs/12-00-00"
    # a multirun job's directory has "=" in it: quoted for Hydra, then for the shell
    assert resume_command(Path("/mr/algo.inner_lr=0.1/seed=0")) == \
        "metarl train \"resume='/mr/algo.inner_lr=0.1/seed=0'\""
    parsed = OverridesParser.create().parse_overrides(
        shlex.split(resume_command(Path("/mr/it's here/seed=0")))[2:])
    assert parsed[0].value() == "/mr/it's here/seed=0"

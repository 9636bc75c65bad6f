"""`metarl eval` on a finished tiny run: the run's own numbers again, and its failure modes."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from metarl_cli.commands.eval import main, parse_args
from metarl_cli.core.checkpoint import load_checkpoint, save_checkpoint

TINY = ["iterations=2", "meta_batch_size=2", "algo.rollouts_per_task=2", "eval.num_tasks=2",
        "eval.rollouts=2", "eval.steps=2", "env.horizon=10", "model.hidden_sizes=[8]",
        "checkpoint_every=1", "eval_every=1", "torch_threads=1"]


def metarl(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["metarl", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("eval")
    result = metarl("train", *TINY, f"hydra.run.dir={tmp / 'run'}", cwd=tmp)
    assert result.returncode == 0, result.stderr
    return tmp / "run"


@pytest.fixture(autouse=True)
def torch_state_restored() -> Iterator[None]:
    """In-process evals set torch's thread count and seed: give them back to later tests."""
    threads, rng = torch.get_num_threads(), torch.get_rng_state()
    yield
    torch.set_num_threads(threads)
    torch.set_rng_state(rng)


def run_eval(*args: str, capsys: pytest.CaptureFixture[str]) -> str:
    """stdout of an in-process ``metarl eval`` that must succeed."""
    main(list(args))
    return capsys.readouterr().out


def evals(run: Path) -> list[dict[str, object]]:
    return [json.loads(p.read_text()) | {"file": p} for p in sorted(run.glob("eval_*.json"))]


def eval_error(*args: str, capsys: pytest.CaptureFixture[str]) -> str:
    """stderr of an in-process ``metarl eval`` that must fail with exit code 2."""
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    assert exit_info.value.code == 2
    return capsys.readouterr().err


def test_reproduces_the_runs_final_meta_test(run_dir: Path) -> None:
    # Through the console script once, as a user runs it.
    before = len(evals(run_dir))
    result = metarl("eval", f"run={run_dir}", cwd=run_dir.parent)
    assert result.returncode == 0, result.stderr
    record = evals(run_dir)[before]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert record["iteration"] == 2 and record["task_seed"] == summary["task_seed"]
    assert record["meta_test"]["return_mean"] == summary["meta_test"]["return_mean"]
    assert record["meta_test"]["return_std"] == summary["meta_test"]["return_std"]
    assert result.stdout.strip().splitlines()[-1] == f"eval: {record['file']}"
    events = EventAccumulator(str(Path(str(record["file"])).with_suffix("") / "tb")).Reload()
    logged = [e.value for e in events.Scalars("meta_test/return/step_2")]
    assert logged == pytest.approx([summary["meta_test"]["return_mean"][2]])


def test_other_checkpoint_tasks_and_settings(run_dir: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    run_eval(f"run={run_dir}", "checkpoint=1", "eval.num_tasks=3", "eval.steps=1",
             "eval.task_seed=77", capsys=capsys)
    record = evals(run_dir)[-1]
    assert record["iteration"] == 1 and record["task_seed"] == 77
    assert record["checkpoint"].endswith("iter_000001.pt")
    assert len(record["meta_test"]["return_mean"]) == 2
    assert len(record["meta_test"]["returns_per_task"][0]) == 3
    # The meta-test at iteration 1 during training used the same protocol on task_seed 1000.
    records = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    at_1 = next(r for r in records if r["iteration"] == 1 and "meta_test/return" in r)
    run_eval(f"run={run_dir}", "checkpoint=1", capsys=capsys)
    assert evals(run_dir)[-1]["meta_test"]["return_mean"] == at_1["meta_test/return"]
    # A list-valued override (the step sizes of the adaptation steps) reaches the record as a list.
    run_eval(f"run={run_dir}", "checkpoint=1", "algo.inner_lrs=[0.3,0.1]", capsys=capsys)
    record = evals(run_dir)[-1]
    assert record["overrides"] == {"algo.inner_lrs": [0.3, 0.1]}
    assert record["meta_test"]["return_mean"][0] == at_1["meta_test/return"][0]
    assert record["meta_test"]["return_mean"][1:] != at_1["meta_test/return"][1:]


def test_a_step_budget_of_whole_episodes_gives_the_runs_numbers(
        run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # No episode of the tiny run reaches its goal within 0.01 in 10 steps, so a budget of
    # 2 rollouts x 10 steps per task is one round of the same episodes
    run_eval(f"run={run_dir}", "eval.step_budget=20", capsys=capsys)
    record = evals(run_dir)[-1]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert record["meta_test"]["step_budget"] == 20
    assert record["meta_test"]["return_mean"] == summary["meta_test"]["return_mean"]


def test_held_out_tasks_from_a_legacy_numpy_seed(run_dir: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    out = run_eval(f"run={run_dir}", "eval.legacy_task_seed=1", capsys=capsys)
    assert "2 held-out tasks from numpy's np.random.seed(1):" in out
    record = evals(run_dir)[-1]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["meta_test"]["legacy_task_seed"] is None
    assert record["meta_test"]["legacy_task_seed"] == 1
    assert record["meta_test"]["return_mean"][0] != summary["meta_test"]["return_mean"][0]
    # eval.task_seed names the held-out tasks by itself; with both, the command refuses.
    err = eval_error(f"run={run_dir}", "eval.task_seed=5", "eval.legacy_task_seed=1",
                     capsys=capsys)
    assert err.startswith("error: eval.task_seed: held-out tasks come from one seed")
    # A run whose config sets the legacy seed (the maml17 presets) takes eval.task_seed instead.
    legacy = tmp_path / "legacy"
    shutil.copytree(run_dir / ".hydra", legacy / ".hydra")
    shutil.copytree(run_dir / "checkpoints", legacy / "checkpoints")
    config = OmegaConf.load(legacy / ".hydra" / "config.yaml")
    config.eval.legacy_task_seed = 1
    OmegaConf.save(config, legacy / ".hydra" / "config.yaml")
    run_eval(f"run={legacy}", "eval.task_seed=77", capsys=capsys)
    run_eval(f"run={run_dir}", "eval.task_seed=77", capsys=capsys)
    assert evals(legacy)[-1]["meta_test"]["legacy_task_seed"] is None
    assert evals(legacy)[-1]["meta_test"]["return_mean"] == \
        evals(run_dir)[-1]["meta_test"]["return_mean"]


def test_missing_run_checkpoint_and_keys_are_one_line_errors(
        run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cases = [
        ([f"run={tmp_path / 'nope'}"], "error: run: "),
        ([], "error: run: missing"),
        ([f"run={run_dir}", "checkpoint=99"], "error: checkpoint: "),
        ([f"run={run_dir}", "eval.num_taks=3"], "error: eval.num_taks: not a key of"),
        ([f"run={run_dir}", "+eval.num_taks=3"], "error: eval.num_taks: unknown key; valid "),
        ([f"run={run_dir}", "algo=pearl"], "error: algo: eval meta-tests the run's own algo"),
        ([f"run={run_dir}", "checkpoint="], "error: checkpoint: empty"),
    ]
    old = tmp_path / "old"
    shutil.copytree(run_dir / ".hydra", old / ".hydra")
    shutil.copytree(run_dir / "checkpoints", old / "checkpoints")
    config = OmegaConf.load(old / ".hydra" / "config.yaml")
    del config.eval["rollouts"]
    OmegaConf.save(config, old / ".hydra" / "config.yaml")
    cases.append(([f"run={old}"], "error: eval.rollouts: missing from"))
    for name, text in [("broken", "a: [b\n"), ("list", "- 1\n")]:  # a damaged config.yaml
        (tmp_path / name / ".hydra").mkdir(parents=True)
        (tmp_path / name / ".hydra" / "config.yaml").write_text(text)
        cases.append(([f"run={tmp_path / name}"], "error: run: "))
    for args, start in cases:
        err = eval_error(*args, capsys=capsys)
        assert err.startswith(start) and len(err.strip().splitlines()) == 1, (args, err)
    assert "iter_000001.pt" in eval_error(f"run={run_dir}", "checkpoint=99", capsys=capsys)
    # An older run works once the missing key is supplied.
    run_eval(f"run={old}", "eval.rollouts=2", capsys=capsys)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert evals(old)[-1]["meta_test"]["return_mean"] == summary["meta_test"]["return_mean"]
    # An option newer than the run is added with +key=value (here the family's goal tolerance,
    # deleted from the saved config); without the + it is refused, and the message says so.
    config = OmegaConf.load(old / ".hydra" / "config.yaml")
    tolerance = config.env.family.pop("tolerance")
    OmegaConf.save(config, old / ".hydra" / "config.yaml")
    args = (f"run={old}", "eval.rollouts=2")
    err = eval_error(*args, f"env.family.tolerance={tolerance}", capsys=capsys)
    assert "+env.family.tolerance=<value>" in err and len(err.strip().splitlines()) == 1
    out = run_eval(*args, f"+env.family.tolerance={tolerance}", capsys=capsys)
    assert evals(old)[-1]["meta_test"]["return_mean"] == summary["meta_test"]["return_mean"]
    assert "note:" not in out and summary["versions"] == evals(old)[-1]["versions"]
    # A checkpoint written with other package versions is meta-tested, with a note naming them.
    ckpt = old / "checkpoints" / "latest.pt"
    state = load_checkpoint(ckpt)
    state["versions"]["mujoco"] = "2.0.0"
    save_checkpoint(state, ckpt)
    out = run_eval(*args, f"+env.family.tolerance={tolerance}", capsys=capsys)
    assert "note: the checkpoint was written with mujoco 2.0.0 (now " in out
    assert evals(old)[-1]["version_changes"].startswith("mujoco 2.0.0 (now ")


def test_plus_adds_config_keys_and_is_ignored_on_the_commands_own() -> None:
    run_dir, checkpoint, overrides = parse_args(
        ["+run=some/run", "+checkpoint=3", "+eval.task_seed=7", "+env.family.x=1", "seed=2"])
    assert (str(run_dir), checkpoint) == ("some/run", "3")
    assert overrides == {"eval.task_seed": 7, "+env.family.x": 1, "seed": 2}


def test_a_record_that_cannot_be_written_leaves_no_files(run_dir: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    before = sorted(p.name for p in run.iterdir())
    monkeypatch.setattr("metarl_cli.commands.eval.package_versions", lambda: {"torch": {1}})
    with pytest.raises(TypeError, match="not JSON serializable"):
        main([f"run={run}"])
    assert sorted(p.name for p in run.iterdir()) == before

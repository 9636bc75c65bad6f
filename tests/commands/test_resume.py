"""Resume: a run killed at a random moment and resumed ends with the numbers of an
uninterrupted run, to the bit; SIGTERM stops after the iteration with a checkpoint."""

from __future__ import annotations

import json
import random
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from metarl_cli.core.checkpoint import load_checkpoint, save_checkpoint
from metarl_cli.core.paths import run_dir_lock

ITERATIONS = 10
RUN = [f"iterations={ITERATIONS}", "eval_every=4", "checkpoint_every=5", "meta_batch_size=2",
       "algo.rollouts_per_task=4", "eval.num_tasks=2", "eval.rollouts=2", "eval.steps=1",
       "env.horizon=20", "model.hidden_sizes=[16,16]", "torch_threads=1", "progress=lines"]
TIMING = ("time/", "perf/")


def metarl(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["metarl", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def start(*args: str, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(["metarl", *args], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def wait_for_iteration(proc: subprocess.Popen[str], iteration: int) -> list[str]:
    """Read the progress lines until iteration ``iteration`` is done."""
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if line.startswith(f"iter {iteration:>4}/"):
            return seen
    raise AssertionError(f"the run ended before iteration {iteration}:\n" + "".join(seen))


def numbers(run_dir: Path) -> dict[str, Any]:
    """Everything a run computed, without wall-clock timings."""
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    events = EventAccumulator(str(run_dir / "tb")).Reload()
    scalars = {tag: [(e.step, e.value) for e in events.Scalars(tag)]
               for tag in events.Tags()["scalars"] if not tag.startswith(TIMING)}
    summary = json.loads((run_dir / "summary.json").read_text())
    return {"metrics": [{k: v for k, v in r.items() if not k.startswith(TIMING)}
                        for r in records],
            "scalars": scalars, "images": len(events.Images("meta_test/adaptation_curve")),
            "meta_test": summary["meta_test"], "env_steps": summary["env_steps"]}


def assert_same_run(run_dir: Path, reference: Path) -> None:
    assert numbers(run_dir) == numbers(reference)
    final, expected = (load_checkpoint(d / "checkpoints" / "latest.pt") for d in
                       (run_dir, reference))
    assert final["iteration"] == expected["iteration"] == ITERATIONS
    for name, tensor in expected["learner"]["policy"].items():
        assert torch.equal(final["learner"]["policy"][name], tensor), name
    assert final["sampler"]["rng"] == expected["sampler"]["rng"]
    assert torch.equal(final["sampler"]["generator"], expected["sampler"]["generator"])


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same run, never interrupted."""
    tmp = tmp_path_factory.mktemp("reference")
    result = metarl("train", *RUN, f"hydra.run.dir={tmp / 'run'}", cwd=tmp)
    assert result.returncode == 0, result.stderr
    return tmp / "run"


def test_sigkill_at_a_random_moment_then_resume_is_bitwise_identical(
        reference: Path, tmp_path: Path) -> None:
    seed = random.randrange(10**6)
    rng = random.Random(seed)
    run_dir = tmp_path / "run"
    proc = start("train", *RUN, f"hydra.run.dir={run_dir}", cwd=tmp_path)
    wait_for_iteration(proc, rng.randint(1, ITERATIONS - 3))
    time.sleep(rng.uniform(0.0, 0.5))  # anywhere in the next iteration(s), saves included
    proc.kill()
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, f"random seed {seed}"

    # continued on "another machine": one physics thread instead of the default, same numbers
    resumed = metarl("train", f"resume={run_dir}", "sampler.num_threads=1", cwd=tmp_path)
    assert resumed.returncode == 0, f"random seed {seed}: {resumed.stderr}"
    assert f"resuming {run_dir} at iteration" in resumed.stderr
    assert_same_run(run_dir, reference)
    assert "sampler.num_threads=1" in (run_dir / ".hydra" / "overrides.yaml").read_text()


def test_sigterm_checkpoints_then_resume_auto_finishes_identically(
        reference: Path, tmp_path: Path) -> None:
    command = ["train", *RUN, "resume=auto"]  # the same line launches and relaunches the run
    proc = start(*command, cwd=tmp_path)
    wait_for_iteration(proc, 3)
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, output
    (run_dir,) = (tmp_path / "outputs").glob("*/*")
    assert f"resume with: metarl train resume={run_dir}" in output
    stopped_at = load_checkpoint(run_dir / "checkpoints" / "latest.pt")["iteration"]
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert 3 <= stopped_at < ITERATIONS
    assert max(r["iteration"] for r in records) == stopped_at  # logs flushed up to the checkpoint

    resumed = metarl(*command, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming {run_dir} at iteration {stopped_at}" in resumed.stderr
    assert list((tmp_path / "outputs").glob("*/*")) == [run_dir]
    assert_same_run(run_dir, reference)


def test_resuming_a_finished_run_changes_nothing(reference: Path, tmp_path: Path) -> None:
    before = numbers(reference)
    result = metarl("train", f"resume={reference}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert numbers(reference) == before


def test_resuming_with_other_package_versions_says_so(reference: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(reference, run_dir)
    for path in (run_dir / "checkpoints").glob("*.pt"):
        state = load_checkpoint(path)
        state["versions"]["numpy"] = "1.0.0"
        save_checkpoint(state, path)
    result = metarl("train", f"resume={run_dir}", f"iterations={ITERATIONS + 1}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "was written with numpy 1.0.0 (now " in result.stderr
    assert "the run goes on" in result.stderr and (run_dir / "summary.json").is_file()


def test_a_resumed_run_keeps_its_settings(reference: Path, tmp_path: Path) -> None:
    before = sorted(p.relative_to(reference) for p in reference.rglob("*"))
    result = metarl("train", f"resume={reference}", "seed=5", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: resume: seed=5 differs from the settings of "
                                    f"{reference}"), result.stderr
    assert ("only iterations, torch_threads, progress, device, sampler.num_threads, "
            "keep_freed_memory may change") in result.stderr
    assert sorted(p.relative_to(reference) for p in reference.rglob("*")) == before


@pytest.mark.parametrize(("change", "message"), [
    ("iterations=abc", "error: iterations: expected an integer >= 0, got 'abc'"),
    (f"iterations={ITERATIONS - 1}", f"error: iterations: the run already did {ITERATIONS} "
                                     f"iterations; give iterations>={ITERATIONS} to continue it"),
])
def test_a_refused_resume_leaves_the_run_as_it_was(reference: Path, tmp_path: Path, change: str,
                                                   message: str) -> None:
    files = {p: p.read_bytes() for p in reference.rglob("*") if p.is_file()}
    result = metarl("train", f"resume={reference}", change, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == message, result.stderr
    assert {p: p.read_bytes() for p in reference.rglob("*") if p.is_file()} == files


def test_a_new_run_is_refused_a_directory_that_holds_a_run(reference: Path,
                                                           tmp_path: Path) -> None:
    files = {p: p.read_bytes() for p in reference.rglob("*") if p.is_file()}
    result = metarl("train", *RUN, "seed=5", f"hydra.run.dir={reference}", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == (
        f"error: hydra.run.dir: {reference} already holds a run; continue it with metarl train "
        f"resume={reference}, or choose another directory")
    assert {p: p.read_bytes() for p in reference.rglob("*") if p.is_file()} == files


def test_a_run_without_checkpoints_is_not_started_over(reference: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(reference, run)
    shutil.rmtree(run / "checkpoints")
    files = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    result = metarl("train", f"resume={run}", f"iterations={ITERATIONS + 2}", cwd=tmp_path)
    assert result.returncode == 2
    assert "has no checkpoint to continue from" in result.stderr.splitlines()[-1]
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == files


def test_a_second_process_may_not_train_in_a_run_directory_in_use(reference: Path,
                                                                  tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(reference, run)
    with run_dir_lock(run):  # as a metarl train still running there holds it
        result = metarl("train", f"resume={run}", f"iterations={ITERATIONS + 2}", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == (
        f"error: run_dir: {run} is in use by another process that trains there; wait for it "
        "to end, or stop it first")
    assert numbers(run) == numbers(reference)


def test_resume_with_another_run_dir_says_what_conflicts(reference: Path, tmp_path: Path) -> None:
    result = metarl("train", f"resume={reference}", f"hydra.run.dir={tmp_path / 'other'}",
                    cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == (
        f"error: resume: {reference} is a run, and a resumed run continues in its own "
        f"directory; drop hydra.run.dir (or set it to {reference})")
    assert not (tmp_path / "other").exists()

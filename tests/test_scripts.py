"""The benchmark scripts run end to end on a tiny batch and keep their machine-readable last
line; their replays reproduce the sampler's physics exactly. Timings are never asserted."""

from __future__ import annotations

import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
NUMBER = r"([0-9.]+|inf)"


def run_script(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPTS / name), *args], capture_output=True,
                          text=True, timeout=300, cwd=SCRIPTS.parent.parent)


def last_line_values(stdout: str, keys: list[str]) -> dict[str, float]:
    last = stdout.strip().splitlines()[-1]
    match = re.fullmatch(" ".join(f"{key}={NUMBER}" for key in keys), last)
    assert match, f"last line not machine-readable: {last!r}"
    return {key: float(value) for key, value in zip(keys, match.groups(), strict=True)}


@pytest.mark.parametrize("family", ["halfcheetah", "ant"])
def test_bench_sampler_tiny_batch(family: str) -> None:
    done = run_script("bench_sampler.py", "--family", family, "--num-envs", "4", "--tasks", "2",
                      "--horizon", "5", "--hidden-sizes", "8", "--num-threads", "2")
    assert done.returncode == 0, done.stderr
    assert re.search(r"reproduce its final state where the episode ran to the end "
                     r"\([1-4] of 4\): max \|qpos difference\| = 0\.0e\+00", done.stdout)
    values = last_line_values(done.stdout, ["ratio_vs_physics", "ratio_vs_gymnasium",
                                            "steps_per_s"])
    assert all(v > 0 and math.isfinite(v) for v in values.values())
    # gymnasium's steps are counted as taken: at most 4 environments x 5 steps
    gym_row = re.search(r"\(b\) gymnasium SyncVectorEnv \+ policy +[0-9,]+ +[0-9.]+ +(\d+)",
                        done.stdout)
    assert gym_row and 0 < int(gym_row.group(1)) <= 20, done.stdout


def test_bench_iteration_tiny_batch() -> None:
    done = run_script("bench_iteration.py", "--quick", "meta_batch_size=2",
                      "algo.rollouts_per_task=2", "env.horizon=5", "torch_threads=1")
    assert done.returncode == 0, done.stderr
    for phase in ("sampling before adaptation", "inner adaptation", "sampling after adaptation",
                  "outer TRPO step", "whole iteration"):
        assert phase in done.stdout
    assert "env steps 40 " in done.stdout  # 2 tasks x 2 rollouts x 5 steps, before and after
    values = last_line_values(done.stdout, ["iteration_s", "physics_s", "ratio_vs_physics",
                                            "peak_rss_mb"])
    assert values["iteration_s"] > 0 and values["peak_rss_mb"] > 0


@pytest.mark.parametrize(("script", "args", "message"), [
    ("bench_iteration.py", ["algo=nope"], "error: algo: unknown choice 'nope'"),
    ("bench_iteration.py", ["algo.inner_lr=-1"], "error: algo: inner_lr must be > 0"),
    ("bench_iteration.py", ["env=point_nav"], "error: env: the physics bound needs a MuJoCo"),
    ("bench_iteration.py", ["algo=reptile"], "error: algo: this script times one MAML"),
    ("bench_sampler.py", ["--num-envs", "4", "--tasks", "3"], "--tasks (3) must divide"),
    ("bench_sampler.py", ["--hidden-sizes", "0"], "--hidden-sizes: every layer needs"),
])
def test_bad_input_is_one_line_and_exit_2(script: str, args: list[str], message: str) -> None:
    done = run_script(script, *args)
    assert done.returncode == 2
    assert message in done.stderr.strip().splitlines()[-1]
    assert "Traceback" not in done.stderr

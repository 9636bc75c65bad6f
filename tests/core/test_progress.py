"""Progress display modes and the end-of-run line."""

from __future__ import annotations

import io
import os

import pytest

from metarl_cli.core.build import ConfigError
from metarl_cli.core.progress import Progress, resolve_mode, run_summary

METRICS = {"meta_train/return_pre": -20.5, "meta_train/return_post": -15.25, "optim/kl": 0.01}


@pytest.mark.parametrize("setting, multirun, tty, mode", [
    ("auto", False, True, "bar"), ("auto", False, False, "lines"), ("auto", True, True, "quiet"),
    ("lines", True, True, "lines"), ("quiet", False, True, "quiet"), ("bar", True, False, "bar"),
])
def test_auto_is_quiet_in_multirun(setting: str, multirun: bool, tty: bool, mode: str) -> None:
    assert resolve_mode(setting, multirun, tty) == mode


def test_bad_setting_names_the_key() -> None:
    with pytest.raises(ConfigError, match="progress: expected one of auto, bar, lines, quiet"):
        resolve_mode("loud", False, False)


def test_lines_mode_prints_each_iteration() -> None:
    out = io.StringIO()
    progress = Progress("lines", 3, out)
    progress.meta_test(0, [-30.0, -20.0])
    progress.iteration(1, METRICS, 2000, 0.5)
    no_kl = {k: v for k, v in METRICS.items() if k != "optim/kl"}  # e.g. PEARL, RL²
    progress.iteration(2, no_kl, 2000, 0.5)
    progress.close()
    lines = out.getvalue().splitlines()
    assert lines[0] == "meta-test before training: -30.0 -20.0"
    assert lines[1].startswith("iter    1/3  return pre   -20.50  post   -15.25  kl 0.0100")
    assert "4,000 steps/s" in lines[1]
    assert "kl" not in lines[2] and "4,000 steps/s" in lines[2]


def test_bar_mode_shows_rate_and_returns_and_quiet_mode_nothing() -> None:
    out = io.StringIO()
    progress = Progress("bar", 2, out)
    progress.meta_test(0, [-30.0])
    progress.iteration(1, METRICS, 2000, 0.5)
    progress.iteration(2, METRICS, 2000, 0.5)
    progress.close()
    text = out.getvalue()
    assert "meta-test before training: -30.0" in text and "2/2" in text
    assert "4,000 steps/s" in text and "post -15.25" in text
    silent = io.StringIO()
    quiet = Progress("quiet", 2, silent)
    quiet.meta_test(0, [-30.0])
    quiet.iteration(1, METRICS, 2000, 0.5)
    quiet.close()
    assert silent.getvalue() == ""


def test_run_summary_is_one_line_of_totals() -> None:
    line = run_summary({"algo": "maml", "env": "point_nav", "seed": 2, "iterations": 40,
                        "env_steps": 1_600_000, "wall_clock_s": 200.0})
    assert line == ("maml on point_nav  seed 2  iterations 40  env steps 1,600,000  "
                    "wall 3m20s  (8,000 env steps/s)")


def test_a_reader_that_goes_away_leaves_the_run_training_quietly() -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # as `metarl train | head -2` once head has its lines
    with os.fdopen(write_end, "w") as stream:
        progress = Progress("lines", 3, stream)
        progress.meta_test(0, [-3.0, -1.0])  # BrokenPipeError inside, not raised
        progress.iteration(1, {"meta_train/return_pre": -3.0}, 10, 0.1)
        assert progress.mode == "quiet"

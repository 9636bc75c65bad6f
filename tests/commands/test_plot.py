"""`metarl plot` on hand-made run directories: its numbers against hand-computed ones."""

from __future__ import annotations

import csv
import json
import subprocess
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from metarl_cli.commands.plot import (
    PlotError,
    aggregate,
    figure,
    find_runs,
    group_runs,
    load_run,
    main,
)


def make_run(path: Path, overrides: list[str], final: list[float],
             tests: list[tuple[int, int, float]]) -> None:
    """A run directory as metarl train leaves it, with only what plot reads."""
    (path / ".hydra").mkdir(parents=True)
    OmegaConf.save(OmegaConf.create(overrides), path / ".hydra" / "overrides.yaml")
    (path / "summary.json").write_text(json.dumps({"meta_test": {"return_mean": final}}))
    records = [{"iteration": i, "env_steps": s, "meta_test/return": [v - 1.0, v]}
               for i, s, v in tests]
    records += [{"iteration": i, "env_steps": s, "meta_train/return_post": v}
                for i, s, v in tests if i > 0]
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    root = tmp_path / "sweep"
    common = ["iterations=10", "torch_threads=1"]
    make_run(root / "lr=0.1" / "seed=0", [*common, "algo.inner_lr=0.1", "seed=0"],
             [-12.0, -7.0], [(0, 0, -20.0), (10, 1000, -7.0)])
    make_run(root / "lr=0.1" / "seed=1", [*common, "algo.inner_lr=0.1", "seed=1"],
             [-10.0, -5.0], [(0, 0, -22.0), (10, 1200, -5.0)])
    for seed, value in enumerate([0.0, 0.0, 3.0]):
        make_run(root / "lr=0.5" / f"seed={seed}", [*common, "algo.inner_lr=0.5", f"seed={seed}"],
                 [value, 2 * value], [(0, 0, value), (10, 1000, 2 * value)])
    return root


def read_rows(path: Path) -> dict[tuple[str, str, str], dict[str, str]]:
    with open(path, newline="") as f:
        return {(r["group"], r["curve"], r["x"]): r for r in csv.DictReader(f)}


def test_numbers_match_the_hand_computed_means_and_intervals(sweep: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]
                                                             ) -> None:
    out = tmp_path / "fig" / "cmp.png"
    main([str(sweep), "--out", str(out)])
    assert out.stat().st_size > 0
    rows = read_rows(out.with_suffix(".csv"))

    def numbers(group: str, curve: str, x: str) -> tuple[float, float, float, int]:
        r = rows[(group, curve, x)]
        return float(r["estimate"]), float(r["ci_low"]), float(r["ci_high"]), int(r["runs"])

    # Two seeds {a, b}: mean (a+b)/2, bootstrap interval [a, b] (see tests/core/test_stats.py).
    assert numbers("algo.inner_lr=0.1", "adaptation", "0") == (-11.0, -12.0, -10.0, 2)
    assert numbers("algo.inner_lr=0.1", "adaptation", "1") == (-6.0, -7.0, -5.0, 2)
    # Three seeds {0, 0, 3}: mean 1, interval [0, 3]; {0, 0, 6}: mean 2, interval [0, 6].
    assert numbers("algo.inner_lr=0.5", "adaptation", "0") == (1.0, 0.0, 3.0, 3)
    assert numbers("algo.inner_lr=0.5", "adaptation", "1") == (2.0, 0.0, 6.0, 3)
    # Learning curve: x is the mean env steps of the seeds at that meta-test.
    assert numbers("algo.inner_lr=0.1", "learning", "1100.0") == (-6.0, -7.0, -5.0, 2)
    assert numbers("algo.inner_lr=0.1", "learning", "0.0") == (-21.0, -22.0, -20.0, 2)
    table = out.with_suffix(".md").read_text()
    assert "| `algo.inner_lr=0.1` | 2 | -11.00 [-12.00, -10.00] | -6.00 [-7.00, -5.00] |" in table
    assert "| `algo.inner_lr=0.5` | 3 | 1.00 [0.00, 3.00] | 2.00 [0.00, 6.00] |" in table
    assert table in capsys.readouterr().out


def test_metric_picks_another_quantity(sweep: Path, tmp_path: Path) -> None:
    out = tmp_path / "post.png"
    main([str(sweep), "--metric", "meta_train/return_post", "--out", str(out)])
    rows = read_rows(out.with_suffix(".csv"))
    learning = [k for k in rows if k[1] == "learning"]
    assert sorted(learning) == [("algo.inner_lr=0.1", "learning", "1100.0"),
                                ("algo.inner_lr=0.5", "learning", "1000.0")]
    main([str(sweep), "--metric", "step_0", "--out", str(out)])
    rows = read_rows(out.with_suffix(".csv"))
    assert float(rows[("algo.inner_lr=0.1", "learning", "1100.0")]["estimate"]) == -7.0


def test_single_runs_and_errors(sweep: Path, tmp_path: Path) -> None:
    out = tmp_path / "one.png"
    main([str(sweep / "lr=0.1" / "seed=0"), str(sweep / "lr=0.5" / "seed=2"), "--out", str(out)])
    rows = read_rows(out.with_suffix(".csv"))
    assert rows[("algo.inner_lr=0.5", "adaptation", "0")]["ci_low"] == "3.0"
    result = subprocess.run(["metarl", "plot", str(tmp_path / "missing")], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: {tmp_path / 'missing'}: not a directory; pass run " \
                                    "or sweep directories"
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SystemExit) as exit_info:
        main([str(empty)])
    assert exit_info.value.code == 2


def test_reach_reports_the_interpolated_steps_and_their_ratio(sweep: Path, tmp_path: Path) -> None:
    # learning curves (mean over seeds): lr=0.1 from -21 at 0 steps to -6 at 1100 steps;
    # lr=0.5 from 1 at 0 steps to 2 at 1000 steps
    out = tmp_path / "cmp.png"
    main([str(sweep), "--out", str(out), "--reach", "-11"])
    table = out.with_suffix(".md").read_text()
    # -11 is 10/15 of the way from -21 to -6: 1100 * 2/3 steps; lr=0.5 starts above it, at 0
    # steps, so there is no ratio to it
    assert "| `algo.inner_lr=0.1` | 733 |  |" in table
    assert "| `algo.inner_lr=0.5` | 0 |  |" in table
    main([str(sweep), "--out", str(out), "--reach", "1.5"])
    table = out.with_suffix(".md").read_text()
    assert "| `algo.inner_lr=0.1` | not reached |" in table
    assert "| `algo.inner_lr=0.5` | 500 | 1.0x |" in table


def test_log_steps_puts_the_learning_curve_on_a_log_axis_and_the_legend_below(
        sweep: Path) -> None:
    rows = aggregate(group_runs([load_run(p, "last") for p in find_runs([sweep])]))
    fig = figure(rows, "last", "mean", 0.95, log_steps=True)
    left, right = fig.axes
    assert right.get_xscale() == "symlog" and left.get_xscale() == "linear"
    assert len(fig.legends) == 1 and len(fig.legends[0].get_texts()) == 2  # one entry per group


def test_budget_compares_every_run_at_its_last_meta_test_within_the_steps(
        sweep: Path, tmp_path: Path) -> None:
    stopped = tmp_path / "stopped"
    make_run(stopped, ["iterations=10", "torch_threads=1", "algo.inner_lr=0.9", "seed=0"],
             [], [(0, 0, -30.0), (5, 500, -8.0), (10, 1100, 4.0)])
    (stopped / "summary.json").unlink()  # stopped before its end: no summary
    with pytest.raises(PlotError, match="--budget STEPS"):
        find_runs([stopped])
    out = tmp_path / "budget.png"
    main([str(sweep), str(stopped), "--out", str(out), "--budget", "1000"])
    rows = read_rows(out.with_suffix(".csv"))
    # lr=0.9 at 500 steps (its 1100-step meta-test is over budget): [-9, -8]; lr=0.1's second
    # seed reached 1000 steps only at 1200, so its adaptation curve is the untrained one
    assert float(rows[("algo.inner_lr=0.9", "adaptation", "1")]["estimate"]) == -8.0
    assert float(rows[("algo.inner_lr=0.1", "adaptation", "1")]["estimate"]) == (-7.0 - 22.0) / 2
    assert ("algo.inner_lr=0.9", "learning", "1100.0") not in rows
    assert "within 1,000 env steps (0 to 1,000)" in out.with_suffix(".md").read_text()
    with pytest.raises(PlotError, match="no meta-test within --budget"):
        load_run(stopped, "last", budget=-1)
    with pytest.raises(SystemExit) as exit_info:
        main([str(stopped), "--budget", "-5"])
    assert exit_info.value.code == 2


def test_group_by_reads_the_composed_config_so_preset_and_command_line_runs_group_together(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # seed 0 gave inner_steps on the command line, seed 1 took it from a preset: the same run
    given, preset, other = tmp_path / "given", tmp_path / "preset", tmp_path / "other"
    make_run(given, ["algo=reptile", "algo.inner_steps=5", "seed=0"], [0.0, 4.0],
             [(0, 0, 1.0), (10, 1000, 4.0)])
    make_run(preset, ["algo=reptile", "seed=1"], [0.0, 6.0], [(0, 0, 1.0), (10, 1000, 6.0)])
    make_run(other, ["algo=reptile", "algo.inner_steps=2", "seed=0"], [0.0, 1.0],
             [(0, 0, 1.0), (10, 1000, 1.0)])
    for run, steps, later in ((given, 5, 0.05), (preset, 5, 0.05), (other, 2, 0.1)):
        OmegaConf.save(OmegaConf.create({"seed": 0, "algo": {"inner_steps": steps,
                                                              "inner_lrs": [0.1, later]}}),
                       run / ".hydra" / "config.yaml")
    assert len(group_runs([load_run(r, "last") for r in (given, preset, other)])) == 3
    out = tmp_path / "grouped.png"
    main([str(given), str(preset), str(other), "--out", str(out),
          "--group-by", "algo.inner_steps,algo.inner_lrs"])
    rows = read_rows(out.with_suffix(".csv"))
    five = "algo.inner_steps=5,algo.inner_lrs=[0.1, 0.05]"
    assert rows[(five, "adaptation", "1")]["runs"] == "2"
    assert float(rows[(five, "adaptation", "1")]["estimate"]) == 5.0
    assert rows[("algo.inner_steps=2,algo.inner_lrs=[0.1, 0.1]", "adaptation", "1")]["runs"] == "1"
    assert load_run(given, "last", group_by=["algo.nope", "algo.inner_steps"]).settings == (
        "algo.inner_steps=5",)  # a key this run's algorithm lacks is not part of its setting
    with pytest.raises(SystemExit) as exit_info:
        main([str(given), str(preset), "--group-by", "algo.inner_steps,algo.nope"])
    assert exit_info.value.code == 2
    assert "no run has the key 'algo.nope'" in capsys.readouterr().err
    (other / ".hydra" / "config.yaml").unlink()
    with pytest.raises(SystemExit) as exit_info:
        main([str(other), "--group-by", "algo.inner_steps"])
    assert exit_info.value.code == 2
    assert "no .hydra/config.yaml" in capsys.readouterr().err


def test_corrupt_files_are_errors_that_name_them_and_a_line_being_written_is_left_out(
        sweep: Path, tmp_path: Path) -> None:
    run = sweep / "lr=0.1" / "seed=0"
    summary = run / "summary.json"
    text = summary.read_text()
    for broken, error in [(text[: len(text) // 2], "JSONDecodeError"), ("{}", "KeyError")]:
        summary.write_text(broken)
        with pytest.raises(PlotError, match=f"^{summary}: not a summary written by metarl train "
                                            f"\\({error}: .*--budget$"):
            load_run(run, "last")
    summary.write_text(text)
    metrics = run / "metrics.jsonl"
    lines = metrics.read_text()
    metrics.write_text(lines + '{"iteration": 11, "env_st')  # a run writing its next record
    assert len(load_run(run, "last", budget=2000).learning) == 2
    metrics.write_text(lines + '{"iteration": 11, "env_st\n')  # cut short, then written past
    with pytest.raises(PlotError, match=f"^{metrics}, line 4: not a JSON record"):
        load_run(run, "last")


@pytest.mark.parametrize(("args", "key"), [(["--out", "table.csv"], "--out"),
                                           (["--metric", "step_x"], "--metric")])
def test_bad_out_and_metric_are_one_line_errors(sweep: Path, tmp_path: Path, args: list[str],
                                                key: str,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([str(sweep), *[str(tmp_path / a) if a.endswith(".csv") else a for a in args]])
    assert exit_info.value.code == 2
    assert f"error: {key}: " in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == [sweep]


def test_a_run_given_twice_counts_once(sweep: Path, tmp_path: Path) -> None:
    run = sweep / "lr=0.1" / "seed=0"
    (tmp_path / "link").symlink_to(run)
    assert find_runs([run, tmp_path / "link", run / ".." / "seed=0"]) == [run]

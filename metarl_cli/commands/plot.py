"""``metarl plot <run or sweep dirs...> [--metric last] [--out comparison.png]``.

Compares runs: groups them by their overrides other than the seed (``.hydra/overrides.yaml``),
or with ``--group-by KEY,...`` by those keys of their composed config (``.hydra/config.yaml``),
so that a run that took its settings from a preset and one that gave the same settings on the
command line fall in one group. Then it draws, per group, the final adaptation curve (return
after k adaptation steps, from ``summary.json``) and the learning curve (a meta-test return, or
any per-iteration metric of ``metrics.jsonl``, against environment steps), each as the mean (or
IQM) over seeds with a seeded bootstrap confidence band. The same numbers go to ``<out>.csv``
and a Markdown table in ``<out>.md``. It reads only our own summary files, never TensorBoard
events, so it is fast.

``--reach R`` adds sample efficiency: the environment steps at which each group's learning
curve first reaches R (linear between meta-tests), and each group's steps over the fewest.
``--budget S`` compares at an equal budget instead of at the end: every run's adaptation curve
is its last meta-test within S environment steps (from ``metrics.jsonl``), its learning curve
stops there, and runs that are still going or were stopped (no ``summary.json``) take part.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np

from metarl_cli.core.paths import read_saved_overrides
from metarl_cli.core.stats import ESTIMATORS, bootstrap_ci

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.backend_bases import FigureCanvasBase  # noqa: E402
from matplotlib.ticker import EngFormatter  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

# Overrides that do not change what a run computes: never a reason to split a group.
NOT_A_SETTING = ("seed", "torch_threads", "keep_freed_memory", "progress", "device", "resume",
                 "sampler.num_threads")
_ABSENT = object()


@dataclass(frozen=True)
class Run:
    path: Path
    settings: tuple[str, ...]        # what groups it: "key=value" (overrides or --group-by)
    adaptation: np.ndarray           # final meta-test return after k = 0..K adaptation steps
    adaptation_steps: int | None     # env steps at that meta-test (None: not recorded)
    learning: dict[int, tuple[int, float]]  # iteration -> (env steps, metric value)


@dataclass(frozen=True)
class Row:
    """One point of one group's curve: what the CSV and the Markdown table hold."""

    group: str
    curve: str                       # "adaptation" (x = step k) or "learning" (x = env steps)
    x: float
    iteration: int | None
    runs: int
    estimate: float
    low: float
    high: float


class PlotError(ValueError):
    """Input that cannot be plotted: the message says what to pass instead."""


def find_runs(paths: list[Path], finished: bool = True) -> list[Path]:
    """Run directories at or below ``paths``, in order, once each: those with a summary.json,
    or with ``finished=False`` those with a metrics.jsonl (also unfinished ones)."""
    marker = "summary.json" if finished else "metrics.jsonl"
    found: list[Path] = []
    for path in paths:
        if not path.is_dir():
            raise PlotError(f"{path}: not a directory; pass run or sweep directories")
        runs = [path] if (path / marker).is_file() else sorted(
            p.parent for p in path.rglob(marker))
        if not runs and finished:
            raise PlotError(f"{path}: no finished run below it (no summary.json); runs that "
                            "are still going or were stopped have none: compare them at an "
                            "equal budget with --budget STEPS")
        if not runs:
            raise PlotError(f"{path}: no run below it (no metrics.jsonl)")
        found += [r for r in runs if r.resolve() not in {f.resolve() for f in found}]
    return found


def config_settings(run_dir: Path, keys: list[str]) -> tuple[str, ...]:
    """``key=value`` for those of ``keys`` in the run's composed config, in the order given
    (a key the run's algorithm does not have, e.g. ``algo.outer_step`` for Reptile, is left out)."""
    path = run_dir / ".hydra" / "config.yaml"
    if not path.is_file():
        raise PlotError(f"{run_dir}: no .hydra/config.yaml to read --group-by from; leave "
                        "--group-by out to group by the overrides")
    config = OmegaConf.load(path)
    settings = []
    for key in keys:
        value = OmegaConf.select(config, key, default=_ABSENT, throw_on_missing=False)
        if value is _ABSENT:
            continue
        if OmegaConf.is_config(value):
            value = OmegaConf.to_container(value)
        settings.append(f"{key}={value}")
    return tuple(settings)


def check_group_by(runs: list[Run], keys: list[str]) -> None:
    """Every ``--group-by`` key is in some run's config: a typo must not pass silently."""
    for key in keys:
        if not any(s.split("=", 1)[0] == key for run in runs for s in run.settings):
            raise PlotError(f"--group-by: no run has the key {key!r} in its .hydra/config.yaml; "
                            "give dotted keys of the composed config, e.g. algo.inner_steps")


def run_settings(run_dir: Path, group_by: list[str] | None = None) -> tuple[str, ...]:
    """The sorted overrides other than the seed (and the like), or the ``group_by`` keys."""
    if group_by:
        return config_settings(run_dir, group_by)
    path = run_dir / ".hydra" / "overrides.yaml"
    overrides = read_saved_overrides(path) if path.is_file() else []
    keep = [o for o in overrides
            if o.split("=", 1)[0].lstrip("+~") not in NOT_A_SETTING and not o.startswith("hydra")]
    return tuple(sorted(keep))


def metric_value(record: dict[str, object], metric: str) -> float | None:
    """``metric`` of one metrics.jsonl record: ``last`` / ``step_<k>`` pick a meta-test step."""
    if metric == "last" or metric.startswith("step_"):
        returns = record.get("meta_test/return")
        if not isinstance(returns, list):
            return None
        k = -1 if metric == "last" else int(metric.removeprefix("step_"))
        return float(returns[k]) if -len(returns) <= k < len(returns) else None
    value = record.get(metric)
    return float(value) if isinstance(value, int | float) else None


def load_run(run_dir: Path, metric: str, budget: int | None = None,
             group_by: list[str] | None = None) -> Run:
    """A run's final adaptation curve and learning curve; with ``budget``, its last meta-test
    within ``budget`` env steps and its learning curve up to there."""
    metrics_path = run_dir / "metrics.jsonl"
    records = read_records(metrics_path) if metrics_path.is_file() else []
    if budget is not None:
        records = [r for r in records if int(r["env_steps"]) <= budget]
    learning: dict[int, tuple[int, float]] = {}
    for record in records:
        value = metric_value(record, metric)
        if value is not None:
            learning[int(record["iteration"])] = (int(record["env_steps"]), value)
    if budget is None:
        adaptation, steps = read_summary(run_dir / "summary.json")
    else:
        tests = [r for r in records if isinstance(r.get("meta_test/return"), list)]
        if not tests:
            raise PlotError(f"{run_dir}: no meta-test within --budget {budget:,} env steps; "
                            "give a larger --budget")
        adaptation, steps = tests[-1]["meta_test/return"], tests[-1]["env_steps"]
    return Run(run_dir, run_settings(run_dir, group_by), np.asarray(adaptation, dtype=np.float64),
               None if steps is None else int(steps), learning)


def read_records(path: Path) -> list[dict[str, Any]]:
    """The records of a metrics.jsonl. A last line without its newline is one being written
    (a run still going) and is left out; any other line that is not JSON is an error."""
    text = path.read_text()
    lines = text.splitlines()
    records = []
    for number, line in enumerate(lines, 1):
        try:
            records.append(json.loads(line))
        except ValueError as error:
            if number == len(lines) and not text.endswith("\n"):
                break
            raise PlotError(f"{path}, line {number}: not a JSON record ({error}); leave the run "
                            "out") from error
    return records


def read_summary(path: Path) -> tuple[list[float], int | None]:
    """The final meta-test curve and env steps of a finished run's summary.json."""
    try:
        summary = json.loads(path.read_text())
        return list(summary["meta_test"]["return_mean"]), summary.get("env_steps")
    except (ValueError, KeyError, TypeError) as error:
        raise PlotError(f"{path}: not a summary written by metarl train ({type(error).__name__}: "
                        f"{error}); leave the run out, or plot it from its metrics.jsonl with "
                        "--budget") from error


def group_runs(runs: list[Run]) -> dict[str, list[Run]]:
    """Runs that share settings, labelled by the settings that differ between groups."""
    by_settings: dict[tuple[str, ...], list[Run]] = {}
    for run in runs:
        by_settings.setdefault(run.settings, []).append(run)
    common = set.intersection(*(set(s) for s in by_settings)) if by_settings else set()
    groups: dict[str, list[Run]] = {}
    for settings, members in sorted(by_settings.items()):
        label = ",".join(s for s in settings if s not in common) or "defaults"
        groups[label] = members
    return groups


def aggregate(groups: dict[str, list[Run]], statistic: str = "mean", confidence: float = 0.95,
              resamples: int = 10_000, seed: int = 0) -> list[Row]:
    rows: list[Row] = []
    for label, runs in groups.items():
        lengths = {len(r.adaptation) for r in runs}
        if len(lengths) > 1:
            raise PlotError(f"group {label!r}: runs have adaptation curves of different lengths "
                            f"{sorted(lengths)} (eval.steps differs); plot them separately")
        ci = bootstrap_ci(np.stack([r.adaptation for r in runs]), statistic, confidence,
                          resamples, seed)
        rows += [Row(label, "adaptation", k, None, len(runs), *map(float, point))
                 for k, point in enumerate(zip(ci.estimate, ci.low, ci.high, strict=True))]
        iterations = sorted(set.intersection(*(set(r.learning) for r in runs)))
        if not iterations:
            continue
        values = np.array([[r.learning[i][1] for i in iterations] for r in runs])
        steps = np.array([[r.learning[i][0] for i in iterations] for r in runs]).mean(axis=0)
        ci = bootstrap_ci(values, statistic, confidence, resamples, seed)
        rows += [Row(label, "learning", float(x), i, len(runs), *map(float, point))
                 for x, i, point in zip(steps, iterations,
                                        zip(ci.estimate, ci.low, ci.high, strict=True),
                                        strict=True)]
    return rows


def write_csv(rows: list[Row], path: Path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["group", "curve", "x", "iteration", "runs", "estimate", "ci_low",
                         "ci_high"])
        for r in rows:
            writer.writerow([r.group, r.curve, r.x, "" if r.iteration is None else r.iteration,
                             r.runs, repr(r.estimate), repr(r.low), repr(r.high)])


def markdown_table(rows: list[Row], statistic: str, confidence: float, at: str = "") -> str:
    """Final adaptation curve per group: estimate [low, high] after each adaptation step."""
    adaptation = [r for r in rows if r.curve == "adaptation"]
    steps = sorted({int(r.x) for r in adaptation})
    header = ["group", "runs"] + [f"step {k}" for k in steps]
    lines = [f"{statistic} over runs, [{confidence:.0%} bootstrap CI]; return after k "
             f"adaptation steps on held-out tasks{at}", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for group in dict.fromkeys(r.group for r in adaptation):
        cells = {int(r.x): f"{r.estimate:.2f} [{r.low:.2f}, {r.high:.2f}]"
                 for r in adaptation if r.group == group}
        runs = next(r.runs for r in adaptation if r.group == group)
        lines.append("| " + " | ".join([f"`{group}`", str(runs)]
                                       + [cells.get(k, "") for k in steps]) + " |")
    return "\n".join(lines) + "\n"


def steps_to_reach(rows: list[Row], target: float) -> dict[str, float | None]:
    """Per group, the environment steps at which its learning curve's estimate first reaches
    ``target`` (interpolated linearly between the two meta-tests around the crossing), or None
    where it never does."""
    reached: dict[str, float | None] = {}
    for group in dict.fromkeys(r.group for r in rows):
        points = sorted((r.x, r.estimate) for r in rows
                        if r.group == group and r.curve == "learning")
        reached[group] = None
        for i, (x, y) in enumerate(points):
            if y >= target:
                if i == 0:
                    reached[group] = x
                else:  # the previous point is below the target
                    x0, y0 = points[i - 1]
                    reached[group] = x0 + (target - y0) / (y - y0) * (x - x0)
                break
    return reached


def reach_table(reached: dict[str, float | None], target: float, metric: str) -> str:
    """Markdown: each group's steps to reach ``target`` and its ratio to the fewest."""
    fewest = min((s for s in reached.values() if s is not None), default=None)
    lines = [f"environment steps until the learning curve ({metric}) first reaches {target:g}",
             "", "| group | env steps | ratio to the fewest |", "|---|---|---|"]
    for group, steps in reached.items():
        cells = ("not reached", "") if steps is None else (
            f"{steps:,.0f}", f"{steps / fewest:.1f}x" if fewest else "")
        lines.append(f"| `{group}` | {cells[0]} | {cells[1]} |")
    return "\n".join(lines) + "\n"


def figure(rows: list[Row], metric: str, statistic: str, confidence: float,
           log_steps: bool = False, budget: int | None = None) -> plt.Figure:
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), dpi=110)
    for i, group in enumerate(dict.fromkeys(r.group for r in rows)):
        color = f"C{i % 10}"
        for ax, curve in ((left, "adaptation"), (right, "learning")):
            points = [r for r in rows if r.group == group and r.curve == curve]
            if not points:
                continue
            x = [r.x for r in points]
            label = textwrap.fill(f"{group} (n={points[0].runs})", 150)
            ax.plot(x, [r.estimate for r in points], marker="o", ms=3, color=color,
                    label=label if ax is left else None)
            ax.fill_between(x, [r.low for r in points], [r.high for r in points], color=color,
                            alpha=0.2, linewidth=0)
    band = f"{statistic} over seeds, {confidence:.0%} bootstrap CI"
    title = f"final adaptation curve ({band})" if budget is None else (
        f"adaptation curve within {EngFormatter(sep='')(budget)} env steps\n({band})")
    left.set(xlabel="adaptation step k", ylabel="return on held-out tasks", title=title)
    left.xaxis.get_major_locator().set_params(integer=True)
    y_label = "meta-test return after the last step" if metric == "last" else (
        f"meta-test return after {metric.replace('_', ' ')}" if metric.startswith("step_")
        else metric)
    right.set(xlabel="environment steps", ylabel=y_label, title="learning curve")
    if log_steps:
        right.set_xscale("symlog", linthresh=1e4)  # linear below 10k: the untrained 0 stays
    right.xaxis.set_major_formatter(EngFormatter(sep=""))  # 200k, 1.5M: no overlapping labels
    # the legend goes under both panels, so long group labels do not squeeze the axes
    legend = fig.legend(fontsize=7, loc="lower center", frameon=False)
    fig.canvas.draw()
    height = legend.get_window_extent().height / fig.dpi
    fig.set_figheight(4.2 + height)
    fig.tight_layout(rect=(0, height / (4.2 + height), 1, 1))
    return fig


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="metarl plot", description=__doc__.split("\n\n")[1])
    parser.add_argument("dirs", nargs="+", type=Path, help="run or sweep directories")
    parser.add_argument("--metric", default="last",
                        help="learning-curve quantity: last (meta-test return after the last "
                             "adaptation step), step_<k>, or a metrics.jsonl key such as "
                             "meta_train/return_post (default: last)")
    parser.add_argument("--out", type=Path, default=Path("comparison.png"),
                        help="figure path; the CSV and Markdown go beside it (default: "
                             "comparison.png)")
    parser.add_argument("--estimator", choices=ESTIMATORS, default="mean",
                        help="mean, or iqm (interquartile mean, robust with few seeds)")
    parser.add_argument("--confidence", type=float, default=0.95)
    parser.add_argument("--resamples", type=int, default=10_000, help="bootstrap resamples")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    parser.add_argument("--log-steps", action="store_true",
                        help="environment steps on a log scale (runs of very different lengths)")
    parser.add_argument("--reach", type=float, default=None, metavar="R",
                        help="also report the env steps each group needs until its learning "
                             "curve reaches R, and their ratios (sample efficiency)")
    parser.add_argument("--group-by", type=lambda v: [k for k in v.split(",") if k],
                        default=None, metavar="KEY,...",
                        help="group by these keys of each run's .hydra/config.yaml (e.g. "
                             "algo._target_,algo.inner_steps) instead of by its overrides")
    parser.add_argument("--budget", type=int, default=None, metavar="S",
                        help="compare at S environment steps: each run's last meta-test within "
                             "S, also for runs that are still going or were stopped")
    args = parser.parse_args(argv)
    if args.budget is not None and args.budget < 0:
        parser.error(f"--budget: {args.budget} is negative; give the environment steps to "
                     "compare at, e.g. --budget 16000000")
    if args.metric.startswith("step_") and not args.metric.removeprefix("step_").isdigit():
        parser.error(f"--metric: {args.metric} is not step_<k> with a whole number k, e.g. "
                     "step_1")
    formats = FigureCanvasBase.get_supported_filetypes()
    if args.out.suffix.lstrip(".").lower() not in formats:
        parser.error(f"--out: {args.out} needs an image suffix ({', '.join(sorted(formats))}); "
                     "the .csv and .md go beside it")
    return args


def budget_note(runs: list[Run], budget: int | None) -> str:
    """Where the adaptation curves were taken, for the table's header."""
    if budget is None:
        return ""
    steps = sorted(r.adaptation_steps for r in runs if r.adaptation_steps is not None)
    return (f", at each run's last meta-test within {budget:,} env steps "
            f"({steps[0]:,} to {steps[-1]:,})")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        runs = [load_run(p, args.metric, args.budget, args.group_by)
                for p in find_runs(args.dirs, finished=args.budget is None)]
        if args.group_by:
            check_group_by(runs, args.group_by)
        groups = group_runs(runs)
        rows = aggregate(groups, args.estimator, args.confidence, args.resamples, args.seed)
    except (PlotError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    if not any(r.curve == "learning" for r in rows):
        print(f"note: no run has --metric {args.metric!r} in metrics.jsonl; the learning-curve "
              "panel is empty", file=sys.stderr)
    try:
        args.out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        print(f"error: --out: cannot make {args.out.parent} ({error})", file=sys.stderr)
        sys.exit(2)
    fig = figure(rows, args.metric, args.estimator, args.confidence, args.log_steps, args.budget)
    fig.savefig(args.out)
    plt.close(fig)
    write_csv(rows, args.out.with_suffix(".csv"))
    table = markdown_table(rows, args.estimator, args.confidence, budget_note(runs, args.budget))
    if args.reach is not None:
        table += "\n" + reach_table(steps_to_reach(rows, args.reach), args.reach, args.metric)
    args.out.with_suffix(".md").write_text(table)
    print(table)
    print(f"{sum(len(g) for g in groups.values())} runs in {len(groups)} groups -> {args.out}, "
          f"{args.out.with_suffix('.csv')}, {args.out.with_suffix('.md')}")

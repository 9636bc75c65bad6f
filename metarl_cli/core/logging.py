"""The one place that names logged quantities: TensorBoard tags, metrics.jsonl, summary.json.

Tags: ``meta_train/*`` (returns before and after adaptation), ``meta_test/return/step_<k>``
for k = 0..K with a custom-scalars chart of all steps together and an image of the curve,
``loss/*``, ``optim/*``, ``time/*``, ``perf/env_steps_per_s`` and ``env_steps``, all against the
meta-iteration; the returns are also logged under ``by_env_steps/`` against environment steps.

A resumed run continues in its own directory: :class:`RunLogger` first cuts ``metrics.jsonl``
and the TensorBoard event files back to the checkpoint it resumes from (``keep_until``), so
nothing logged after that checkpoint appears twice. The events are filtered and rewritten
rather than hidden with ``SummaryWriter(purge_step=...)``: TensorBoard purges by step number
across all tags, which would also hide the ``by_env_steps/`` points (whose steps are env steps).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from tensorboard.backend.event_processing.event_file_loader import (  # noqa: E402
    RawEventFileLoader,
)
from tensorboard.compat.proto.event_pb2 import Event  # noqa: E402
from tensorboard.summary.writer.record_writer import RecordWriter  # noqa: E402
from torch.utils.tensorboard import SummaryWriter  # noqa: E402

from metarl_cli.core.evaluation import AdaptationCurve  # noqa: E402
from metarl_cli.core.paths import write_atomic  # noqa: E402

RETURN_TAGS = ("meta_train/return_pre", "meta_train/return_post")
BY_ENV_STEPS = "by_env_steps/"
# Written once per session (custom-scalars layout) or at the end (hparams): rewritten anew.
SESSION_TAGS = ("custom_scalars__config__", "_hparams_/", "hparam/")


@dataclass(frozen=True)
class LogPoint:
    """Where a resumed run picks up: everything logged after this iteration is dropped."""

    iteration: int
    env_steps: int


def meta_test_tag(step: int) -> str:
    return f"meta_test/return/step_{step}"


class RunLogger:
    def __init__(self, run_dir: Path, tensorboard: bool = True, curve_images: bool = True,
                 step_label: str = "adaptation step", keep_until: LogPoint | None = None) -> None:
        self.run_dir = run_dir
        if keep_until is not None:
            truncate_metrics(run_dir / "metrics.jsonl", keep_until.iteration)
            trim_events(run_dir / "tb", keep_until)
        self.curve_images = curve_images
        self.step_label = step_label
        self.writer = SummaryWriter(str(run_dir / "tb")) if tensorboard else None
        self._jsonl = open(run_dir / "metrics.jsonl", "a", encoding="utf-8")  # noqa: SIM115
        if self.writer is not None:
            self.writer.add_custom_scalars({
                "meta-test": {"return after k adaptation steps":
                              ["Multiline", [r"meta_test/return/step_\d+"]]},
                "meta-train": {"return before / after adaptation":
                               ["Multiline", list(RETURN_TAGS)]},
            })

    def log_iteration(self, iteration: int, metrics: dict[str, float], env_steps: int) -> None:
        self._write_jsonl({"iteration": iteration, "env_steps": env_steps, **metrics})
        if self.writer is None:
            return
        for tag, value in metrics.items():
            self.writer.add_scalar(tag, value, iteration)
        self.writer.add_scalar("env_steps", env_steps, iteration)
        for tag in RETURN_TAGS:
            if tag in metrics:
                self.writer.add_scalar(f"{BY_ENV_STEPS}{tag}", metrics[tag], env_steps)

    def log_meta_test(self, iteration: int, curve: AdaptationCurve, env_steps: int) -> None:
        mean, std = curve.mean, curve.std
        self._write_jsonl({"iteration": iteration, "env_steps": env_steps,
                           "meta_test/return": mean.tolist(), "meta_test/std": std.tolist()})
        if self.writer is None:
            return
        for k, value in enumerate(mean):
            self.writer.add_scalar(meta_test_tag(k), value, iteration)
            self.writer.add_scalar(f"{BY_ENV_STEPS}{meta_test_tag(k)}", value, env_steps)
        if self.curve_images:
            self.writer.add_figure("meta_test/adaptation_curve",
                                   self.curve_figure(curve, f"iteration {iteration}"), iteration)
        self.writer.flush()

    def flush(self) -> None:
        """Push everything logged so far to disk (before each checkpoint, so a kill loses
        nothing that the checkpoint covers)."""
        self._jsonl.flush()
        if self.writer is not None:
            self.writer.flush()

    def curve_figure(self, curve: AdaptationCurve, title: str) -> plt.Figure:
        fig, ax = plt.subplots(figsize=(4.5, 3.2), dpi=100)
        steps = range(len(curve.mean))
        ax.plot(steps, curve.mean, marker="o")
        ax.fill_between(steps, curve.mean - curve.std, curve.mean + curve.std, alpha=0.25)
        ax.set(xlabel=self.step_label, ylabel="mean return (± std over tasks)", title=title)
        ax.set_xticks(list(steps))
        fig.tight_layout()
        return fig

    def finish(self, summary: dict[str, Any], hparams: dict[str, Any], curve: AdaptationCurve
               ) -> None:
        """Write summary.json, the final curve as PNG and the HPARAMS entry, then close."""
        write_atomic(self.run_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
        fig = self.curve_figure(curve, "final meta-test")
        fig.savefig(self.run_dir / "adaptation_curve.png")
        plt.close(fig)
        if self.writer is not None:
            final = {f"hparam/{meta_test_tag(k)}": float(v) for k, v in enumerate(curve.mean)}
            final["hparam/meta_test/return/last"] = float(curve.mean[-1])  # any K compares
            self.writer.add_hparams(hparams, final, run_name=".")
        self.close()

    def close(self) -> None:
        self._jsonl.close()
        if self.writer is not None:
            self.writer.close()

    def _write_jsonl(self, record: dict[str, Any]) -> None:
        self._jsonl.write(json.dumps(record) + "\n")
        self._jsonl.flush()


def truncate_metrics(path: Path, iteration: int) -> None:
    """Keep the records of iterations <= ``iteration`` (and drop a line torn by a kill)."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and record.get("iteration", iteration + 1) <= iteration:
            kept.append(line + "\n")
    write_atomic(path, "".join(kept))


def trim_events(tb_dir: Path, keep_until: LogPoint) -> None:
    """Rewrite each event file without the points logged after ``keep_until``."""
    if not tb_dir.is_dir():
        return
    for path in sorted(tb_dir.glob("events.out.tfevents.*")):
        events = (Event.FromString(record) for record in RawEventFileLoader(str(path)).Load())
        records = [event.SerializeToString() for event in events if _keep_event(event, keep_until)]
        tmp = tb_dir / ".trim.tmp"  # no "tfevents" in the name: TensorBoard never reads it
        with open(tmp, "wb") as f:
            writer = RecordWriter(f)
            for record in records:
                writer.write(record)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)


def _keep_event(event: Event, keep_until: LogPoint) -> bool:
    if not event.HasField("summary"):
        return True  # file version and other bookkeeping
    values = [v for v in event.summary.value if not v.tag.startswith(SESSION_TAGS)
              and event.step <= (keep_until.env_steps if v.tag.startswith(BY_ENV_STEPS)
                                 else keep_until.iteration)]
    if not values:
        return False
    del event.summary.value[:]
    event.summary.value.extend(values)
    return True

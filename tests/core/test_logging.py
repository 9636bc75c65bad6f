"""Resumed logs: metrics.jsonl and TensorBoard events cut back to the checkpoint, nothing lost."""

from __future__ import annotations

import json
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.tensorboard import SummaryWriter

from metarl_cli.core.logging import LogPoint, trim_events, truncate_metrics


def steps(tb: Path, tag: str) -> list[int]:
    """The steps logged under ``tag``, in step order: TensorBoard reads event files in name order,
    and two files written in the same second by one process can sort against their writing order
    (the writer's counter goes from ...9 to ...10), which TensorBoard's plots do not mind."""
    return sorted(e.step for e in EventAccumulator(str(tb)).Reload().Scalars(tag))


def write_run(tb: Path, iterations: range) -> None:
    writer = SummaryWriter(str(tb))
    writer.add_custom_scalars({"c": {"x": ["Multiline", ["a"]]}})
    for i in iterations:
        writer.add_scalar("meta_train/return_pre", float(i), i)
        writer.add_scalar("by_env_steps/meta_train/return_pre", float(i), 100 * i)
    writer.close()


def test_events_after_the_checkpoint_are_removed_on_both_axes(tmp_path: Path) -> None:
    tb = tmp_path / "tb"
    write_run(tb, range(1, 8))
    trim_events(tb, LogPoint(iteration=4, env_steps=400))
    assert steps(tb, "meta_train/return_pre") == [1, 2, 3, 4]
    assert steps(tb, "by_env_steps/meta_train/return_pre") == [100, 200, 300, 400]
    write_run(tb, range(5, 9))  # the resumed run writes a new event file
    assert steps(tb, "meta_train/return_pre") == list(range(1, 9))
    assert steps(tb, "by_env_steps/meta_train/return_pre") == [100 * i for i in range(1, 9)]
    tensors = EventAccumulator(str(tb)).Reload().Tensors("custom_scalars__config__")
    assert len(tensors) == 1  # the layout is written once per session and trimmed away
    assert not list(tb.glob(".trim*"))


def test_a_torn_event_record_is_dropped(tmp_path: Path) -> None:
    tb = tmp_path / "tb"
    write_run(tb, range(1, 4))
    (event_file,) = tb.glob("events.out.tfevents.*")
    event_file.write_bytes(event_file.read_bytes()[:-7])  # killed mid-write
    trim_events(tb, LogPoint(iteration=10, env_steps=1000))
    assert steps(tb, "meta_train/return_pre") == [1, 2, 3]
    assert steps(tb, "by_env_steps/meta_train/return_pre") == [100, 200]


def test_metrics_are_cut_back_and_a_torn_line_dropped(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    lines = [json.dumps({"iteration": i, "x": i}) for i in range(6)]
    path.write_text("\n".join(lines) + '\n{"iteration": 6, "x"')
    truncate_metrics(path, 3)
    assert path.read_text() == "\n".join(lines[:4]) + "\n"
    truncate_metrics(path, -1)  # a restart from scratch keeps nothing
    assert path.read_text() == ""

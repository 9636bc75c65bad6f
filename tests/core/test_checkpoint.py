"""Checkpoints: checksummed, atomic, damage detected by path, fallback to the previous one."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from metarl_cli.core.checkpoint import (
    LATEST,
    PREVIOUS,
    CheckpointError,
    checksum,
    latest_checkpoint,
    load_checkpoint,
    package_versions,
    save_checkpoint,
    version_changes,
)


def state(iteration: int, size: int = 8) -> dict[str, object]:
    generator = torch.Generator().manual_seed(iteration)
    return {"iteration": iteration, "env_steps": 100 * iteration,
            "learner": {"policy": {"w": torch.randn(size, size, generator=generator)}},
            "sampler": {"rng": {"state": {"state": 2**100 + iteration, "inc": 7}}},
            "totals": {"wall_clock_s": 1.5}, "names": ("a", None, True)}


def test_round_trip_is_exact_and_loads_with_weights_only(tmp_path: Path) -> None:
    path = tmp_path / "c.pt"
    save_checkpoint(state(3), path)
    raw = torch.load(path, weights_only=True)  # a checkpoint is plain data
    assert raw["checksum"] == checksum(raw)
    loaded = load_checkpoint(path)
    assert torch.equal(loaded["learner"]["policy"]["w"], state(3)["learner"]["policy"]["w"])
    assert loaded["sampler"] == state(3)["sampler"] and loaded["names"] == ("a", None, True)
    assert not list(tmp_path.glob("*.tmp"))


def test_versions_are_recorded_and_changes_named() -> None:
    versions = package_versions()
    assert set(versions) == {"python", "metarl-cli", "torch", "numpy", "mujoco", "gymnasium"}
    assert versions["torch"] == torch.__version__ and versions["numpy"] == np.__version__
    assert version_changes(versions) == "" and version_changes({}) == ""
    older = versions | {"numpy": "1.0.0", "scipy": "1.2"}
    assert version_changes(older) == (f"numpy 1.0.0 (now {np.__version__}), "
                                      "scipy 1.2 (now not recorded)")


def test_checksum_sees_every_value_and_type() -> None:
    base = checksum(state(1))
    changed = state(1)
    changed["learner"]["policy"]["w"][0, 0] += 1e-6
    assert checksum(changed) != base
    assert checksum({"a": 1}) != checksum({"a": 1.0}) != checksum({"a": "1"})
    assert checksum({"t": torch.zeros(2)}) != checksum({"t": torch.zeros(2, dtype=torch.float64)})


def test_corrupted_content_is_reported_with_its_path(tmp_path: Path) -> None:
    path = tmp_path / "c.pt"
    save_checkpoint(state(1), path)
    raw = torch.load(path, weights_only=True)
    raw["learner"]["policy"]["w"][2, 3] = 42.0  # a flipped value that still unpickles
    torch.save(raw, path)
    with pytest.raises(CheckpointError, match=f"{path}.*checksum mismatch"):
        load_checkpoint(path)


@pytest.mark.parametrize("keep", [0, 100, -200])
def test_truncated_file_is_reported_with_its_path(tmp_path: Path, keep: int) -> None:
    path = tmp_path / "c.pt"
    save_checkpoint(state(1, size=64), path)
    data = path.read_bytes()
    path.write_bytes(data[:keep] if keep >= 0 else data[:len(data) + keep])
    with pytest.raises(CheckpointError, match=f"{path} is truncated or corrupted"):
        load_checkpoint(path)


def test_a_pickle_that_would_run_code_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"iteration": 1, "learner": {}, "payload": Path("/")}, path)  # not plain data
    with pytest.raises(CheckpointError, match="truncated or corrupted.*Unpickl"):
        load_checkpoint(path)


def test_save_keeps_the_previous_latest(tmp_path: Path) -> None:
    for i in (1, 2, 3):
        save_checkpoint(state(i), tmp_path / LATEST, keep_previous=True)
    assert load_checkpoint(tmp_path / LATEST)["iteration"] == 3
    assert load_checkpoint(tmp_path / PREVIOUS)["iteration"] == 2


def test_damaged_latest_falls_back_to_previous(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    for i in (1, 2):
        save_checkpoint(state(i), tmp_path / LATEST, keep_previous=True)
    (tmp_path / LATEST).write_bytes((tmp_path / LATEST).read_bytes()[:50])
    found = latest_checkpoint(tmp_path)
    assert found is not None and found.iteration == 1 and found.path == tmp_path / PREVIOUS
    assert f"warning: checkpoint {tmp_path / LATEST} is truncated" in capsys.readouterr().err


def test_newest_good_checkpoint_wins_over_older_files(tmp_path: Path) -> None:
    save_checkpoint(state(4), tmp_path / "iter_000004.pt")
    save_checkpoint(state(8), tmp_path / "iter_000008.pt")
    save_checkpoint(state(6), tmp_path / LATEST)
    assert latest_checkpoint(tmp_path).iteration == 8
    (tmp_path / "iter_000008.pt").write_bytes(b"garbage")
    assert latest_checkpoint(tmp_path).iteration == 6


def test_nothing_usable_is_an_error_naming_every_file(tmp_path: Path) -> None:
    assert latest_checkpoint(tmp_path) is None  # no checkpoint yet: not an error
    (tmp_path / LATEST).write_bytes(b"x")
    (tmp_path / "iter_000002.pt").write_bytes(b"y")
    with pytest.raises(CheckpointError, match="no usable checkpoint.*latest.pt.*iter_000002"):
        latest_checkpoint(tmp_path)


SAVER = textwrap.dedent("""
    import sys
    from pathlib import Path
    import torch
    from metarl_cli.core.checkpoint import save_checkpoint
    folder = Path(sys.argv[1])
    big = torch.randn(1_000_000)
    for i in range(1, 10**9):
        save_checkpoint({"iteration": i, "learner": {"w": big + i}}, folder / "latest.pt",
                        keep_previous=True)
        if i == 1:
            print("ready", flush=True)
""")


def test_sigkill_during_saves_always_leaves_a_good_checkpoint(tmp_path: Path) -> None:
    """Kill a process that saves 4 MB checkpoints back to back, at random moments."""
    rng = random.Random()
    seed = rng.randrange(10**6)
    rng.seed(seed)
    for _ in range(2):
        saver = subprocess.Popen([sys.executable, "-c", SAVER, str(tmp_path)],
                                 stdout=subprocess.PIPE, text=True)
        assert saver.stdout is not None and saver.stdout.readline() == "ready\n"
        time.sleep(rng.uniform(0.05, 0.6))
        saver.send_signal(signal.SIGKILL)
        saver.wait(timeout=30)
        if (tmp_path / LATEST).exists():  # renamed into place only when complete
            load_checkpoint(tmp_path / LATEST)
        found = latest_checkpoint(tmp_path)  # raises if every file is damaged
        assert found is not None and found.iteration >= 1, f"random seed {seed}"
        assert found.state["learner"]["w"].shape == (1_000_000,)

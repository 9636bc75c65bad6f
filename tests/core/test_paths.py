"""core/paths.py: the shipped configs are found, and a file is replaced whole or not at all."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from metarl_cli.core.paths import (
    CONFIG_DIR,
    RunDirInUse,
    claim_fresh_dir,
    run_dir_lock,
    write_atomic,
)


def test_the_primary_config_ships_with_the_package() -> None:
    assert (CONFIG_DIR / "train.yaml").is_file()


def test_write_atomic_replaces_the_file_and_leaves_nothing_beside_it(tmp_path: Path) -> None:
    path = tmp_path / "summary.json"
    write_atomic(path, "old\n")
    write_atomic(path, b"new\n")
    assert path.read_text() == "new\n"
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]


def test_a_write_that_fails_leaves_the_old_file_whole(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "summary.json"
    write_atomic(path, "old\n")

    def disk_full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space left"):
        write_atomic(path, "new, cut short")
    assert path.read_text() == "old\n"


def test_claim_fresh_dir_never_hands_out_a_directory_twice(tmp_path: Path) -> None:
    base = str(tmp_path / "outputs" / "2026-11-28" / "12-00-00")
    claim = claim_fresh_dir.__wrapped__  # uncached: as two processes in the same second
    assert [claim(base), claim(base), claim(base)] == [base, f"{base}_2", f"{base}_3"]
    assert claim_fresh_dir(base + "x") == claim_fresh_dir(base + "x")  # one process: one answer


def test_the_run_dir_lock_refuses_a_second_holder(tmp_path: Path) -> None:
    with run_dir_lock(tmp_path):
        with pytest.raises(RunDirInUse, match="is in use by another process"), \
                run_dir_lock(tmp_path):
            pass
    with run_dir_lock(tmp_path):  # released at the end of the block
        pass
    assert list(tmp_path.iterdir()) == []  # the lock writes nothing

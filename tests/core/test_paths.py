"""core/paths.py: the shipped configs are found, and a file is replaced whole or not at all."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from metarl_cli.core.paths import CONFIG_DIR, write_atomic


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

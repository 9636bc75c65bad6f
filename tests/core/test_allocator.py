"""keep_freed_memory: glibc's malloc told to keep freed blocks, nowhere else touched."""

from __future__ import annotations

import platform
import sys

import pytest

from metarl_cli.core import allocator


@pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
                    reason="mallopt's thresholds are glibc's")
def test_glibc_takes_the_thresholds() -> None:
    assert allocator.keep_freed_memory()


def test_other_systems_are_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(allocator.sys, "platform", "darwin")
    assert not allocator.keep_freed_memory()

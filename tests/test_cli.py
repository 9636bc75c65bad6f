"""The ``metarl`` dispatcher."""

from __future__ import annotations

import subprocess

import pytest


@pytest.mark.parametrize("command", ["metarl --help", "metarl list"])
def test_output_piped_into_a_reader_that_closed_gives_no_traceback(command: str) -> None:
    # `true` exits without reading, so every write of the command meets a closed pipe
    result = subprocess.run(f"{command} | true", shell=True, capture_output=True, text=True,
                            timeout=120)
    assert result.stderr == ""

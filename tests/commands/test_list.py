"""`metarl list`: each choice's summary is its config's first comment line, marked where cut."""

from __future__ import annotations

from pathlib import Path

import pytest

from metarl_cli.commands.list import describe, main


def test_a_summary_that_goes_on_is_marked(tmp_path: Path) -> None:
    path = tmp_path / "x.yaml"
    path.write_text("# @package _global_\n# A long summary that\n# goes on here.\nkey: 1\n")
    assert describe(str(path)) == "A long summary that ..."
    path.write_text("# One sentence.\n# More detail.\nkey: 1\n")
    assert describe(str(path)) == "One sentence."
    path.write_text("key: 1\n")
    assert describe(str(path)) == ""


def test_long_names_keep_a_gap_before_their_summary(capsys: pytest.CaptureFixture[str]) -> None:
    main()
    lines = capsys.readouterr().out.splitlines()
    line = next(line for line in lines if "hopper_rand_params_pearl " in line)
    name, _, summary = line.strip().partition(" ")
    assert name == "hopper_rand_params_pearl"
    assert summary.startswith(" ") and summary.strip()  # at least two spaces, then a summary

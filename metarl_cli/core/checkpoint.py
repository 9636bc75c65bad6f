"""Checkpoints: plain tensors and containers, written atomically, verified when loaded.

A checkpoint is a ``torch.save``d dict of tensors, numbers, strings and containers, loaded with
``weights_only=True`` so that opening one can never execute code. Its ``checksum`` entry is a
SHA-256 over the rest of its content (keys, tensor dtypes, shapes and bytes), so a file that
still unpickles but was damaged on disk is caught too.

A save writes a temporary file, fsyncs it and renames it over the target; before that, the
previous ``latest.pt`` is renamed to ``latest.prev.pt``. A kill at any moment therefore leaves
at least one complete checkpoint, and :func:`latest_checkpoint` picks the newest one that
verifies, reporting every damaged file it skips by its path.
"""

from __future__ import annotations

import hashlib
import os
import platform
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from metarl_cli.core.build import ConfigError

FORMAT = 1
LATEST = "latest.pt"
PREVIOUS = "latest.prev.pt"
_ITER_FILE = re.compile(r"iter_(\d+)\.pt")
# The distributions whose versions decide a run's numbers (MuJoCo's dynamics amplify any
# rounding difference, so two versions give different episodes from the same seed).
NUMERIC_PACKAGES = ("metarl-cli", "torch", "numpy", "mujoco", "gymnasium")


class CheckpointError(ConfigError):
    """A checkpoint file that is missing, truncated, corrupted or not a checkpoint (bad input
    to the command that was given it: one line naming the path, exit code 2)."""


@dataclass(frozen=True)
class Checkpoint:
    path: Path
    state: dict[str, Any]

    @property
    def iteration(self) -> int:
        return int(self.state["iteration"])


def package_versions() -> dict[str, str]:
    """Python's version and those of ``NUMERIC_PACKAGES``, as a run records them."""
    versions = {"python": platform.python_version()}
    for name in NUMERIC_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def version_changes(recorded: Mapping[str, str]) -> str:
    """Which recorded versions differ from this environment's, e.g. ``numpy 2.3.1 (now 2.4.6)``;
    empty when none does (or nothing was recorded)."""
    current = package_versions()
    return ", ".join(f"{name} {version} (now {current.get(name, 'not recorded')})"
                     for name, version in recorded.items() if current.get(name) != version)


def checksum(state: dict[str, Any]) -> str:
    """SHA-256 of a state's content, independent of how ``torch.save`` lays it out."""
    digest = hashlib.sha256()
    _feed(digest, {k: v for k, v in state.items() if k != "checksum"})
    return digest.hexdigest()


def save_checkpoint(state: dict[str, Any], path: Path, keep_previous: bool = False) -> None:
    """Write ``state`` (plus its checksum) to ``path`` atomically.

    With ``keep_previous`` the file being replaced is first renamed to ``latest.prev.pt``
    beside it, so that a damaged new file still leaves the one before.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    full = {"format": FORMAT, **state}
    full["checksum"] = checksum(full)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(full, f)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)  # e.g. a full disk: leave no partial file behind
        raise
    if keep_previous and path.exists():
        os.replace(path, path.with_name(PREVIOUS))
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load and verify one checkpoint; :class:`CheckpointError` names the path and the fault."""
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises RuntimeError, EOFError, UnpicklingError, ...
        raise CheckpointError(f"checkpoint {path} is truncated or corrupted "
                              f"({type(error).__name__}: {_first_line(error)})") from error
    if not isinstance(state, dict) or "iteration" not in state or "learner" not in state:
        raise CheckpointError(f"checkpoint {path} is not a metarl checkpoint")
    if "checksum" in state and checksum(state) != state["checksum"]:  # none: before checksums
        raise CheckpointError(f"checkpoint {path} is corrupted (content checksum mismatch)")
    return state


def checkpoint_files(directory: Path) -> list[Path]:
    """Candidate files, newest first: latest, previous latest, then iter_N by falling N."""
    iters = sorted((p for p in directory.glob("iter_*.pt") if _ITER_FILE.fullmatch(p.name)),
                   key=lambda p: int(_ITER_FILE.fullmatch(p.name).group(1)), reverse=True)
    return [p for p in (directory / LATEST, directory / PREVIOUS) if p.exists()] + iters


def latest_checkpoint(directory: Path) -> Checkpoint | None:
    """The newest checkpoint in ``directory`` that verifies, or None if there is none at all.

    Damaged files are reported on stderr with their path and skipped; if files exist but none
    verifies, :class:`CheckpointError` lists them.
    """
    best: Checkpoint | None = None
    faults: list[str] = []
    for path in checkpoint_files(directory):
        match = _ITER_FILE.fullmatch(path.name)
        if best is not None and match and int(match.group(1)) <= best.iteration:
            break  # iter files come newest first: none of the rest can be newer
        try:
            candidate = Checkpoint(path, load_checkpoint(path))
        except CheckpointError as error:
            faults.append(str(error))
            print(f"warning: {error}; falling back to an older checkpoint", file=sys.stderr)
            continue
        if best is None or candidate.iteration > best.iteration:
            best = candidate
    if best is None and faults:
        raise CheckpointError("no usable checkpoint: " + "; ".join(faults))
    return best


def _feed(digest: Any, value: Any) -> None:
    """Hash a value with its type, so that e.g. 1, 1.0 and "1" differ."""
    if isinstance(value, torch.Tensor):
        data = value.detach().cpu().contiguous()
        digest.update(f"T{data.dtype}{tuple(data.shape)}".encode())
        digest.update(data.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(value, dict):
        digest.update(f"D{len(value)}".encode())
        for key in sorted(value, key=repr):
            _feed(digest, key)
            _feed(digest, value[key])
    elif isinstance(value, list | tuple):
        digest.update(f"{type(value).__name__[0]}{len(value)}".encode())
        for item in value:
            _feed(digest, item)
    elif isinstance(value, bytes):
        digest.update(b"B%d" % len(value) + value)
    elif value is None or isinstance(value, bool | int | float | str):
        text = f"{type(value).__name__}:{value!r}".encode()
        digest.update(b"S%d" % len(text) + text)
    else:
        raise TypeError(f"checkpoint: cannot store a {type(value).__name__}")


def _fsync_dir(directory: Path) -> None:
    """Make the rename itself durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _first_line(error: BaseException) -> str:
    """The error's first sentence (torch appends paragraphs of advice to its own)."""
    text = str(error).strip()
    line = text.splitlines()[0] if text else "no detail"
    return line.split(". ", 1)[0].rstrip(".")

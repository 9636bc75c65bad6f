"""Files of the package and of a run: where the shipped Hydra configs live (for editable and
non-editable installs alike), and how a run's files are written so that a crash never leaves
one half written."""

import os
from importlib.resources import files
from pathlib import Path

CONFIG_DIR = Path(str(files("metarl_cli.configs")))


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file beside it and a rename: a reader, or
    a crash at any moment, finds the old file or the new one, never part of the new one."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)

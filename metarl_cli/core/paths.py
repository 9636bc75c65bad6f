"""Files of the package and of a run: where the shipped Hydra configs live (for editable and
non-editable installs alike), how a run's files are written so that a crash never leaves one
half written, how a run's saved settings are read back, and how a run directory is claimed so
that two runs never share one."""

import functools
import os
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.resources import files
from pathlib import Path

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; the run directory is not guarded
    fcntl = None  # type: ignore[assignment]

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


def read_saved_config(path: Path) -> DictConfig:
    """A run's ``.hydra/config.yaml``; ValueError, saying why in one line, when it cannot be
    read or holds no config."""
    try:
        cfg = OmegaConf.load(path)
    except (OSError, yaml.YAMLError, OmegaConfBaseException) as error:
        raise ValueError(f"cannot read {path}: {error}".strip().splitlines()[0]) from error
    if not isinstance(cfg, DictConfig) or not cfg:
        raise ValueError(f"{path} holds no config")
    return cfg


def read_saved_overrides(path: Path) -> list[str]:
    """A run's ``.hydra/overrides.yaml`` as written (a ``${...}`` in a value stays unresolved);
    ValueError when it holds no list."""
    saved = OmegaConf.to_container(OmegaConf.load(path))
    if not isinstance(saved, list):
        raise ValueError(f"{path} holds no list of overrides")
    return [str(o) for o in saved]


@functools.cache
def claim_fresh_dir(base: str) -> str:
    """``base``, or else ``base_2``, ``base_3``, ...: the first that did not exist, created here
    by one atomic ``mkdir``, so that runs started in the same second never share a directory.
    Cached, because Hydra resolves the run directory more than once in a process."""
    Path(base).parent.mkdir(parents=True, exist_ok=True)
    for n in range(1, 10_000):
        path = base if n == 1 else f"{base}_{n}"
        try:
            os.mkdir(path)
        except FileExistsError:
            continue
        return path
    raise FileExistsError(f"{base}: 9,999 runs already started in this second")


class RunDirInUse(RuntimeError):
    """Another process holds the run directory's lock."""


@contextmanager
def run_dir_lock(run_dir: Path) -> Iterator[None]:
    """Hold an advisory lock on the directory ``run_dir`` itself (no file is written) while
    the block runs; :class:`RunDirInUse` if another process holds it."""
    if fcntl is None:
        yield
        return
    fd = os.open(run_dir, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunDirInUse(f"{run_dir} is in use by another process") from None
        yield
    finally:
        os.close(fd)  # releases the lock

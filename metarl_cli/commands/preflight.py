"""Bad input, refused before anything runs: in one line naming the key (exit code 2).

``preflight`` checks the command line before Hydra creates a run directory (every job of a
multirun is composed first) and turns ``resume=<run dir>`` / ``resume=auto`` into the
overrides that point Hydra at the run to continue; ``check_settings`` refuses impossible
values before the experiment is built.
"""

from __future__ import annotations

import itertools
import math
import re
import shlex
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Glob, Override
from hydra.errors import HydraException, MissingConfigException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from metarl_cli.core.build import ConfigError
from metarl_cli.core.faults import first_line
from metarl_cli.core.paths import CONFIG_DIR, read_saved_overrides


def check_settings(cfg: DictConfig) -> None:
    """Refuse impossible top-level values before anything is built."""
    try:
        OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as error:
        key = getattr(error, "full_key", None) or "config"
        raise ConfigError(f"{key}: {first_line(error)}") from error
    for key in ("eval_every", "checkpoint_every", "meta_batch_size",
                "eval.num_tasks", "eval.rollouts", "env.horizon"):
        _check_integer(cfg, key, 1)
    for key in ("iterations", "eval.steps"):
        _check_integer(cfg, key, 0)
    for key in ("seed", "task_seed"):  # torch seeds are 64-bit
        _check_integer(cfg, key, 0, maximum=2**63 - 1)
    for key in ("torch_threads", "sampler.num_threads", "eval.step_budget"):
        _check_integer(cfg, key, 1, or_null=True)
    # np.random.seed takes 32-bit seeds
    _check_integer(cfg, "eval.legacy_task_seed", 0, or_null=True, maximum=2**32 - 1)
    keep = OmegaConf.select(cfg, "keep_freed_memory", default=True)
    if not isinstance(keep, bool):
        raise ConfigError(f"keep_freed_memory: expected true or false, got {keep!r}")
    lr = OmegaConf.select(cfg, "optimizer.lr")
    if lr is not None and (not isinstance(lr, int | float) or isinstance(lr, bool)
                           or not 0 < lr < math.inf):
        raise ConfigError(f"optimizer.lr: expected a learning rate > 0, got {lr!r}")
    if cfg.device not in ("cpu", "cuda") and not str(cfg.device).startswith("cuda:"):
        raise ConfigError(f"device: expected cpu or cuda, got {cfg.device!r}")
    if str(cfg.device).startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("device: CUDA is not available on this machine; use device=cpu")


def _check_integer(cfg: DictConfig, key: str, minimum: int, or_null: bool = False,
                   maximum: int | None = None) -> None:
    """``key`` must hold an int (not a bool) in [``minimum``, ``maximum``], or null where
    ``or_null``."""
    value = OmegaConf.select(cfg, key)
    if value is None and or_null:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum \
            or (maximum is not None and value > maximum):
        rule = (f"an integer >= {minimum}" if maximum is None
                else f"an integer in [{minimum}, {maximum}]") + (" or null" if or_null else "")
        raise ConfigError(f"{key}: expected {rule}, got {value!r}")


# Sections whose keys are read one by one: a key added to them with + would be read by nothing.
# (algo, model, optimizer, logger and env.family go to constructors that name unknown keys.)
PLAIN_SECTIONS = ("", "eval", "env", "sampler")


def compose_checked(overrides: list[str]) -> DictConfig:
    """Compose the train config as Hydra will, turning its errors into one-line ConfigErrors."""
    try:
        with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
            cfg = compose("train", overrides=overrides)
    except MissingConfigException as error:
        missing = str(error.missing_cfg_file or "")
        group, _, choice = missing.rpartition("/")
        if group and error.options:
            raise ConfigError(f"{group}: unknown choice {choice!r} (there is no {missing}.yaml); "
                              f"choose one of {', '.join(error.options)}") from error
        raise ConfigError(" ".join(str(error).split("\n")[0].split())) from error
    except HydraException as error:
        unknown = re.match(r"Could not override '([^']+)'", str(error))
        if unknown:
            message = _unknown_key(unknown.group(1), overrides)
            raise ConfigError(message or first_line(error)) from error
        ambiguous = re.match(r"Ambiguous value for argument '([^=]+)=([^']*)'", str(error))
        if ambiguous:
            key, value = ambiguous.groups()
            raise ConfigError(f"{key}: ambiguous value {value}; write {key}=[{value}] for a list, "
                              f"{key}='{value}' for a string, or add -m to sweep") from error
        lines = [line.strip() for line in str(error).splitlines() if line.strip()
                 and not line.startswith("See https://")]
        raise ConfigError("; ".join(lines) or type(error).__name__) from error
    for override in overrides:  # +key=value where nothing would read the key
        key = override_key(override)
        if override.startswith("+") and key.rpartition(".")[0] in PLAIN_SECTIONS \
                and not (CONFIG_DIR / key.replace(".", "/")).is_dir():  # +group=choice is fine
            message = _unknown_key(key, overrides)
            if message:
                raise ConfigError(message)
    check_settings(cfg)  # values too, before Hydra creates a run directory
    return cfg


def unknown_plain_key(key: str) -> str | None:
    """For ``+key``: the message when ``key`` lies in a section read key by key
    (:data:`PLAIN_SECTIONS`) and the train config has no such key (None: fine)."""
    if key.rpartition(".")[0] not in PLAIN_SECTIONS:
        return None
    return _unknown_key(key, [])


def _unknown_key(key: str, overrides: list[str]) -> str | None:
    """The message for a key that the config composed without its overrides lacks, listing the
    keys it has (None: it has the key)."""
    others = [o for o in overrides if override_key(o) != key]
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=others)
    parent, _, name = key.rpartition(".")
    node = OmegaConf.select(cfg, parent) if parent else cfg
    if not isinstance(node, DictConfig):
        return f"{key}: unknown key ({parent or 'the config'} has no key {name!r})"
    if name in node:
        return None
    keys = [k for k in node if not str(k).startswith("_")]
    where = f"keys of {parent}" if parent else "top-level keys"
    return f"{key}: unknown key; valid {where}: {', '.join(map(str, keys))}"


MULTIRUN_RESUME = ("resume: not available with --multirun; resume each job with "
                   "metarl train \"resume='<its directory>'\" (quoted: its name holds =)")


def job_overrides(overrides: list[Override], multirun: bool) -> list[list[str]] | None:
    """The task overrides of every job this command line will run (None: cannot tell)."""
    choices: list[list[str]] = []
    for override in overrides:
        if not override.is_sweep_override():
            choices.append([override.input_line])
        elif multirun and override.is_discrete_sweep() and not isinstance(override.value(), Glob):
            key = override.get_key_element()
            choices.append([f"{key}={value}" for value in override.sweep_string_iterator()])
        elif multirun:
            return None  # interval sweeps (the sweeper picks values, e.g. Optuna) and globs
        else:
            choices.append([override.input_line])  # compose explains the ambiguity
    return [list(job) for job in itertools.product(*choices)]


def override_key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def preflight(args: list[str], multirun: bool) -> list[str]:
    """Check the command line before Hydra creates anything; return the overrides that point
    Hydra at the run to resume (its own directory, its ``.hydra/`` left as it is)."""
    parser = OverridesParser.create()
    parsed = []
    for arg in args:
        try:
            parsed += parser.parse_overrides([arg])
        except HydraException as error:
            raise ConfigError(f"{arg}: not a valid override ({first_line(error)}); write "
                              "key=value, quoting values with spaces or brackets") from error
    task = [o for o in parsed if not o.is_hydra_override()]
    resume = next((o for o in reversed(task) if o.key_or_group == "resume"), None)
    if multirun and resume is not None:
        raise ConfigError(MULTIRUN_RESUME)
    for job in job_overrides(task, multirun) or []:
        compose_checked(job)
    run_dir = next((str(o.value()) for o in parsed if o.key_or_group == "hydra.run.dir"), None)
    sweep_dir = next((str(o.value()) for o in parsed if o.key_or_group == "hydra.sweep.dir"),
                     None)
    if multirun and sweep_dir is not None and Path(sweep_dir).is_dir() \
            and any(Path(sweep_dir).rglob("metrics.jsonl")):
        raise ConfigError(f"hydra.sweep.dir: {sweep_dir} already holds runs of another sweep; "
                          "choose another directory (Hydra would write the new jobs' settings "
                          "over theirs)")
    if resume is None or resume.value() is None:
        if run_dir is not None and not multirun and holds_run(Path(run_dir)):
            raise ConfigError(already_a_run(Path(run_dir)))
        return []
    found = find_resumable(str(resume.value()), [o.input_line for o in task], run_dir)
    if found is None:
        return []
    quoted = str(found).replace("\\", "\\\\").replace("'", "\\'")
    return ["hydra.output_subdir=null"] + ([] if run_dir else [f"hydra.run.dir='{quoted}'"])


# --- resume=: which run to continue ---
def is_run_dir(path: Path) -> bool:
    return (path / ".hydra" / "config.yaml").is_file()


def holds_run(path: Path) -> bool:
    """A run has logged or checkpointed in ``path`` (more than Hydra's own files)."""
    return (path / "metrics.jsonl").is_file() or (path / "checkpoints").is_dir()


def already_a_run(path: Path) -> str:
    return (f"hydra.run.dir: {path} already holds a run; continue it with "
            f"{resume_command(path)}, or choose another directory")


def resume_command(run_dir: Path) -> str:
    """The shell line that resumes ``run_dir``; a path with ``=`` (every multirun job's) or
    spaces is quoted for Hydra and for the shell."""
    text = str(run_dir)
    if re.fullmatch(r"[\w./+-]+", text):
        return f"metarl train resume={text}"
    if not re.search(r"[\\'\"$`!]", text):
        return f"metarl train \"resume='{text}'\""
    hydra_value = "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return f"metarl train {shlex.quote('resume=' + hydra_value)}"


def find_resumable(resume: str, overrides: list[str], run_dir: str | None) -> Path | None:
    """The run directory ``resume=`` names, or for ``auto`` the newest run under ./outputs
    started with the same overrides (None: nothing to resume)."""
    if resume != "auto":
        path = Path(resume).expanduser()
        return path.resolve() if is_run_dir(path) else None
    if run_dir is not None:
        return Path(run_dir).resolve() if is_run_dir(Path(run_dir)) else None
    wanted = sorted(o for o in overrides if override_key(o) != "resume")
    for path in sorted(Path("outputs").glob("*/*/.hydra/overrides.yaml"), reverse=True):
        try:
            saved = read_saved_overrides(path)
        except ValueError:
            continue
        if sorted(o for o in saved if override_key(o) != "resume") == wanted:
            return path.parent.parent.resolve()
    return None

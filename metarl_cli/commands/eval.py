"""``metarl eval run=<run dir> [checkpoint=latest] [eval.num_tasks=40 eval.steps=3 ...]``.

Meta-tests a saved learner again: rebuilds the experiment from the run's own
``.hydra/config.yaml``, loads a checkpoint into the learner and runs the same meta-test protocol
as training (``run_meta_test``: the sampler seed comes from ``seed`` and the checkpoint's
iteration), so the defaults reproduce the run's final numbers exactly, given the package
versions the run had: each checkpoint records them, and a note names those that differ now
(MuJoCo's dynamics turn a rounding difference into other episodes). Writes
``<run>/eval_<time>.json`` and the curve to TensorBoard under ``<run>/eval_<time>/tb``.

Overrides: ``eval.num_tasks``, ``eval.steps``, ``eval.rollouts``, ``eval.step_budget``,
``eval.task_seed`` (held-out tasks from another task seed), ``eval.legacy_task_seed`` (held-out
tasks drawn as after ``np.random.seed(N)``; 1 gives the MAML test scripts' goals), or any other
key of the saved config (``torch_threads=1``). A key the meta-test needs that an older run's
config lacks can be supplied the same way; any other key it lacks (an option newer than the
run, such as ``eval.step_budget`` for runs made before it) is added with ``+key=value``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from metarl_cli.commands.experiment import (
    build_experiment,
    legacy_task_seed,
    meta_test_record,
    run_meta_test,
)
from metarl_cli.commands.preflight import unknown_plain_key
from metarl_cli.commands.train import format_curve
from metarl_cli.core.build import ConfigError, build
from metarl_cli.core.checkpoint import load_checkpoint, package_versions, version_changes
from metarl_cli.core.paths import CONFIG_DIR, read_saved_config, write_atomic

USAGE = ("usage: metarl eval run=<run dir> [checkpoint=latest|<N>|<path>] "
         "[eval.num_tasks=40] [eval.steps=3] [eval.rollouts=20] [eval.task_seed=<int>] "
         "[key=value ...]")

# What build_experiment and run_meta_test read from a run's config.
REQUIRED_KEYS = ("seed", "task_seed", "device", "torch_threads", "iterations", "meta_batch_size",
                 "eval_every", "checkpoint_every", "eval.num_tasks", "eval.steps",
                 "eval.rollouts", "env.horizon", "env.family", "env.num_train_tasks",
                 "env.num_test_tasks", "model", "optimizer", "algo", "logger")
_ABSENT = object()
# Keys that this command reads itself (never added to the run's config), with or without "+".
COMMAND_KEYS = ("run", "checkpoint", "eval.task_seed")


def parse_args(args: list[str]) -> tuple[Path, str, dict[str, Any]]:
    """``run=...``, ``checkpoint=...`` and the config overrides, as typed values."""
    overrides: dict[str, Any] = {}
    for arg in args:
        key, sep, text = arg.partition("=")
        if not sep or not key:
            raise ConfigError(f"{arg}: expected key=value; {USAGE}")
        # plain Python values: a list or dict override is written to the eval record as JSON
        parsed = OmegaConf.to_container(OmegaConf.from_dotlist([f"value={text}"]))
        value = parsed["value"] if text else text
        name = key.lstrip("+")
        # "+key" is kept for config keys: it may add a key that the run's config lacks
        overrides[name if name in COMMAND_KEYS else key] = value
    if not overrides.get("run"):
        raise ConfigError(f"run: missing; pass the run directory, e.g. run=outputs/<date>/<time>"
                          f" ({USAGE})")
    run_dir = Path(str(overrides.pop("run"))).expanduser()
    checkpoint = str(overrides.pop("checkpoint", "latest"))
    if not checkpoint:
        raise ConfigError("checkpoint: empty; give latest, an iteration number or a path")
    return run_dir, checkpoint, overrides


def load_run_config(run_dir: Path, overrides: dict[str, Any]) -> DictConfig:
    """The run's saved config with ``overrides`` applied; every key the meta-test needs present."""
    if not run_dir.is_dir():
        raise ConfigError(f"run: {run_dir} is not a directory; pass the run_dir that "
                          "metarl train printed on its last line")
    path = run_dir / ".hydra" / "config.yaml"
    if not path.is_file():
        raise ConfigError(f"run: {run_dir} has no .hydra/config.yaml; pass a directory made by "
                          "metarl train")
    try:
        cfg = read_saved_config(path)
    except ValueError as error:
        raise ConfigError(f"run: {error}; pass a directory made by metarl train") from error
    task_seed = overrides.pop("eval.task_seed", None)
    for given, value in overrides.items():
        key = given.lstrip("+")
        typo = unknown_plain_key(key) if given.startswith("+") else None
        if typo:  # nothing would read it
            raise ConfigError(typo)
        if (CONFIG_DIR / key).is_dir() and not isinstance(value, dict):
            raise ConfigError(f"{key}: eval meta-tests the run's own {key} (its checkpoint "
                              f"belongs to it), so the choice cannot change; set keys of it "
                              f"instead, e.g. {key}.<key>=<value>")
        if (key not in REQUIRED_KEYS and not given.startswith("+")
                and OmegaConf.select(cfg, key, default=_ABSENT) is _ABSENT):
            raise ConfigError(f"{key}: not a key of {path}; check the spelling (eval.num_tasks, "
                              f"eval.steps, eval.rollouts, eval.task_seed, ...), or add an "
                              f"option newer than the run with +{key}=<value>")
        OmegaConf.update(cfg, key, value, merge=True, force_add=True)
    if task_seed is not None:
        if legacy_task_seed(cfg) is not None:
            if any(k.lstrip("+") == "eval.legacy_task_seed" for k in overrides):
                raise ConfigError("eval.task_seed: held-out tasks come from one seed; give "
                                  "eval.task_seed or eval.legacy_task_seed, not both")
            cfg.eval.legacy_task_seed = None  # the run's own numpy seed gives way to the new one
        cfg.task_seed = task_seed
    for key in REQUIRED_KEYS:
        if OmegaConf.select(cfg, key, default=_ABSENT) is _ABSENT:
            raise ConfigError(f"{key}: missing from {path} (a run from an older config?); "
                              f"supply it on the command line, e.g. {key}=<value>")
    OmegaConf.set_struct(cfg, True)
    return cfg


def find_checkpoint(run_dir: Path, spec: str) -> Path:
    """``latest``, an iteration number (``iter_<N>.pt``), or a path (absolute, relative to the
    working directory, or relative to ``<run>/checkpoints``)."""
    folder = run_dir / "checkpoints"
    if spec == "latest":
        candidates = [folder / "latest.pt"]
    elif spec.isdigit():
        candidates = [folder / f"iter_{int(spec):06d}.pt"]
    else:
        candidates = [Path(spec).expanduser(), folder / spec, run_dir / spec]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    available = sorted(p.name for p in folder.glob("*.pt")) if folder.is_dir() else []
    raise ConfigError(f"checkpoint: {candidates[0]} not found; available in {folder}: "
                      f"{', '.join(available) or 'none'}")


def evaluate(run_dir: Path, checkpoint: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """Meta-test the checkpoint; write eval_<time>.json and TensorBoard events."""
    cfg = load_run_config(run_dir, dict(overrides))
    path = find_checkpoint(run_dir, checkpoint)
    started = time.perf_counter()
    exp = build_experiment(cfg)
    state = load_checkpoint(path)
    try:
        exp.learner.load_state_dict(state["learner"])
    except (KeyError, RuntimeError) as error:
        raise ConfigError(f"checkpoint: {path} does not fit the learner built from the run's "
                          f"config ({str(error).splitlines()[0]}); were algo or model "
                          "keys overridden?") from error
    iteration, env_steps = int(state["iteration"]), int(state["env_steps"])
    curve = run_meta_test(exp, cfg, iteration)
    record = {
        "run": str(run_dir), "checkpoint": str(path), "iteration": iteration,
        "env_steps": env_steps, "seed": cfg.seed, "task_seed": cfg.task_seed,
        "overrides": {k: v for k, v in overrides.items()}, "versions": package_versions(),
        "version_changes": version_changes(state.get("versions", {})),
        "wall_clock_s": time.perf_counter() - started,
        "meta_test": {**meta_test_record(cfg, curve), "steps": cfg.eval.steps,
                      "returns_per_task": curve.returns.tolist()},
    }
    text = json.dumps(record, indent=2) + "\n"  # before any file: a record that fails writes none
    name = _fresh_name(run_dir)
    logger = build(cfg.logger, "logger", run_dir=_mkdir(run_dir / name))
    logger.log_meta_test(iteration, curve, env_steps)
    logger.close()
    out = run_dir / f"{name}.json"
    write_atomic(out, text)
    record["path"] = str(out)
    record["curve_text"] = format_curve(curve)
    return record


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if any(a in ("-h", "--help") for a in args):
        print(__doc__.strip() + "\n\n" + USAGE)
        return
    try:
        record = evaluate(*parse_args(args))
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    legacy = record["meta_test"]["legacy_task_seed"]
    source = f"task_seed {record['task_seed']}" if legacy is None \
        else f"numpy's np.random.seed({legacy})"
    print(f"meta-test of {record['checkpoint']} (iteration {record['iteration']}) on "
          f"{record['meta_test']['num_tasks']} held-out tasks from {source}:")
    print(record["curve_text"])
    if record["version_changes"]:
        print(f"note: the checkpoint was written with {record['version_changes']}; the numbers "
              "can differ from the run's own by more than rounding, as the dynamics amplify it")
    print(f"eval: {record['path']}")


def _fresh_name(run_dir: Path) -> str:
    stamp = time.strftime("%Y-%m-%d_%H-%M-%S")
    name, n = f"eval_{stamp}", 1
    while (run_dir / f"{name}.json").exists() or (run_dir / name).exists():
        n += 1
        name = f"eval_{stamp}_{n}"
    return name


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True)
    return path

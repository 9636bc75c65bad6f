"""RL² on Bernoulli bandits against the reference strategies, as a Markdown table.

    python scripts/rl2_bandits.py RUN_DIR [RUN_DIR ...]                  # from summary.json
    python scripts/rl2_bandits.py RUN_DIR --reevaluate [--checkpoint latest] [--num-tasks 500]

For every run directory made by ``metarl train algo=rl2 env=bandit_k*``: RL²'s mean total reward
per trial on the run's held-out tasks (its final meta-test in ``summary.json``, or a fresh
meta-test of a checkpoint with ``--reevaluate``, through ``metarl eval``'s code path), and, on
the same tasks (same ``task_seed``), the expected total reward and regret of uniform random,
UCB1, Thompson sampling (Beta(1, 1) prior) and the oracle. A trial is every meta-test episode
together (eval.steps + 1 episodes of env.horizon pulls; one episode in the shipped presets).
Runnable from any directory.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from metarl_cli.commands.eval import evaluate, load_run_config  # noqa: E402
from metarl_cli.core.bandit_baselines import bandit_baselines  # noqa: E402
from metarl_cli.core.build import ConfigError, build  # noqa: E402
from metarl_cli.core.tasks import TaskSets  # noqa: E402


def rl2_result(run_dir: Path, reevaluate: bool, checkpoint: str, num_tasks: int | None,
               rollouts: int | None) -> dict[str, Any]:
    """RL²'s meta-test of a run: mean return per episode index, tasks, iteration, env steps."""
    if reevaluate:
        overrides: dict[str, Any] = {"torch_threads": 1}
        if num_tasks is not None:
            overrides["eval.num_tasks"] = num_tasks
        if rollouts is not None:
            overrides["eval.rollouts"] = rollouts
        record = evaluate(run_dir, checkpoint, overrides)
        return {"returns": record["meta_test"]["return_mean"],
                "num_tasks": record["meta_test"]["num_tasks"],
                "rollouts": record["meta_test"]["rollouts"],
                "iteration": record["iteration"], "env_steps": record["env_steps"],
                "source": Path(record["path"]).name}
    path = run_dir / "summary.json"
    if not path.is_file():
        raise ConfigError(f"{run_dir}: no summary.json (the run did not finish); use "
                          "--reevaluate to meta-test its latest checkpoint")
    summary = json.loads(path.read_text())
    return {"returns": summary["meta_test"]["return_mean"],
            "num_tasks": summary["meta_test"]["num_tasks"],
            "rollouts": summary["meta_test"]["rollouts"],
            "iteration": summary["iterations"], "env_steps": summary["env_steps"],
            "source": "summary.json"}


def run_config(run_dir: Path) -> DictConfig:
    cfg = load_run_config(run_dir, {})
    if not str(cfg.env.family._target_).endswith("BatchedBernoulliBandit"):
        raise ConfigError(f"{run_dir}: env is {cfg.env.family._target_}, not a Bernoulli bandit")
    return cfg


def table_row(run_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    cfg = run_config(run_dir)
    rl2 = rl2_result(run_dir, args.reevaluate, args.checkpoint, args.num_tasks, args.rollouts)
    family = build(cfg.env.family, "env.family")
    task_sets = TaskSets(family, cfg.task_seed, cfg.env.num_train_tasks, cfg.env.num_test_tasks)
    probs = np.array([t.probs for t in task_sets.test_tasks(rl2["num_tasks"])])
    pulls = int(cfg.env.horizon) * len(rl2["returns"])
    scores = bandit_baselines(probs, pulls, np.random.default_rng(args.seed), args.repeats)
    reward = float(sum(rl2["returns"]))
    return {"run": run_dir.name, "K": int(cfg.env.family.num_arms), "n": pulls,
            "task_seed": int(cfg.task_seed), **rl2, "rl2_reward": reward,
            "rl2_regret": scores["oracle"].mean_reward - reward,
            "baselines": {name: (s.mean_reward, s.mean_regret) for name, s in scores.items()}}


def markdown(rows: list[dict[str, Any]]) -> str:
    head = ("| run | K | n | iteration | env steps | test tasks x trials | RL² | random | UCB1 "
            "| Thompson | oracle |")
    lines = [head, "|" + "---|" * 11,
             *[f"| {r['run']} | {r['K']} | {r['n']} | {r['iteration']} | {r['env_steps']:,} "
               f"| {r['num_tasks']} x {r['rollouts']} | "
               f"**{r['rl2_reward']:.1f}** ({r['rl2_regret']:.1f}) | "
               + " | ".join(f"{m:.1f} ({g:.1f})" for m, g in
                            (r["baselines"][s] for s in ("random", "ucb1", "thompson",
                                                          "oracle"))) + " |"
               for r in rows]]
    note = ("Mean total reward per trial over the held-out tasks, regret vs the oracle in "
            "parentheses. RL²: mean over the tasks' trials of its meta-test "
            f"({', '.join(sorted({r['source'] for r in rows}))}); random and oracle in closed "
            "form; UCB1 and Thompson simulated on the same tasks.")
    return "\n".join(lines) + "\n\n" + note


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run directories of metarl train")
    parser.add_argument("--reevaluate", action="store_true",
                        help="meta-test a checkpoint again instead of reading summary.json")
    parser.add_argument("--checkpoint", default="latest", help="latest, an iteration, a path")
    parser.add_argument("--num-tasks", type=int, default=None, help="held-out tasks (reevaluate)")
    parser.add_argument("--rollouts", type=int, default=None, help="trials per task (reevaluate)")
    parser.add_argument("--repeats", type=int, default=200,
                        help="simulated trials per task for UCB1 and Thompson")
    parser.add_argument("--seed", type=int, default=0, help="seed of the baseline simulations")
    args = parser.parse_args(argv)
    try:
        rows = [table_row(run.expanduser().resolve(), args) for run in args.runs]
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    print(markdown(rows))


if __name__ == "__main__":
    main()

"""One MAML-TRPO meta-iteration at the paper's HalfCheetahVel settings, timed (issue 3, part 3).

Builds the experiment exactly as ``metarl train algo=maml env=halfcheetah_vel`` does (40 tasks x
20 rollouts x 200 steps, sampled before and after adaptation: 320,000 env steps), runs one
``train_step`` and prints where the time went: sampling before adaptation, the inner
adaptation (advantages, baseline fits, the inner gradient step), sampling after adaptation and
the outer TRPO step (advantages, conjugate gradient with Hessian-vector products through the
inner step, line search). The bound is the physics alone: the iteration's own actions replayed
from its own initial states on all cores, by mj_step in a Python thread pool and by
mujoco.batch (C++ threads, open loop); the faster is the bound.

Usage (from any directory):
    python scripts/bench_iteration.py            # the paper's batch
    python scripts/bench_iteration.py --quick    # 10 tasks x 10 rollouts, under a minute
    python scripts/bench_iteration.py torch_threads=1 env=halfcheetah_dir   # any overrides

The last line is machine-readable:
    iteration_s=<s> physics_s=<s> ratio_vs_physics=<x> peak_rss_mb=<m>
Peak RSS is read right after the iteration, before the physics replay allocates its own data.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import (  # noqa: E402
    Episodes,
    cores,
    episodes_of,
    peak_rss_mb,
    replay_batch,
    replay_threads,
)

from metarl_cli.commands.experiment import build_experiment  # noqa: E402
from metarl_cli.commands.preflight import compose_checked  # noqa: E402
from metarl_cli.core.build import ConfigError  # noqa: E402
from metarl_cli.core.types import EpisodeBatch  # noqa: E402

QUICK = ["meta_batch_size=10", "algo.rollouts_per_task=10"]


@dataclass
class SampleCall:
    started: float
    ended: float
    episodes: Episodes


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help=f"reduced batch ({' '.join(QUICK)}), under a minute")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("overrides", nargs="*",
                        help="Hydra overrides on top of algo=maml env=halfcheetah_vel")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    overrides = ["algo=maml", "env=halfcheetah_vel", f"seed={args.seed}",
                 *(QUICK if args.quick else []), *args.overrides]
    try:
        cfg = compose_checked(overrides)
        if OmegaConf.select(cfg, "algo._target_") != "metarl_cli.algos.maml.MAML":
            raise ConfigError("algo: this script times one MAML iteration; use algo=maml (its "
                              "keys, e.g. algo.outer_step, may be changed)")
        exp = build_experiment(cfg)
        if not hasattr(exp.family, "physics"):
            raise ConfigError("env: the physics bound needs a MuJoCo family; use a "
                              "halfcheetah_* or ant_* env")
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    family, sampler = exp.family, exp.sampler
    physics = family.physics
    tasks = exp.task_sets.train_batch(cfg.meta_batch_size)
    rollouts = cfg.algo.rollouts_per_task
    print(f"MAML-TRPO one meta-iteration: {' '.join(overrides)}\n"
          f"{len(tasks)} tasks x {rollouts} rollouts x {cfg.env.horizon} steps, "
          f"torch threads {torch.get_num_threads()}, physics threads {family.num_threads}, "
          f"{cores()} cores", flush=True)

    # allocate the batch's MjData once, as the first iteration of a run does
    family.set_tasks([task for task in tasks for _ in range(rollouts)])
    family.reset(np.random.default_rng(0))

    calls: list[SampleCall] = []
    resets: list[tuple[np.ndarray, np.ndarray]] = []
    sample, reset = sampler.sample, family.reset

    def recording_reset(rng: np.random.Generator) -> np.ndarray:
        obs = reset(rng)
        resets.append((physics.qpos.copy(), physics.qvel.copy()))
        return obs

    def timed_sample(*a: object, **k: object) -> EpisodeBatch:
        started = time.perf_counter()
        batch = sample(*a, **k)  # type: ignore[arg-type]
        ended = time.perf_counter()
        calls.append(SampleCall(started, ended, episodes_of(batch, *resets[-1],
                                                            family.action_space)))
        return batch

    family.reset = recording_reset  # type: ignore[method-assign]
    sampler.sample = timed_sample  # type: ignore[method-assign]
    started = time.perf_counter()
    metrics = exp.learner.train_step(tasks)
    ended = time.perf_counter()
    rss = peak_rss_mb()
    del family.reset, sampler.sample

    iteration_s = ended - started
    before = sum(c.ended - c.started for c in calls[:-1])
    after = calls[-1].ended - calls[-1].started
    inner = calls[-1].started - started - before
    outer = ended - calls[-1].ended
    env_steps = int(metrics["env_steps"])
    threads_s = sum(replay_threads(physics.model, physics.frame_skip, physics.contacts,
                                   c.episodes, cores(), repeats=2)[0] for c in calls)
    batch_s = sum(replay_batch(physics.model, physics.frame_skip, c.episodes, cores(),
                               repeats=2)[0] for c in calls)
    physics_s = min(threads_s, batch_s)
    replayed = sum(c.episodes.steps for c in calls)

    print(f"{'phase':40}{'seconds':>10}{'share':>8}")
    for name, seconds in [("sampling before adaptation", before), ("inner adaptation", inner),
                          ("sampling after adaptation", after), ("outer TRPO step", outer),
                          ("whole iteration", iteration_s)]:
        print(f"{name:40}{seconds:10.2f}{seconds / iteration_s:8.0%}")
    print(f"env steps {env_steps:,} ({env_steps / iteration_s:,.0f}/s over the iteration, "
          f"{env_steps / (before + after):,.0f}/s while sampling)")
    print(f"physics alone for the same {replayed:,} steps, {cores()} threads, best of 2: "
          f"mj_step {threads_s:.2f} s, mujoco.batch {batch_s:.2f} s")
    ratio = iteration_s / physics_s
    print(f"iteration / physics = {ratio:.2f} (target <= 1.6); peak RSS {rss:,.0f} MB "
          f"(target <= 3072)")
    print(f"iteration_s={iteration_s:.2f} physics_s={physics_s:.2f} ratio_vs_physics={ratio:.2f} "
          f"peak_rss_mb={rss:.0f}")
    family.close()


if __name__ == "__main__":
    main()

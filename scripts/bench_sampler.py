"""Sampling throughput on one batch, three ways, in one run (issue 3, part 2).

(a) metarl's Sampler on the batched task family, with an MLP policy;
(b) gymnasium's SyncVectorEnv of the same MuJoCo model (HalfCheetah-v5 / Ant-v5), with the same
    policy evaluated once per step for the whole batch;
(c) physics alone on all cores: (a)'s actions replayed from (a)'s initial states by mj_step in a
    Python thread pool, by mujoco.rollout and by mujoco.batch (open loop, no Python per step);
    the fastest is the bound.

Usage (from any directory):
    python scripts/bench_sampler.py --family halfcheetah --num-envs 800 --horizon 200

The last line is machine-readable:
    ratio_vs_physics=<(a)/(c)> ratio_vs_gymnasium=<(a)/(b)> steps_per_s=<(a)>
Numbers are wall-clock env-steps per second, each the best of ``--repeats`` runs taken in turns;
on a shared machine run it when it is quiet.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import (  # noqa: E402
    Episodes,
    cores,
    episodes_of,
    replay_batch,
    replay_rollout,
    replay_threads,
)

from metarl_cli.core.functional import PerTaskPolicy, broadcast_policy  # noqa: E402
from metarl_cli.core.sampler import Sampler  # noqa: E402
from metarl_cli.envs.locomotion import BatchedAntVel, BatchedHalfCheetahVel  # noqa: E402
from metarl_cli.policies.mlp import mlp_policy  # noqa: E402

FAMILIES = {"halfcheetah": (BatchedHalfCheetahVel, "HalfCheetah-v5"),
            "ant": (BatchedAntVel, "Ant-v5")}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--family", choices=sorted(FAMILIES), default="halfcheetah")
    parser.add_argument("--num-envs", type=int, default=800,
                        help="environments in the batch (= tasks x rollouts)")
    parser.add_argument("--tasks", type=int, default=40, help="tasks; must divide --num-envs")
    parser.add_argument("--horizon", type=int, default=200)
    parser.add_argument("--hidden-sizes", type=int, nargs="+", default=[100, 100])
    parser.add_argument("--num-threads", type=int, default=None,
                        help="physics threads for (a) and (c); default: all cores")
    parser.add_argument("--torch-threads", type=int, default=1,
                        help="torch threads for the policy in (a) and (b)")
    parser.add_argument("--repeats", type=int, default=1, help="best of this many runs each")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for name in ("num_envs", "tasks", "horizon", "repeats", "torch_threads", "num_threads"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if min(args.hidden_sizes) < 1:
        parser.error("--hidden-sizes: every layer needs >= 1 unit")
    if args.num_envs % args.tasks:
        parser.error(f"--tasks ({args.tasks}) must divide --num-envs ({args.num_envs})")
    if args.num_threads is None:
        args.num_threads = cores()
    return args


def run_sampler(family: BatchedHalfCheetahVel | BatchedAntVel, acting: PerTaskPolicy,
                tasks: list, rollouts: int, horizon: int, seed: int
                ) -> tuple[float, Episodes, int, np.ndarray, np.ndarray]:
    """Seconds for one Sampler.sample, the controls it applied, the environment steps it took,
    its final qpos and which environments ran every step of it.

    The sampler leaves an environment unstepped once its episode has ended (the Ant falls), so
    its steps are the episodes' steps; the physics replays (c) step every environment for as
    long as the sampler ran, so they are compared per step, and their final state only where
    the episode ran to the end."""
    resets: list[tuple[np.ndarray, np.ndarray]] = []
    reset = family.reset

    def recording_reset(rng: np.random.Generator) -> np.ndarray:
        obs = reset(rng)
        resets.append((family.physics.qpos.copy(), family.physics.qvel.copy()))
        return obs

    family.reset = recording_reset  # type: ignore[method-assign]
    try:
        sampler = Sampler(family, horizon, seed)
        started = time.perf_counter()
        batch = sampler.sample(acting, tasks, rollouts)
        seconds = time.perf_counter() - started
    finally:
        del family.reset
    episodes = episodes_of(batch, *resets[0], family.action_space)
    ran_through = batch.mask[..., episodes.ctrl.shape[0] - 1].flatten().bool().cpu().numpy()
    return (seconds, episodes, batch.num_steps, family.physics.qpos.copy(), ran_through)


def run_gymnasium(envs: gym.vector.SyncVectorEnv, acting: PerTaskPolicy, num_tasks: int,
                  rollouts: int, horizon: int, seed: int) -> tuple[float, int]:
    """Seconds for ``horizon`` steps of a SyncVectorEnv with one policy forward per step, and
    the environment steps taken: an environment whose episode ended spends its next step on
    the reset (``AutoresetMode.NEXT_STEP``), which takes no physics step and is not counted, as
    (a) counts only the steps of episodes."""
    generator = torch.Generator().manual_seed(seed)
    obs, _ = envs.reset(seed=seed)
    resetting = np.zeros(envs.num_envs, dtype=bool)
    steps = 0
    started = time.perf_counter()
    for _ in range(horizon):
        obs_t = torch.from_numpy(obs).to(torch.float32).view(num_tasks, rollouts, -1)
        with torch.no_grad():
            action, _ = acting.act(obs_t, generator)
        obs, _, terminated, truncated, _ = envs.step(
            action.reshape(num_tasks * rollouts, -1).numpy())
        steps += int((~resetting).sum())
        resetting = terminated | truncated
    return time.perf_counter() - started, steps


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.torch_threads)
    family_cls, env_id = FAMILIES[args.family]
    family = family_cls(num_threads=args.num_threads)
    rollouts = args.num_envs // args.tasks
    tasks = family.sample_tasks(args.tasks, np.random.default_rng(args.seed))
    torch.manual_seed(args.seed)
    policy = mlp_policy(family.observation_space, family.action_space, args.hidden_sizes)
    acting = broadcast_policy(policy, args.tasks)
    physics = family.physics
    print(f"family {args.family} ({type(family).__name__}, model of {env_id}), "
          f"{args.num_envs} envs ({args.tasks} tasks x {rollouts} rollouts), horizon "
          f"{args.horizon}, policy MLP {args.hidden_sizes}, physics threads {args.num_threads}, "
          f"torch threads {args.torch_threads}, best of {args.repeats}", flush=True)

    Sampler(family, 2, args.seed).sample(acting, tasks, rollouts)  # allocate data and threads
    envs = gym.vector.SyncVectorEnv([lambda: gym.make(env_id) for _ in range(args.num_envs)],
                                    autoreset_mode=gym.vector.AutoresetMode.NEXT_STEP)
    # the measurements take turns, so that a load that comes and goes hits all of them
    ours_s = gym_s = threads_s = rollout_s = batch_s = float("inf")
    drift = 0.0
    for _ in range(args.repeats):
        seconds, episodes, ours_steps, final_qpos, ran = run_sampler(
            family, acting, tasks, rollouts, args.horizon, args.seed)
        ours_s = min(ours_s, seconds)
        seconds, gym_steps = run_gymnasium(envs, acting, args.tasks, rollouts, args.horizon,
                                           args.seed)  # the same episodes every repeat
        gym_s = min(gym_s, seconds)
        seconds, replayed_qpos = replay_threads(physics.model, physics.frame_skip,
                                                physics.contacts, episodes, args.num_threads)
        threads_s = min(threads_s, seconds)
        drift = max(drift, float(np.abs(replayed_qpos - final_qpos)[ran].max()))
        rollout_s = min(rollout_s, replay_rollout(physics.model, physics.frame_skip, episodes,
                                                  args.num_threads))
        seconds, replayed_qpos = replay_batch(physics.model, physics.frame_skip, episodes,
                                              args.num_threads)
        batch_s = min(batch_s, seconds)
        drift = max(drift, float(np.abs(replayed_qpos - final_qpos)[ran].max()))
    envs.close()
    steps = episodes.steps

    rates = {"ours": ours_steps / ours_s, "gym": gym_steps / gym_s,
             "threads": steps / threads_s, "rollout": steps / rollout_s,
             "batch": steps / batch_s}
    bound = max(rates["threads"], rates["rollout"], rates["batch"])
    rows = [("(a) metarl Sampler + policy", rates["ours"], ours_s, ours_steps),
            ("(b) gymnasium SyncVectorEnv + policy", rates["gym"], gym_s, gym_steps),
            (f"(c) physics alone: mj_step, {args.num_threads} threads", rates["threads"],
             threads_s, steps),
            (f"(c) physics alone: mujoco.rollout, {args.num_threads} threads", rates["rollout"],
             rollout_s, steps),
            (f"(c) physics alone: mujoco.batch, {args.num_threads} threads", rates["batch"],
             batch_s, steps)]
    print(f"{'':52}{'env-steps/s':>12}{'seconds':>10}{'steps':>10}")
    for name, rate, seconds, n in rows:
        print(f"{name:52}{rate:12,.0f}{seconds:10.2f}{n:10d}")
    print(f"replays of (a)'s actions (mj_step, mujoco.batch) reproduce its final state where "
          f"the episode ran to the end ({int(ran.sum())} of {ran.size}): max |qpos difference| "
          f"= {drift:.1e}")
    ratio_physics, ratio_gym = rates["ours"] / bound, rates["ours"] / rates["gym"]
    print(f"ours / physics bound = {ratio_physics:.2f} (target >= 0.75; the bound is the faster "
          f"(c); ours / mj_step threads = {rates['ours'] / rates['threads']:.2f}, "
          f"ours / mujoco.batch = {rates['ours'] / rates['batch']:.2f}); "
          f"ours / gymnasium = {ratio_gym:.2f} (target >= 2.5)")
    print(f"ratio_vs_physics={ratio_physics:.3f} ratio_vs_gymnasium={ratio_gym:.3f} "
          f"steps_per_s={rates['ours']:.0f}")
    family.close()


if __name__ == "__main__":
    main()

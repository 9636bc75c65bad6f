"""Shared pieces of the benchmark scripts: the physics-only bound, episode replay, memory.

The bound on sampling speed is MuJoCo stepping the same environments through the same actions
with nothing else to do. It is measured three ways: ``mj_step`` on fresh ``MjData`` in a pool of
Python threads (one slice of the batch per thread, with no observations, rewards or policy),
``mujoco.rollout`` and ``mujoco.batch.Batch.rollout`` (C++ threads, no Python per step, open
loop; the batch module is also what the batched families step with). All replay recorded
actions from the recorded initial states, so the physics does exactly the work the sampler's
physics did.
"""

from __future__ import annotations

import os
import resource
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import gymnasium as gym
import mujoco
import numpy as np
from mujoco import batch as mujoco_batch
from mujoco import rollout

from metarl_cli.core.types import EpisodeBatch


@dataclass(frozen=True)
class Episodes:
    """What a sampler run did to the physics: reset state (B, nq), (B, nv); controls (T, B, nu)."""

    qpos: np.ndarray
    qvel: np.ndarray
    ctrl: np.ndarray

    @property
    def steps(self) -> int:
        return int(self.ctrl.shape[0] * self.ctrl.shape[1])


def episodes_of(batch: EpisodeBatch, qpos: np.ndarray, qvel: np.ndarray, action_space: gym.Space
                ) -> Episodes:
    """The physics' view of a sampled batch: its reset state and the clipped controls of every
    step the sampler took (it stops early only when every episode has terminated)."""
    taken = int(batch.mask.flatten(0, 1).any(0).nonzero().max()) + 1
    actions = batch.actions[:, :, :taken].double().cpu().numpy()
    actions = actions.reshape(-1, taken, actions.shape[-1]).transpose(1, 0, 2)
    low, high = action_space.low, action_space.high  # type: ignore[attr-defined]
    return Episodes(qpos, qvel, np.clip(actions, low, high))


def cores() -> int:
    return os.cpu_count() or 1


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (Linux reports kilobytes)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _reset(model: mujoco.MjModel, data: mujoco.MjData, qpos: np.ndarray, qvel: np.ndarray
           ) -> None:
    """Gymnasium's reset of one environment to a given state (as the batched families do)."""
    mujoco.mj_resetData(model, data)
    data.qpos[:] = qpos
    data.qvel[:] = qvel
    mujoco.mj_forward(model, data)


def replay_threads(model: mujoco.MjModel, frame_skip: int, contacts: bool, episodes: Episodes,
                   num_threads: int, repeats: int = 1) -> tuple[float, np.ndarray]:
    """Seconds to step B MjData through ``episodes`` with ``mj_step`` in ``num_threads``
    threads (the best of ``repeats`` replays after an untimed one, so memory is warm), and the
    final qpos (B, nq), which must equal the replayed run's."""
    b = episodes.ctrl.shape[1]
    datas = [mujoco.MjData(model) for _ in range(b)]
    n = max(1, min(num_threads, b))
    slices = [(i * b // n, (i + 1) * b // n) for i in range(n)]

    def step_slice(start: int, stop: int, ctrl: np.ndarray) -> None:
        for d, c in zip(datas[start:stop], ctrl[start:stop], strict=True):
            d.ctrl[:] = c
            mujoco.mj_step(model, d, frame_skip)
            if contacts:  # gymnasium's Ant computes the contact forces after every step
                mujoco.mj_rnePostConstraint(model, d)

    def run() -> float:
        for i, d in enumerate(datas):
            _reset(model, d, episodes.qpos[i], episodes.qvel[i])
        started = time.perf_counter()
        for ctrl in episodes.ctrl:
            for future in [pool.submit(step_slice, lo, hi, ctrl) for lo, hi in slices]:
                future.result()
        return time.perf_counter() - started

    with ThreadPoolExecutor(n) as pool:
        run()  # untimed: fresh MjData pay for first touching their memory, the sampler's did not
        seconds = min(run() for _ in range(repeats))
    return seconds, np.stack([d.qpos.copy() for d in datas])


def replay_rollout(model: mujoco.MjModel, frame_skip: int, episodes: Episodes, num_threads: int
                   ) -> float:
    """Seconds for ``mujoco.rollout`` to step the same episodes open loop in C++ threads."""
    b = episodes.ctrl.shape[1]
    spec = mujoco.mjtState.mjSTATE_FULLPHYSICS
    state = np.zeros((b, mujoco.mj_stateSize(model, spec)))
    warmstart = np.zeros((b, model.nv))
    data = mujoco.MjData(model)
    for i in range(b):
        _reset(model, data, episodes.qpos[i], episodes.qvel[i])
        mujoco.mj_getState(model, data, state[i], spec)
        warmstart[i] = data.qacc_warmstart
    control = np.repeat(episodes.ctrl.transpose(1, 0, 2), frame_skip, axis=1)
    datas = [mujoco.MjData(model) for _ in range(num_threads)]
    out = np.zeros((b, control.shape[1], state.shape[1]))
    with rollout.Rollout(nthread=num_threads) as runner:
        started = time.perf_counter()
        runner.rollout(model, datas, state, control, initial_warmstart=warmstart, state=out)
        return time.perf_counter() - started


def replay_batch(model: mujoco.MjModel, frame_skip: int, episodes: Episodes, num_threads: int,
                 repeats: int = 1) -> tuple[float, np.ndarray]:
    """Seconds for ``mujoco.batch`` to step the same episodes open loop in ``num_threads`` C++
    threads (the best of ``repeats`` after an untimed one), and the final qpos (B, nq)."""
    b = episodes.ctrl.shape[1]
    batch = mujoco_batch.Batch(model, b, num_threads)
    qpos, qvel = batch.bind("qpos"), batch.bind("qvel")
    control = np.repeat(episodes.ctrl.transpose(1, 0, 2), frame_skip, axis=1)

    def run() -> float:
        batch.reset(stage=mujoco.mjtStage.mjSTAGE_NONE)
        qpos[:] = episodes.qpos
        qvel[:] = episodes.qvel
        batch.forward()
        started = time.perf_counter()
        batch.rollout(control.shape[1], control, record=())
        return time.perf_counter() - started

    run()  # untimed, as in replay_threads
    seconds = min(run() for _ in range(repeats))
    return seconds, qpos.copy()

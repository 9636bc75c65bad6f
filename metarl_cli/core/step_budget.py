"""Episodes by a step budget: the sampling of the MAML paper's code (rllab's VectorizedSampler).

There, a task's ``slots`` environments step together and each starts a new episode as soon as
its last one ends; sampling stops after the first time step at which the finished episodes
hold ``step_budget`` steps or more, and only the finished episodes are kept (the unfinished
ones are dropped). Where episodes can end early, the kept ones are not a fair sample of the
policy's episodes: short episodes finish more often within the budget, so a mean return over
them favours whatever ends early (in 2D navigation, reaching the goal). Where no episode ends
before the horizon, a budget of ``slots x horizon`` keeps one whole episode per slot, the same
batch as ``slots`` rollouts.

Because a policy without memory acts the same whenever an episode starts, the episodes of one
slot can be drawn in rounds of ``slots`` parallel episodes and laid end to end afterwards.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from metarl_cli.core.sampler import Sampler, TaskPolicy
from metarl_cli.core.types import EpisodeBatch


def finished_within(lengths: np.ndarray, step_budget: int, known_until: int) -> np.ndarray | None:
    """Which episodes of one task the budget keeps, or None if the episodes known so far
    cannot tell yet.

    ``lengths`` (slots, rounds) holds the episodes' lengths in the order each slot ran them;
    every slot's later episodes end after ``known_until``, the earliest end of a slot's last
    known episode.
    """
    ends = lengths.cumsum(axis=1)
    order = np.argsort(ends, axis=None, kind="stable")
    finished = np.cumsum(lengths.ravel()[order])
    first = int(np.searchsorted(finished, step_budget))  # first end with enough steps finished
    if first == finished.size:
        return None
    stop = ends.ravel()[order][first]
    if stop > known_until:
        return None
    return ends <= stop


def sample_with_step_budget(sampler: Sampler, policy: TaskPolicy, tasks: Sequence[Any],
                            slots: int, step_budget: int) -> EpisodeBatch:
    """The finished episodes of each task under a step budget (module docstring).

    Tasks keep different numbers of episodes; the batch has as many rollouts as the task that
    kept most, and the others are padded with episodes of no steps (mask all 0), which every
    masked sum and mean leaves out. :meth:`EpisodeBatch.mean_returns` averages over the kept
    episodes only.
    """
    if getattr(policy, "observe", None) is not None:
        raise ValueError("eval.step_budget: a policy with memory across episodes cannot be "
                         "sampled in rounds; leave eval.step_budget null for this algorithm")
    rounds: list[EpisodeBatch] = []
    kept: list[np.ndarray | None] = [None] * len(tasks)
    while any(k is None for k in kept):
        rounds.append(sampler.sample(policy, tasks, slots))
        lengths = torch.stack([r.mask.sum(-1) for r in rounds], dim=-1).round().long()
        lengths = lengths.cpu().numpy()  # (N, slots, rounds)
        for i in range(len(tasks)):
            if kept[i] is None:
                known_until = int(lengths[i].sum(axis=1).min())
                kept[i] = finished_within(lengths[i], step_budget, known_until)
    return _gather(rounds, kept)


def _gather(rounds: list[EpisodeBatch], kept: list[np.ndarray | None]) -> EpisodeBatch:
    """One batch holding, per task, the kept episodes of all rounds, padded with empty ones."""
    slots = rounds[0].mask.shape[1]
    # episode (slot s, round r) sits at rollout r * slots + s of the concatenated rounds; one
    # more rollout of zeros at the end is the padding
    chosen = [np.flatnonzero(k.T.ravel()) for k in kept if k is not None]
    width = max(len(c) for c in chosen)
    pad = len(rounds) * slots
    index = torch.tensor(np.stack([np.pad(c, (0, width - len(c)), constant_values=pad)
                                   for c in chosen]))

    def pick(parts: list[torch.Tensor]) -> torch.Tensor:
        x = torch.cat([*parts, torch.zeros_like(parts[0][:, :1])], dim=1)
        rows = torch.arange(x.shape[0], device=x.device).unsqueeze(1)
        return x[rows, index.to(x.device)]

    final = None if rounds[0].final_obs is None else pick([r.final_obs for r in rounds])
    return EpisodeBatch(rounds[0].tasks, pick([r.obs for r in rounds]),
                        pick([r.actions for r in rounds]), pick([r.rewards for r in rounds]),
                        pick([r.mask for r in rounds]), pick([r.log_probs for r in rounds]),
                        final)

"""Replay buffers for many tasks, for off-policy meta-learners (PEARL).

One preallocated tensor per field, shaped (max_tasks, capacity, dim), on the configured device:
each task owns a slot, a ring buffer of its transitions. Episodes are written whole (only the
steps the sampler's mask marks as taken), and a batch for many tasks is drawn with one indexing
operation, never a Python loop per transition.

Tasks map to slots by first appearance, keyed by ``repr(task)`` (tasks are small frozen
dataclasses), so a resumed run maps the same tasks to the same slots. When every meta-iteration
draws fresh tasks (env presets with ``num_train_tasks=null``), at most ``max_tasks`` slots are
kept: a new task takes the slot of the task written least recently, so memory stays bounded.
CPU storage is allocated with ``torch.empty``, so pages of slots never written are not touched.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from metarl_cli.core.checks import check_at_least


@dataclass(frozen=True)
class Transitions:
    """A batch of transitions for N tasks, B each: (N, B, ...)."""

    obs: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    next_obs: torch.Tensor
    terminals: torch.Tensor


FIELDS = ("obs", "actions", "rewards", "next_obs", "terminals")


class MultiTaskReplay:
    def __init__(self, obs_dim: int, act_dim: int, capacity: int, max_tasks: int,
                 device: str | torch.device = "cpu") -> None:
        check_at_least(1, capacity=capacity, max_tasks=max_tasks)
        self.capacity, self.max_tasks = capacity, max_tasks
        self.device = torch.device(device)
        dtype = torch.get_default_dtype()
        dims = {"obs": (obs_dim,), "actions": (act_dim,), "rewards": (), "next_obs": (obs_dim,),
                "terminals": ()}
        self._data = {f: torch.empty((max_tasks, capacity, *d), dtype=dtype, device=self.device)
                      for f, d in dims.items()}
        self.size = torch.zeros(max_tasks, dtype=torch.long)
        self.pos = torch.zeros(max_tasks, dtype=torch.long)
        self._last_write = torch.full((max_tasks,), -1, dtype=torch.long)
        self._clock = 0
        self._slot_of: dict[str, int] = {}

    # --- slots ---
    def keys(self) -> list[str]:
        """Task keys with data, in slot order."""
        return [k for k, s in sorted(self._slot_of.items(), key=lambda kv: kv[1])
                if self.size[s] > 0]

    def slot(self, key: str) -> int:
        """The slot of a stored task key (KeyError if absent)."""
        return self._slot_of[key]

    def __contains__(self, task: Any) -> bool:
        key = repr(task)
        return key in self._slot_of and bool(self.size[self._slot_of[key]] > 0)

    def _slot_for(self, key: str, protected: set[int]) -> int:
        if key in self._slot_of:
            return self._slot_of[key]
        if len(self._slot_of) < self.max_tasks:
            used = set(self._slot_of.values())
            slot = next(s for s in range(self.max_tasks) if s not in used)
        else:  # evict the task written least recently, never one of this write
            order = torch.argsort(self._last_write, stable=True).tolist()
            slot = next(s for s in order if s not in protected)
            del self._slot_of[next(k for k, s in self._slot_of.items() if s == slot)]
            self.size[slot] = 0
            self.pos[slot] = 0
        self._slot_of[key] = slot
        return slot

    # --- writing ---
    def add(self, tasks: Sequence[Any], obs: torch.Tensor, actions: torch.Tensor,
            rewards: torch.Tensor, next_obs: torch.Tensor, terminals: torch.Tensor,
            mask: torch.Tensor) -> None:
        """Write the masked-in steps of episodes (N, R, T, ...) of ``tasks`` (N)."""
        keys = [repr(t) for t in tasks]
        if len(set(keys)) > self.max_tasks:
            raise ValueError(f"max_tasks={self.max_tasks} is less than the {len(set(keys))} "
                             "tasks written at once; raise max_tasks")
        fields = {"obs": obs, "actions": actions, "rewards": rewards, "next_obs": next_obs,
                  "terminals": terminals}
        protected: set[int] = set()
        for i, key in enumerate(keys):
            slot = self._slot_for(key, protected)
            protected.add(slot)
            taken = mask[i].reshape(-1) > 0
            k = int(taken.sum().item())
            self._clock += 1
            self._last_write[slot] = self._clock
            if k == 0:
                continue
            rows = {f: v[i].reshape(-1, *v.shape[3:])[taken] for f, v in fields.items()}
            if k > self.capacity:  # only the newest capacity steps survive a ring write
                rows = {f: v[-self.capacity:] for f, v in rows.items()}
                self.pos[slot] = (self.pos[slot] + k - self.capacity) % self.capacity
                k = self.capacity
            index = ((self.pos[slot] + torch.arange(k)) % self.capacity).to(self.device)
            for f, v in rows.items():
                self._data[f][slot].index_copy_(0, index, v.to(self._data[f].dtype))
            self.pos[slot] = (self.pos[slot] + k) % self.capacity
            self.size[slot] = min(self.capacity, int(self.size[slot]) + k)

    def clear(self, tasks: Sequence[Any]) -> None:
        """Empty the slots of ``tasks`` (PEARL refreshes a task's encoder data each collection);
        the tasks keep their slots."""
        for task in tasks:
            slot = self._slot_of.get(repr(task))
            if slot is not None:
                self.size[slot] = 0
                self.pos[slot] = 0

    # --- sampling ---
    def sample(self, keys: Sequence[str], batch_size: int, generator: torch.Generator
               ) -> Transitions:
        """``batch_size`` transitions of each task (uniform, with replacement): (N, B, ...)."""
        slots = torch.tensor([self._slot_of[k] for k in keys], dtype=torch.long)
        sizes = self.size[slots]
        if bool((sizes == 0).any()):
            empty = [k for k, s in zip(keys, sizes.tolist(), strict=True) if s == 0]
            raise ValueError(f"no transitions stored for tasks {empty}")
        u = torch.rand((len(keys), batch_size), generator=generator, dtype=torch.float64)
        idx = (u * sizes.unsqueeze(1)).long().clamp_max(sizes.unsqueeze(1) - 1).to(self.device)
        rows = slots.to(self.device).unsqueeze(1)
        return Transitions(**{f: self._data[f][rows, idx] for f in FIELDS})

    # --- resume ---
    def state_dict(self) -> dict[str, Any]:
        """The stored transitions of every slot (only the filled part) and the ring state."""
        slots = []
        for key, s in sorted(self._slot_of.items(), key=lambda kv: kv[1]):
            n = int(self.size[s])
            slots.append({"key": key, "slot": s} |
                         {f: self._data[f][s, :n].clone() for f in FIELDS})
        return {"slots": slots, "size": self.size.clone(), "pos": self.pos.clone(),
                "last_write": self._last_write.clone(), "clock": self._clock}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._slot_of = {}
        for entry in state["slots"]:
            s = int(entry["slot"])
            self._slot_of[str(entry["key"])] = s
            for f in FIELDS:
                n = entry[f].shape[0]
                self._data[f][s, :n] = entry[f].to(self.device)
        self.size.copy_(state["size"])
        self.pos.copy_(state["pos"])
        self._last_write.copy_(state["last_write"])
        self._clock = int(state["clock"])

"""Multi-task replay: masked writes, ring overwrite, per-task sampling, eviction, state round
trip."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import pytest
import torch

from metarl_cli.core.replay import MultiTaskReplay


@dataclass(frozen=True)
class Task:
    k: int


def episodes(values: list[float], mask: list[float] | None = None) -> dict[str, torch.Tensor]:
    """One task, one rollout, T steps whose obs/actions/rewards all equal ``values``."""
    v = torch.tensor(values).view(1, 1, -1)
    m = torch.ones_like(v) if mask is None else torch.tensor(mask).view(1, 1, -1)
    return {"obs": v.unsqueeze(-1), "actions": v.unsqueeze(-1).repeat(1, 1, 1, 2),
            "rewards": v, "next_obs": v.unsqueeze(-1) + 0.5, "terminals": torch.zeros_like(v),
            "mask": m}


def stored(buffer: MultiTaskReplay, task: Task) -> list[float]:
    slot = buffer.slot(repr(task))
    n = int(buffer.size[slot])
    return buffer._data["rewards"][slot, :n].tolist()


def test_only_masked_in_steps_are_written_and_the_ring_overwrites_the_oldest() -> None:
    buffer = MultiTaskReplay(obs_dim=1, act_dim=2, capacity=4, max_tasks=2)
    buffer.add([Task(0)], **episodes([1.0, 2.0, 3.0], mask=[1.0, 1.0, 0.0]))
    assert stored(buffer, Task(0)) == [1.0, 2.0]
    buffer.add([Task(0)], **episodes([4.0, 5.0, 6.0]))
    assert stored(buffer, Task(0)) == [6.0, 2.0, 4.0, 5.0]  # ring: 1 overwritten by 6
    buffer.add([Task(0)], **episodes([7.0, 8.0, 9.0, 10.0, 11.0]))  # more than capacity
    assert sorted(stored(buffer, Task(0))) == [8.0, 9.0, 10.0, 11.0]


def test_sampling_draws_each_task_from_its_own_slot() -> None:
    buffer = MultiTaskReplay(obs_dim=1, act_dim=2, capacity=10, max_tasks=3)
    data = [episodes([1.0, 2.0, 3.0]), episodes([10.0, 20.0])]
    batch = {f: torch.cat([d[f][:, :, :2] for d in data]) for f in data[0]}
    batch["mask"][0, 0, :] = 1.0
    buffer.add([Task(0), Task(1)], **batch)
    out = buffer.sample([repr(Task(1)), repr(Task(0)), repr(Task(1))], 50,
                        torch.Generator().manual_seed(0))
    assert out.obs.shape == (3, 50, 1) and out.actions.shape == (3, 50, 2)
    assert set(out.rewards[0].tolist()) == {10.0, 20.0} == set(out.rewards[2].tolist())
    assert set(out.rewards[1].tolist()) == {1.0, 2.0}
    torch.testing.assert_close(out.next_obs[..., 0], out.rewards + 0.5)
    with pytest.raises(KeyError):
        buffer.sample([repr(Task(5))], 2, torch.Generator())


def test_eviction_keeps_the_most_recent_tasks() -> None:
    buffer = MultiTaskReplay(obs_dim=1, act_dim=2, capacity=5, max_tasks=2)
    for k in range(3):
        buffer.add([Task(k)], **episodes([float(k)]))
    assert Task(0) not in buffer and Task(1) in buffer and Task(2) in buffer
    assert stored(buffer, Task(2)) == [2.0]
    buffer.add([Task(1)], **episodes([7.0]))  # Task(1) becomes the most recent
    buffer.add([Task(3)], **episodes([3.0]))
    assert Task(2) not in buffer and stored(buffer, Task(1)) == [1.0, 7.0]
    with pytest.raises(ValueError, match="max_tasks"):
        many = {f: v.repeat(3, *[1] * (v.dim() - 1)) for f, v in episodes([1.0]).items()}
        buffer.add([Task(10), Task(11), Task(12)], **many)


def test_clear_empties_a_slot_and_keeps_it() -> None:
    buffer = MultiTaskReplay(obs_dim=1, act_dim=2, capacity=5, max_tasks=2)
    buffer.add([Task(0)], **episodes([1.0, 2.0]))
    slot = buffer.slot(repr(Task(0)))
    buffer.clear([Task(0)])
    assert Task(0) not in buffer and buffer.slot(repr(Task(0))) == slot
    buffer.add([Task(0)], **episodes([3.0]))
    assert stored(buffer, Task(0)) == [3.0]


def test_state_dict_round_trip_restores_contents_and_sampling() -> None:
    source = MultiTaskReplay(obs_dim=1, act_dim=2, capacity=3, max_tasks=2)
    for k, values in [(0, [1.0, 2.0, 3.0, 4.0]), (1, [5.0]), (2, [6.0, 7.0])]:
        source.add([Task(k)], **episodes(values))
    state = copy.deepcopy(source.state_dict())
    saved = torch.load(_save(state), weights_only=True)
    target = MultiTaskReplay(obs_dim=1, act_dim=2, capacity=3, max_tasks=2)
    target.load_state_dict(saved)
    keys = source.keys()
    assert keys == target.keys()
    a = source.sample(keys, 20, torch.Generator().manual_seed(3))
    b = target.sample(keys, 20, torch.Generator().manual_seed(3))
    assert torch.equal(a.obs, b.obs) and torch.equal(a.rewards, b.rewards)
    for buffer in (source, target):  # the same next write: ring position and eviction order
        buffer.add([Task(2)], **episodes([8.0]))
        buffer.add([Task(4)], **episodes([9.0]))
    assert source.keys() == target.keys()
    assert stored(source, Task(2)) == stored(target, Task(2)) == [6.0, 7.0, 8.0]


def _save(state: dict) -> object:
    import io

    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return buffer

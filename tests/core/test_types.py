"""The records passed between the sampler and the learners."""

from __future__ import annotations

import torch

from metarl_cli.core.types import EpisodeBatch


def test_first_rollouts_keeps_every_task_and_the_first_rollouts_of_each() -> None:
    n, r, t = 3, 4, 5
    obs = torch.arange(n * r * t * 2, dtype=torch.float32).reshape(n, r, t, 2)
    batch = EpisodeBatch(list("abc"), obs, obs[..., :1], obs[..., 0], torch.ones(n, r, t),
                         obs[..., 1], final_obs=obs[:, :, -1])
    part = batch.first_rollouts(2)
    assert part.tasks == batch.tasks
    assert torch.equal(part.obs, obs[:, :2]) and torch.equal(part.rewards, obs[:, :2, :, 0])
    assert part.final_obs is not None and torch.equal(part.final_obs, obs[:, :2, -1])
    assert part.num_steps == n * 2 * t
    assert torch.equal(part.next_obs(), batch.next_obs()[:, :2])

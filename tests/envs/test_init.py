"""The registered gymnasium ids: each makes its family's env with its horizon, takes a task
and steps."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from metarl_cli.envs import _REGISTRY

OBS_DIMS = {"metarl/HalfCheetahVel-v0": 17, "metarl/HalfCheetahDir-v0": 17,
            "metarl/AntVel-v0": 105, "metarl/AntDir-v0": 105, "metarl/AntGoal-v0": 107,
            "metarl/HumanoidDir-v0": 376,
            "metarl/Walker2dRandParams-v0": 17, "metarl/HopperRandParams-v0": 11}


@pytest.mark.parametrize("env_id", sorted(_REGISTRY))
def test_registered_ids_make_set_a_task_and_step(env_id: str) -> None:
    entry_point, horizon = _REGISTRY[env_id]
    env = gym.make(env_id)
    assert env.spec is not None and env.spec.max_episode_steps == horizon
    assert type(env.unwrapped).__name__ == entry_point.rpartition(":")[2]
    env.unwrapped.set_task(env.unwrapped.sample_tasks(1, np.random.default_rng(0))[0])
    obs, _ = env.reset(seed=0)
    obs, reward, _, _, _ = env.step(env.action_space.sample())
    assert np.shape(obs) == env.observation_space.shape
    if env_id in OBS_DIMS:
        assert np.shape(obs) == (OBS_DIMS[env_id],)
    assert np.isfinite(reward)
    env.close()

"""Random-dynamics families: rewards and terminations against their formulas, tasks that change
the model, batched equals single."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

import metarl_cli.envs  # noqa: F401  (registers the gymnasium ids)
from metarl_cli.envs.locomotion import VelocityTask, uniform_reset
from metarl_cli.envs.mujoco_batch import load_model
from metarl_cli.envs.rand_params import (
    PARAM_BASES,
    BatchedHopperRandParams,
    BatchedWalker2dRandParams,
    HopperRandParamsEnv,
    Walker2dRandParamsEnv,
    hopper_terminated,
    walker_terminated,
)

PAIRS = [(Walker2dRandParamsEnv, BatchedWalker2dRandParams),
         (HopperRandParamsEnv, BatchedHopperRandParams)]
IDS = [single.__name__ for single, _ in PAIRS]


@pytest.mark.parametrize(("single_cls", "frame_skip"),
                         [(Walker2dRandParamsEnv, 5), (HopperRandParamsEnv, 4)], ids=IDS)
def test_reward_is_forward_velocity_plus_bonus_minus_control(single_cls: type, frame_skip: int
                                                             ) -> None:
    env = single_cls()
    assert env.frame_skip == frame_skip and env.dt == pytest.approx(0.002 * frame_skip)
    env.set_task(env.sample_tasks(1, np.random.default_rng(5))[0])
    env.reset(seed=0)
    action = np.random.default_rng(1).uniform(-1.5, 1.5, size=env.action_space.shape)
    clipped = np.clip(action, -1.0, 1.0)
    for _ in range(5):
        before = float(env.data.qpos[0])
        obs, reward, terminated, truncated, _ = env.step(action)
        expected = (float(env.data.qpos[0]) - before) / env.dt + 1.0 - 1e-3 * clipped @ clipped
        assert reward == pytest.approx(expected, abs=1e-12) and not truncated
        np.testing.assert_array_equal(
            obs, np.concatenate([env.data.qpos[1:], np.clip(env.data.qvel, -10, 10)]))


def test_terminations_follow_each_robot_s_health() -> None:
    def walker(z: float, angle: float) -> bool:
        return bool(walker_terminated(np.array([0.0, z, angle, *[0.0] * 6]), np.zeros(9)))

    assert not walker(1.25, 0.0) and not walker(1.9, -0.9)
    assert walker(0.8, 0.0) and walker(2.0, 0.0) and walker(1.25, 1.0) and walker(np.nan, 0.0)

    def hopper(z: float, angle: float, x: float = 0.0, v: float = 0.0) -> bool:
        return bool(hopper_terminated(np.array([x, z, angle, 0.0, 0.0, 0.0]),
                                      np.array([0.0, 0.0, 0.0, v, 0.0, 0.0])))

    assert not hopper(1.25, 0.1) and not hopper(5.0, -0.19) and not hopper(1.25, 0.0, x=500.0)
    assert hopper(0.7, 0.0) and hopper(1.25, 0.2) and hopper(1.25, 0.0, v=100.0)
    assert hopper(1.25, 0.0, v=np.inf)
    batch = walker_terminated(np.array([[0.0, 1.25, 0.0, *[0.0] * 6]] * 2), np.zeros((2, 9)))
    assert batch.shape == (2,) and not batch.any()


@pytest.mark.parametrize("single_cls", [single for single, _ in PAIRS], ids=IDS)
def test_a_task_scales_the_models_parameters(single_cls: type) -> None:
    env = single_cls()
    model = load_model(env.fullpath)  # the file's values; env's model holds its first task's
    defaults = {name: getattr(model, name).copy() for name in PARAM_BASES}
    tasks = env.sample_tasks(200, np.random.default_rng(0))
    for task in tasks[:2]:
        env.set_task(task)
        for name, default in defaults.items():
            scales = np.asarray(getattr(task, name)).reshape(default.shape)
            np.testing.assert_array_equal(getattr(env.model, name), default * scales)
    for name, base in PARAM_BASES.items():
        logs = np.log(np.array([getattr(t, name) for t in tasks])) / np.log(base)
        assert logs.shape == (200, defaults[name].size)
        assert logs.min() >= -3.0 and logs.max() <= 3.0
        assert logs.min() < -2.9 and logs.max() > 2.9  # U(-3, 3), entry by entry
        assert abs(logs.mean()) < 0.1 and logs.std() == pytest.approx(np.sqrt(3.0), rel=0.05)


@pytest.mark.parametrize("single_cls", [single for single, _ in PAIRS], ids=IDS)
def test_tasks_change_the_dynamics_and_come_only_from_the_passed_rng(single_cls: type) -> None:
    env = single_cls()
    global_state = np.random.get_state()[1].copy()
    tasks = env.sample_tasks(2, np.random.default_rng(3))
    assert tasks == env.sample_tasks(2, np.random.default_rng(3)) and tasks[0] != tasks[1]
    np.testing.assert_array_equal(np.random.get_state()[1], global_state)
    actions = np.random.default_rng(2).uniform(-1, 1, size=(20, *env.action_space.shape))
    finals = []
    for task in tasks:
        env.set_task(task)
        env.reset(seed=0)
        for action in actions:
            env.step(action)
        finals.append(env.data.qpos.copy())
    assert np.abs(finals[0] - finals[1]).max() > 1e-3


@pytest.mark.parametrize(("single_cls", "batched_cls"), PAIRS, ids=IDS)
def test_batched_equals_single(single_cls: type, batched_cls: type,
                               batched_vs_single: SimpleNamespace) -> None:
    batched = batched_cls(num_threads=2)  # two threads against the single envs: no thread effect
    first = batched.sample_tasks(5, np.random.default_rng(1))
    batched_vs_single.run(batched, first, seed=0, steps=3)
    tasks = batched.sample_tasks(3, np.random.default_rng(11))  # after a resize: new copies
    obs0, outputs = batched_vs_single.run(batched, tasks, seed=4, steps=40)

    model = single_cls()
    qpos, qvel = uniform_reset(model.init_qpos, model.init_qvel, model.reset_noise_scale,
                               np.random.default_rng(4), (3,))
    singles = batched_vs_single.start(single_cls, tasks, qpos, qvel, obs0)
    # random actions topple them: the terminations were compared too
    assert batched_vs_single.replay(outputs, singles).any()
    batched.close()


def test_tasks_of_another_family_or_robot_are_refused() -> None:
    walker = BatchedWalker2dRandParams(num_threads=1)
    hopper = BatchedHopperRandParams(num_threads=1)
    with pytest.raises(TypeError, match="ParamsTask"):
        walker.set_tasks([VelocityTask(1.0)])
    with pytest.raises(ValueError, match="another model"):
        hopper.set_tasks(walker.sample_tasks(1, np.random.default_rng(0)))
    walker.close()
    hopper.close()


@pytest.mark.parametrize(("cls", "kwargs", "name"), [
    (Walker2dRandParamsEnv, {"log_scale_limit": 0.0}, "log_scale_limit"),
    (HopperRandParamsEnv, {"log_scale_limit": float("inf")}, "log_scale_limit"),
    (HopperRandParamsEnv, {"ctrl_cost_weight": -1.0}, "ctrl_cost_weight"),
    (Walker2dRandParamsEnv, {"alive_bonus": float("nan")}, "alive_bonus"),
    (BatchedWalker2dRandParams, {"frame_skip": 0}, "frame_skip"),
    (BatchedHopperRandParams, {"num_threads": 0}, "num_threads"),
])
def test_bad_constructor_values_name_the_parameter(cls: type, kwargs: dict[str, Any], name: str
                                                   ) -> None:
    with pytest.raises(ValueError, match=name):
        cls(**kwargs)

import numpy as np

from metarl_cli.envs.point_nav import BatchedPointNav, GoalTask, PointNavEnv


def test_actions_in_unit_box_move_by_at_most_max_step() -> None:
    env = PointNavEnv(max_step=0.1)
    env.set_task(GoalTask(goal=(0.3, -0.4)))
    env.reset(seed=0)
    obs, reward, terminated, truncated, _ = env.step(np.array([0.5, -7.0]))
    np.testing.assert_allclose(obs, [0.05, -0.1])
    assert np.isclose(reward, -np.hypot(0.25, 0.3), rtol=0, atol=1e-12)
    assert not terminated and not truncated
    assert env.action_space.low.tolist() == [-1.0, -1.0]


def test_episode_ends_within_tolerance_of_goal() -> None:
    env = BatchedPointNav(max_step=0.1, tolerance=0.01)
    env.set_tasks([GoalTask(goal=(0.1, 0.1)), GoalTask(goal=(0.2, 0.0))])
    env.reset(np.random.default_rng(0))
    _, reward, terminated = env.step(np.array([[1.0, 1.0], [1.0, 0.0]]))
    assert terminated.tolist() == [True, False]
    np.testing.assert_allclose(reward, [0.0, -0.1], atol=1e-12)

"""Train and held-out test task sets: fixed by ``task_seed`` alone, resumable, and refusing more
test tasks than a fixed list holds."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from metarl_cli.core.tasks import TaskSets, legacy_generator
from metarl_cli.envs.locomotion import BatchedHalfCheetahDir, BatchedHalfCheetahVel
from metarl_cli.envs.point_nav import BatchedPointNav


def _goals(tasks: list) -> np.ndarray:
    return np.array([task.goal for task in tasks])


def test_test_tasks_depend_on_task_seed_only() -> None:
    np.random.seed(0)
    torch.manual_seed(0)
    first = TaskSets(BatchedPointNav(), task_seed=7, num_train_tasks=None, num_test_tasks=None)
    a = _goals(first.test_tasks(10))
    first.train_batch(20)  # drawing training tasks leaves the test set alone
    np.random.seed(1)
    torch.manual_seed(1)
    again = TaskSets(BatchedPointNav(), task_seed=7, num_train_tasks=None, num_test_tasks=None)
    other = TaskSets(BatchedPointNav(), task_seed=8, num_train_tasks=None, num_test_tasks=None)
    np.testing.assert_array_equal(_goals(first.test_tasks(10)), a)
    np.testing.assert_array_equal(_goals(again.test_tasks(10)), a)
    assert not np.allclose(_goals(other.test_tasks(10)), a)


def test_fewer_test_tasks_are_the_first_of_more() -> None:
    sets = TaskSets(BatchedPointNav(), task_seed=3, num_train_tasks=None, num_test_tasks=None)
    np.testing.assert_array_equal(_goals(sets.test_tasks(4)), _goals(sets.test_tasks(40))[:4])
    cheetahs = TaskSets(BatchedHalfCheetahDir(), task_seed=3, num_train_tasks=None,
                        num_test_tasks=None)
    directions = [task.direction for task in cheetahs.test_tasks(40)]
    assert [task.direction for task in cheetahs.test_tasks(5)] == directions[:5]


def test_distribution_meta_batches_are_fresh_and_not_the_test_tasks() -> None:
    sets = TaskSets(BatchedPointNav(), task_seed=0, num_train_tasks=None, num_test_tasks=None)
    first, second = _goals(sets.train_batch(20)), _goals(sets.train_batch(20))
    test = _goals(sets.test_tasks(40))
    assert not np.allclose(first, second)
    for batch in (first, second):
        distances = np.linalg.norm(batch[:, None] - test[None], axis=-1)
        assert distances.min() > 0.0


def test_fixed_lists_serve_meta_batches_from_the_train_list_only() -> None:
    sets = TaskSets(BatchedPointNav(), task_seed=5, num_train_tasks=6, num_test_tasks=3)
    drawn = {tuple(g) for _ in range(20) for g in _goals(sets.train_batch(4))}
    assert len(drawn) == 6  # 80 draws from the 6 train tasks reach all of them, and no other
    assert not drawn & {tuple(g) for g in _goals(sets.test_tasks(3))}
    assert len(sets.train_batch(10)) == 10  # more than the list holds: drawn with replacement


def test_more_test_tasks_than_the_fixed_list_names_the_key() -> None:
    sets = TaskSets(BatchedPointNav(), task_seed=5, num_train_tasks=6, num_test_tasks=3)
    with pytest.raises(ValueError, match=r"^eval\.num_tasks=4 is more than the 3 fixed"):
        sets.test_tasks(4)


def test_state_dict_continues_the_meta_batch_sequence() -> None:
    sets = TaskSets(BatchedPointNav(), task_seed=2, num_train_tasks=None, num_test_tasks=None)
    sets.train_batch(5)
    state = sets.state_dict()
    expected = _goals(sets.train_batch(5))
    restored = TaskSets(BatchedPointNav(), task_seed=2, num_train_tasks=None, num_test_tasks=None)
    restored.load_state_dict(state)
    np.testing.assert_array_equal(_goals(restored.train_batch(5)), expected)


def test_a_legacy_seed_gives_the_goals_numpys_global_stream_draws() -> None:
    # The MAML code's test scripts: np.random.seed(1), then one np.random.uniform call for the
    # 40 goals (2D navigation: U[-0.5, 0.5]^2; HalfCheetahVel: U[0, 2]).
    np.random.seed(1)
    goals = np.random.uniform(-0.5, 0.5, size=(40, 2))
    np.random.seed(1)
    velocities = np.random.uniform(0.0, 2.0, size=(40,))
    np.random.seed(123)  # the sets read no global state
    nav = TaskSets(BatchedPointNav(), task_seed=7, num_train_tasks=None, num_test_tasks=None,
                   legacy_test_seed=1)
    np.testing.assert_array_equal(_goals(nav.test_tasks(40)), goals)
    np.testing.assert_array_equal(_goals(nav.test_tasks(5)), goals[:5])
    cheetahs = TaskSets(BatchedHalfCheetahVel(), task_seed=7, num_train_tasks=None,
                        num_test_tasks=None, legacy_test_seed=1)
    np.testing.assert_array_equal([t.velocity for t in cheetahs.test_tasks(40)], velocities)
    # Only the held-out tasks change: the training stream is task_seed's.
    plain = TaskSets(BatchedPointNav(), task_seed=7, num_train_tasks=None, num_test_tasks=None)
    np.testing.assert_array_equal(_goals(nav.train_batch(20)), _goals(plain.train_batch(20)))
    assert not np.allclose(_goals(plain.test_tasks(40)), goals)


def test_legacy_generator_starts_afresh_each_call() -> None:
    first = legacy_generator(5).uniform(size=3)
    np.testing.assert_array_equal(legacy_generator(5).uniform(size=3), first)
    assert not np.allclose(legacy_generator(6).uniform(size=3), first)

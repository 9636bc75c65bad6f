"""Train and held-out test task sets, drawn from ``task_seed`` only (never the training seed).

Without fixed lists (the MAML protocol), every meta-iteration draws fresh training tasks from
the distribution and meta-test uses its own held-out draw. With fixed lists (the PEARL
protocol), ``num_train_tasks`` and ``num_test_tasks`` tasks are drawn once and meta-batches
are drawn from the training list. ``legacy_test_seed`` draws the held-out tasks from numpy's
legacy global stream after ``np.random.seed(legacy_test_seed)`` instead, as the MAML code's
test scripts drew their 40 goals (seed 1): a family that draws its tasks with one
``rng.uniform`` call (2D navigation, the velocity families) then gets those very tasks.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from metarl_cli.core.checks import check_at_least
from metarl_cli.envs.base import BatchedEnv


class TaskSets:
    def __init__(self, family: BatchedEnv, task_seed: int, num_train_tasks: int | None,
                 num_test_tasks: int | None, legacy_test_seed: int | None = None) -> None:
        check_at_least(1, or_none=True, num_train_tasks=num_train_tasks,
                       num_test_tasks=num_test_tasks)
        self.family = family
        self.task_seed = task_seed
        self.legacy_test_seed = legacy_test_seed
        self.num_test_tasks = num_test_tasks
        self._train_rng = np.random.default_rng([task_seed, 0])
        self._train_list = None if num_train_tasks is None else family.sample_tasks(
            num_train_tasks, np.random.default_rng([task_seed, 2]))

    @property
    def train_tasks(self) -> list[Any] | None:
        """The fixed training tasks (None: the preset draws fresh tasks every meta-batch)."""
        return None if self._train_list is None else list(self._train_list)

    def train_batch(self, n: int) -> list[Any]:
        """The next meta-batch of ``n`` training tasks."""
        if self._train_list is None:
            return self.family.sample_tasks(n, self._train_rng)
        replace = n > len(self._train_list)
        idx = self._train_rng.choice(len(self._train_list), size=n, replace=replace)
        return [self._train_list[i] for i in idx]

    def test_tasks(self, n: int) -> list[Any]:
        """The first ``n`` held-out test tasks (the same for every call and every run)."""
        if self.num_test_tasks is not None and n > self.num_test_tasks:
            raise ValueError(f"eval.num_tasks={n} is more than the {self.num_test_tasks} fixed "
                             "test tasks of this env preset; use "
                             f"eval.num_tasks<={self.num_test_tasks}")
        size = n if self.num_test_tasks is None else self.num_test_tasks
        if self.legacy_test_seed is None:
            rng = np.random.default_rng([self.task_seed, 1])
        else:
            rng = legacy_generator(self.legacy_test_seed)
        return self.family.sample_tasks(size, rng)[:n]

    def state_dict(self) -> dict[str, Any]:
        return {"train_rng": self._train_rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._train_rng.bit_generator.state = state["train_rng"]


def legacy_generator(seed: int) -> np.random.Generator:
    """A Generator on the stream of ``np.random.seed(seed)``: its ``uniform`` draws equal
    ``np.random.uniform``'s after that call (its other methods use other algorithms)."""
    bits = np.random.MT19937()
    bits.state = np.random.RandomState(seed).get_state(legacy=False)
    return np.random.Generator(bits)

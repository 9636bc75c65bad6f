"""Meta-test: the adaptation curve of any learner on held-out tasks.

"Return after k adaptation steps" follows the MAML paper: collect episodes with the current
(adapted) policy, record their mean return, then adapt on them for step k+1. Step 0 is the
meta-policy before any adaptation. Context-based learners adapt per episode, so for them k is
the episode index; the protocol is the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from metarl_cli.core.sampler import Sampler, TaskPolicy
from metarl_cli.core.step_budget import sample_with_step_budget
from metarl_cli.core.types import EpisodeBatch


class MetaLearner(Protocol):
    """A learner may set ``adapts_per_episode = True`` (the context-based ones): its
    ``adapt`` takes one episode per task at a time, so a step budget does not apply to it."""

    def train_step(self, tasks: list[Any]) -> dict[str, float]: ...

    def exploration_policy(self, num_tasks: int) -> TaskPolicy: ...

    def adapt(self, policy: Any, episodes: EpisodeBatch) -> TaskPolicy: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


@dataclass(frozen=True)
class AdaptationCurve:
    """Mean episode return per task after k = 0..K adaptation steps: ``returns[k, task]``."""

    returns: np.ndarray
    env_steps: int

    @property
    def mean(self) -> np.ndarray:
        return self.returns.mean(axis=1)

    @property
    def std(self) -> np.ndarray:
        """Spread over tasks, as the MAML paper reports it."""
        return self.returns.std(axis=1)


def meta_test(learner: MetaLearner, sampler: Sampler, tasks: list[Any], steps: int,
              rollouts: int, step_budget: int | None = None) -> AdaptationCurve:
    """Adapt ``steps`` times on each task, recording the return before every step and after.

    Each step takes ``rollouts`` episodes per task, or with a ``step_budget`` the episodes that
    ``rollouts`` environments per task finish within that many steps, as the MAML code sampled
    them (core/step_budget.py).
    """
    policy = learner.exploration_policy(len(tasks))
    returns, env_steps = [], 0
    for k in range(steps + 1):
        if step_budget is None:
            batch = sampler.sample(policy, tasks, rollouts)
        else:
            batch = sample_with_step_budget(sampler, policy, tasks, rollouts, step_budget)
        returns.append(batch.mean_returns().cpu().numpy())
        env_steps += batch.num_steps
        if k < steps:
            policy = learner.adapt(policy, batch)
    return AdaptationCurve(np.stack(returns).astype(np.float64), env_steps)

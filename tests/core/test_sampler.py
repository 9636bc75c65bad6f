"""The sampler: shapes, masks, seeding, rewards and log-probs on batched point navigation; the
generic path for any gymnasium task env; thread counts that must not change the episodes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from metarl_cli.core.functional import broadcast_policy
from metarl_cli.core.sampler import Sampler
from metarl_cli.core.types import EpisodeBatch
from metarl_cli.envs.base import BatchedEnv, gymnasium_family
from metarl_cli.envs.locomotion import BatchedHalfCheetahVel
from metarl_cli.envs.point_nav import BatchedPointNav, GoalTask
from metarl_cli.policies.mlp import mlp_policy

N, R, T = 3, 4, 6
MAX_STEP = 0.1


def _policy(seed: int = 0) -> nn.Module:
    env = BatchedPointNav()
    torch.manual_seed(seed)
    return mlp_policy(env.observation_space, env.action_space, [8], init_std=0.2)


def _tasks(n: int = N) -> list[GoalTask]:
    return BatchedPointNav().sample_tasks(n, np.random.default_rng(123))


def _sample(seed: int, env: BatchedEnv | None = None, tasks: list[GoalTask] | None = None,
            horizon: int = T) -> EpisodeBatch:
    tasks = _tasks() if tasks is None else tasks
    sampler = Sampler(env or BatchedPointNav(), horizon=horizon, seed=seed)
    return sampler.sample(broadcast_policy(_policy(), len(tasks)), tasks, R)


def test_batch_has_tasks_rollouts_time_shapes() -> None:
    batch = _sample(seed=0)
    assert batch.obs.shape == (N, R, T, 2)
    assert batch.actions.shape == (N, R, T, 2)
    assert batch.rewards.shape == batch.mask.shape == batch.log_probs.shape == (N, R, T)
    assert batch.tasks == _tasks()
    assert torch.all(batch.mask == 1)  # goals are far from the origin with tolerance 0.01
    assert batch.num_steps == N * R * T
    assert torch.all(batch.obs[:, :, 0] == 0)  # every episode starts at the origin


def test_episodes_that_terminate_on_the_first_step_are_masked_afterwards() -> None:
    # goals lie within 0.5 of the origin and a step moves at most 0.1: with tolerance 1.0
    # the first step always terminates
    batch = _sample(seed=0, env=BatchedPointNav(tolerance=1.0))
    assert batch.obs.shape == (N, R, T, 2)
    assert batch.actions.shape == (N, R, T, 2)
    assert batch.log_probs.shape == (N, R, T)
    assert torch.all(batch.mask[..., 0] == 1)
    assert torch.all(batch.mask[..., 1:] == 0)
    assert torch.all(batch.rewards[..., 1:] == 0)
    assert torch.all(batch.rewards[..., 0] < 0)
    assert batch.num_steps == N * R
    torch.testing.assert_close(batch.episode_returns(), batch.rewards[..., 0])


def test_mask_stops_only_for_the_episodes_that_terminated() -> None:
    # task 0's goal is the origin (reached on the first step within tolerance 0.15); task 1's
    # goal is at least 8 steps of 0.1 away from being within 0.15, more than the horizon
    tasks = [GoalTask(goal=(0.0, 0.0)), GoalTask(goal=(0.9, -0.9))]
    batch = _sample(seed=1, env=BatchedPointNav(tolerance=0.15), tasks=tasks)
    assert torch.all(batch.mask[0, :, 0] == 1)
    assert torch.all(batch.mask[0, :, 1:] == 0)
    assert torch.all(batch.rewards[0, :, 1:] == 0)
    assert torch.all(batch.mask[1] == 1)
    assert torch.all(batch.rewards[1] < 0)
    assert batch.num_steps == R + R * T


def test_same_seed_gives_identical_batches_and_different_seeds_differ() -> None:
    a, b, c = _sample(seed=5), _sample(seed=5), _sample(seed=6)
    for name in ["obs", "actions", "rewards", "mask", "log_probs"]:
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert not torch.equal(a.actions, c.actions)
    assert not torch.equal(a.rewards, c.rewards)


def test_sampler_state_dict_resumes_the_random_streams() -> None:
    tasks = _tasks()
    policy = broadcast_policy(_policy(), N)
    sampler = Sampler(BatchedPointNav(), horizon=T, seed=3)
    state = sampler.state_dict()
    first = sampler.sample(policy, tasks, R)
    sampler.load_state_dict(state)
    again = sampler.sample(policy, tasks, R)
    assert torch.equal(first.actions, again.actions)


def test_rewards_are_minus_distance_to_goal_after_the_scaled_clipped_move() -> None:
    tasks = _tasks()
    batch = _sample(seed=2)
    obs = batch.obs.double()
    moves = MAX_STEP * batch.actions.double().clamp(-1.0, 1.0)
    goals = torch.tensor([t.goal for t in tasks], dtype=torch.float64).view(N, 1, 2)
    for t in range(T - 1):
        new_pos = obs[:, :, t] + moves[:, :, t]
        torch.testing.assert_close(obs[:, :, t + 1], new_pos, atol=1e-6, rtol=0)
        expected = -torch.linalg.norm(new_pos - goals, dim=-1)
        torch.testing.assert_close(batch.rewards[:, :, t].double(), expected, atol=1e-5, rtol=0)


def test_log_probs_are_the_policy_log_prob_of_the_stored_actions() -> None:
    policy = _policy()
    batch = _sample(seed=4)
    with torch.no_grad():
        log_probs = policy.distribution(policy(batch.obs)).log_prob(batch.actions)
    valid = batch.mask == 1
    torch.testing.assert_close(batch.log_probs[valid], log_probs[valid], atol=1e-5, rtol=1e-5)


def test_horizon_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="horizon"):
        Sampler(BatchedPointNav(), horizon=0, seed=0)


# ---------------------------------------------------------------- generic path and threads


def _fields(batch: EpisodeBatch) -> list[torch.Tensor]:
    return [batch.obs, batch.actions, batch.rewards, batch.mask, batch.log_probs]


def test_any_gymnasium_task_env_samples_through_the_generic_path() -> None:
    # point_nav episodes start at the origin, so the generic path (single environments made
    # from the gymnasium id, stepped one by one) must give the batched family's episodes
    tolerance = 0.15  # some episodes terminate, so masks are exercised too
    tasks = [GoalTask(goal=(0.0, 0.1)), *_tasks()]
    generic = _sample(seed=7, env=gymnasium_family("metarl/PointNav-v0", tolerance=tolerance),
                      tasks=tasks)
    batched = _sample(seed=7, env=BatchedPointNav(tolerance=tolerance), tasks=tasks)
    assert 0 < batched.mask.mean() < 1
    assert torch.equal(generic.mask, batched.mask)
    # the batched family moves by float32 actions in float32 (NumPy 2 keeps the actions' dtype),
    # the single environment in float64: they agree to float32 rounding
    for ours, theirs in zip(_fields(generic), _fields(batched), strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)


def test_generic_path_refuses_an_env_without_the_task_api() -> None:
    with pytest.raises(ValueError, match="env_id: 'Pendulum-v1' has no task API"):
        gymnasium_family("Pendulum-v1")
    with pytest.raises(ValueError, match="env_id: cannot make"):
        gymnasium_family("metarl/NoSuchEnv-v0")


def _cheetah_batch(num_threads: int, torch_threads: int) -> EpisodeBatch:
    family = BatchedHalfCheetahVel(num_threads=num_threads)
    tasks = family.sample_tasks(2, np.random.default_rng(0))
    torch.manual_seed(0)
    policy = mlp_policy(family.observation_space, family.action_space, [16])
    before = torch.get_num_threads()
    torch.set_num_threads(torch_threads)
    try:
        batch = Sampler(family, horizon=8, seed=3).sample(broadcast_policy(policy, 2), tasks, 3)
        assert torch.get_num_threads() == torch_threads  # the sampler restores the setting
    finally:
        torch.set_num_threads(before)
        family.close()
    return batch


def test_physics_and_torch_thread_counts_do_not_change_the_episodes() -> None:
    reference = _cheetah_batch(num_threads=1, torch_threads=1)
    assert reference.rewards.abs().min() > 0
    for num_threads, torch_threads in [(2, 1), (4, 1), (3, 2)]:
        other = _cheetah_batch(num_threads, torch_threads)
        for ours, theirs in zip(_fields(other), _fields(reference), strict=True):
            assert torch.equal(ours, theirs), (num_threads, torch_threads)


def test_next_obs_is_the_position_after_each_move() -> None:
    batch = _sample(seed=2)
    next_obs = batch.next_obs()
    torch.testing.assert_close(next_obs[:, :, :-1], batch.obs[:, :, 1:])
    moves = (batch.actions.clamp(-1, 1) * MAX_STEP)
    torch.testing.assert_close(next_obs, batch.obs + moves)


def test_next_obs_of_a_terminal_step_is_its_outcome_even_when_all_stop_early() -> None:
    batch = _sample(seed=0, env=BatchedPointNav(tolerance=1.0))  # every episode ends at t=0
    moves = batch.actions[:, :, 0].clamp(-1, 1) * MAX_STEP
    torch.testing.assert_close(batch.next_obs()[:, :, 0], moves)


class _DivergesAfterTheEnd(BatchedPointNav):
    """Point navigation whose environments return NaN once their episode has ended."""

    def reset(self, rng: np.random.Generator) -> np.ndarray:
        self.ended = None
        return super().reset(rng)

    def step(self, actions: np.ndarray, active: np.ndarray | None = None
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        obs, reward, terminated = super().step(actions, active)
        if self.ended is not None:
            obs[self.ended], reward[self.ended] = np.nan, np.nan
        self.ended = terminated if self.ended is None else self.ended | terminated
        return obs, reward, terminated


def test_the_padding_holds_zeros_whatever_an_ended_environment_returns() -> None:
    from metarl_cli.core.returns import policy_gradient_advantages

    # task 0's episodes end at t=0 (its goal is the origin); task 1's run to the horizon
    tasks = [GoalTask(goal=(0.0, 0.0)), GoalTask(goal=(0.9, -0.9))]
    batch = _sample(seed=1, env=_DivergesAfterTheEnd(tolerance=0.15), tasks=tasks)
    assert torch.all(batch.mask[0, :, 1:] == 0) and torch.all(batch.mask[1] == 1)
    for x in (batch.obs, batch.rewards, batch.final_obs, batch.log_probs):
        assert torch.isfinite(x).all()
    assert torch.all(batch.obs[0, :, 2:] == 0) and torch.all(batch.rewards[0, :, 1:] == 0)
    assert torch.isfinite(policy_gradient_advantages(batch, 0.99, 1.0)).all()


class _Recorder:
    """Broadcast policy that records what the sampler tells it after each step."""

    def __init__(self, num_tasks: int) -> None:
        self.inner = broadcast_policy(_policy(), num_tasks)
        self.calls: list[tuple[torch.Tensor, torch.Tensor]] = []

    def act(self, obs: torch.Tensor, generator: torch.Generator
            ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.inner.act(obs, generator)

    def observe(self, rewards: torch.Tensor, ended: torch.Tensor) -> None:
        self.calls.append((rewards.clone(), ended.clone()))


def test_observe_gets_the_rewards_and_every_episode_ends_exactly_once() -> None:
    tasks = [GoalTask(goal=(0.0, 0.0)), GoalTask(goal=(0.9, -0.9))]
    policy = _Recorder(len(tasks))
    sampler = Sampler(BatchedPointNav(tolerance=0.15), horizon=T, seed=1)
    batch = sampler.sample(policy, tasks, R)
    assert len(policy.calls) == T
    rewards = torch.stack([r for r, _ in policy.calls], dim=-1)
    ended = torch.stack([e for _, e in policy.calls], dim=-1)
    torch.testing.assert_close(rewards, batch.rewards)
    assert torch.all(ended.sum(-1) == 1)
    assert torch.all(ended[0, :, 0]) and torch.all(ended[1, :, -1])


def test_the_sampler_stops_stepping_an_environment_once_its_episode_ended() -> None:
    steps: list[np.ndarray] = []

    class Counting(BatchedPointNav):
        def step(self, actions: np.ndarray, active: np.ndarray | None = None
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            steps.append(active.copy())
            return super().step(actions, active)

    # task 0 ends on the first step (tolerance 0.15 around the origin), task 1 never
    tasks = [GoalTask(goal=(0.0, 0.0)), GoalTask(goal=(0.9, -0.9))]
    _sample(seed=1, env=Counting(tolerance=0.15), tasks=tasks)
    assert len(steps) == T
    assert steps[0].all()
    assert all(not s[:R].any() and s[R:].all() for s in steps[1:])

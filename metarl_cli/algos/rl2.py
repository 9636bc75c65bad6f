"""RL² (Duan et al., 2016, "RL²: Fast Reinforcement Learning via Slow Reinforcement Learning").

A recurrent policy whose hidden state is carried across the episodes of a trial on one task, so
that the "fast" learning happens in its activations; the "slow" outer learner is ordinary RL on
whole trials. Here the outer learner is PPO (Schulman et al., 2017) with the policy's value
head, where the paper used TRPO; the trial is RL²'s episode: GAE runs over the whole trial, so
discounting continues across episode boundaries and the value of the next episode's start
follows an episode's last step (a termination ends the episode, not the trial).

Meta-test: ``exploration_policy`` starts a new trial (zero state) and ``adapt`` hands back the
same acting object, whose state was carried while sampling, so meta-test step k is episode k of
the trial.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from metarl_cli.core.checks import (
    check_integer,
    check_non_negative,
    check_positive,
    check_unit_interval,
    require_optimizer,
)
from metarl_cli.core.returns import gae, normalize
from metarl_cli.core.sampler import Sampler
from metarl_cli.core.types import EpisodeBatch, OptimizerFactory
from metarl_cli.policies.recurrent import (
    RecurrentActor,
    RecurrentPolicy,
    Trials,
    trials_from_episodes,
)


class RL2:
    adapts_per_episode = True  # meta-test step k is episode k (core/evaluation.py)

    def __init__(self, policy: nn.Module, sampler: Sampler,
                 optimizer: OptimizerFactory | None = None, rollouts_per_task: int = 2,
                 episodes_per_trial: int = 2, ppo_epochs: int = 5,
                 clip_eps: float = 0.2, num_minibatches: int = 4, value_coef: float = 0.5,
                 entropy_coef: float = 0.0, max_grad_norm: float | None = 0.5,
                 gamma: float = 0.99, gae_lambda: float = 0.95,
                 bptt_length: int | None = None) -> None:
        if not isinstance(policy, RecurrentPolicy):
            raise ValueError(f"policy: RL² needs the recurrent policy, got "
                             f"{type(policy).__name__}; choose model=gru")
        optimizer = require_optimizer(optimizer, "RL²")
        check_integer(1, rollouts_per_task=rollouts_per_task,
                      episodes_per_trial=episodes_per_trial, ppo_epochs=ppo_epochs,
                      num_minibatches=num_minibatches)
        check_unit_interval(clip_eps=clip_eps, gamma=gamma, gae_lambda=gae_lambda)
        check_non_negative(value_coef=value_coef, entropy_coef=entropy_coef)
        check_positive(or_none=True, max_grad_norm=max_grad_norm)
        check_integer(1, or_none=True, bptt_length=bptt_length)  # null: the whole trial
        self.policy = policy
        self.sampler = sampler
        self.rollouts_per_task = rollouts_per_task
        self.episodes_per_trial = episodes_per_trial
        self.ppo_epochs, self.clip_eps, self.num_minibatches = ppo_epochs, clip_eps, num_minibatches
        self.value_coef, self.entropy_coef = value_coef, entropy_coef
        self.max_grad_norm = max_grad_norm
        self.gamma, self.gae_lambda = gamma, gae_lambda
        self.bptt_length = bptt_length
        self.optimizer = optimizer(policy.parameters())
        # minibatch shuffling; seeded from torch's generator (set from the run's seed)
        self.generator = torch.Generator().manual_seed(int(torch.randint(0, 2**62, ()).item()))

    def train_step(self, tasks: list[Any]) -> dict[str, float]:
        # --- trials: consecutive episodes with one acting object, the state carried ---
        actor = self.exploration_policy(len(tasks))
        batches = [self.sampler.sample(actor, tasks, self.rollouts_per_task)
                   for _ in range(self.episodes_per_trial)]
        trials = trials_from_episodes(batches)

        # --- advantages: GAE over the whole trial with the value head ---
        with torch.no_grad():
            values = self.policy.evaluate(trials, self.bptt_length).values
        advantages = gae(trials.rewards, values, trials.mask, self.gamma, self.gae_lambda)
        returns = (advantages + values) * trials.mask
        advantages = normalize(advantages, trials.mask)  # (B, L): over the whole batch

        # --- PPO epochs over minibatches of whole trials ---
        sums = {"loss/policy": 0.0, "loss/value": 0.0, "loss/entropy": 0.0,
                "optim/clip_fraction": 0.0, "optim/grad_norm": 0.0}
        updates = 0
        for _ in range(self.ppo_epochs):
            order = torch.randperm(trials.mask.shape[0], generator=self.generator)
            for rows in torch.tensor_split(order, self.num_minibatches):
                if len(rows) == 0:
                    continue
                stats = self._update(trials.rows(rows), advantages[rows], returns[rows])
                for key, value in stats.items():
                    sums[key] += value
                updates += 1
        metrics = {key: value / updates for key, value in sums.items()}
        with torch.no_grad():
            after = self.policy.evaluate(trials, self.bptt_length).log_probs
        metrics["optim/kl"] = _masked_mean(trials.log_probs - after, trials.mask).item()
        return metrics | trial_metrics(batches)

    def exploration_policy(self, num_tasks: int) -> RecurrentActor:
        """A new trial: zero hidden state for every (task, rollout)."""
        return RecurrentActor(self.policy, num_tasks)

    def adapt(self, policy: RecurrentActor, episodes: EpisodeBatch) -> RecurrentActor:
        """RL² adapts in its hidden state, which was carried while ``episodes`` were sampled."""
        if not isinstance(policy, RecurrentActor):
            raise TypeError(f"RL2.adapt expects the RecurrentActor of a trial, got "
                            f"{type(policy).__name__}")
        return policy

    def state_dict(self) -> dict[str, Any]:
        return {"policy": self.policy.state_dict(), "optimizer": self.optimizer.state_dict(),
                "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.policy.load_state_dict(state["policy"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])

    # --- helpers ---
    def _update(self, trials: Trials, advantages: torch.Tensor, returns: torch.Tensor
                ) -> dict[str, float]:
        """One optimizer step on the clipped surrogate, the value loss and the entropy bonus."""
        out = self.policy.evaluate(trials, self.bptt_length)
        mask = trials.mask
        ratio = torch.exp(out.log_probs - trials.log_probs)
        clipped = ratio.clamp(1.0 - self.clip_eps, 1.0 + self.clip_eps)
        policy_loss = -_masked_mean(torch.minimum(ratio * advantages, clipped * advantages),
                                    mask)
        value_loss = _masked_mean((out.values - returns) ** 2, mask)
        entropy = _masked_mean(out.entropy, mask)
        loss = policy_loss + self.value_coef * value_loss - self.entropy_coef * entropy
        self.optimizer.zero_grad()
        loss.backward()
        norm = (nn.utils.clip_grad_norm_(self.policy.parameters(), self.max_grad_norm)
                if self.max_grad_norm is not None else
                torch.norm(torch.stack([p.grad.norm() for p in self.policy.parameters()
                                        if p.grad is not None])))
        self.optimizer.step()
        clip_fraction = _masked_mean(((ratio - 1.0).abs() > self.clip_eps).to(mask.dtype), mask)
        return {"loss/policy": policy_loss.item(), "loss/value": value_loss.item(),
                "loss/entropy": entropy.item(), "optim/clip_fraction": clip_fraction.item(),
                "optim/grad_norm": float(norm)}


def trial_metrics(batches: list[EpisodeBatch]) -> dict[str, float]:
    """Mean return of every episode index of the trials, the first and last (the tags every
    learner reports), the whole trial's, and the environment steps taken."""
    returns = [b.episode_returns().mean().item() for b in batches]
    metrics = {f"meta_train/return_episode_{k}": r for k, r in enumerate(returns)}
    return metrics | {"meta_train/return_pre": returns[0], "meta_train/return_post": returns[-1],
                      "meta_train/adaptation_gain": returns[-1] - returns[0],
                      "meta_train/return_trial": sum(returns),
                      "env_steps": float(sum(b.num_steps for b in batches))}


def _masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (x * mask).sum() / mask.sum().clamp_min(1.0)

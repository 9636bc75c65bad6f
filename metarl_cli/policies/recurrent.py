"""Recurrent policy for RL² (Duan et al., 2016): a GRU (or LSTM) over the whole trial.

The input at step t is (obs_t, previous action (one-hot for discrete actions), previous reward,
previous done flag), so the hidden state can hold what the trial has shown about the task. The
recurrent output feeds a policy head (Gaussian with a learned state-independent log-std for Box
actions, categorical for Discrete) and a value head.

Two ways to run it, which give the same numbers:

- :class:`RecurrentActor` acts one step at a time for the sampler, one row per (task, rollout),
  and keeps the trial's state between ``sample`` calls: a new actor is a new trial.
- :meth:`RecurrentPolicy.evaluate` recomputes log-probs, entropies and values over recorded
  trials (:class:`Trials`), as PPO needs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import gymnasium as gym
import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Categorical, Distribution, Independent, Normal

from metarl_cli.core.checks import check_choice, check_integer, check_positive
from metarl_cli.core.types import EpisodeBatch

DistParams = tuple[torch.Tensor, ...]
CELLS = {"gru": nn.GRU, "lstm": nn.LSTM}


@dataclass(frozen=True)
class Trials:
    """Recorded trials, one row per (task, rollout): the valid steps of the trial's episodes in
    order, packed to the left of the time axis (``mask`` is 1 on them, 0 on the padding after).

    ``ended`` is 1 on the last step of every episode (termination or horizon): the next step is
    the start of the trial's next episode, and its done-flag input is 1.
    """

    obs: torch.Tensor  # (B, L, obs_dim)
    actions: torch.Tensor  # (B, L, act_dim) or (B, L)
    rewards: torch.Tensor  # (B, L)
    ended: torch.Tensor  # (B, L)
    mask: torch.Tensor  # (B, L)
    log_probs: torch.Tensor  # (B, L), under the policy that acted

    def rows(self, index: torch.Tensor) -> Trials:
        """The trials of the given rows."""
        return Trials(self.obs[index], self.actions[index], self.rewards[index],
                      self.ended[index], self.mask[index], self.log_probs[index])


@dataclass(frozen=True)
class TrialOutputs:
    """The policy's outputs on every step of :class:`Trials`, each (B, L)."""

    log_probs: torch.Tensor
    entropy: torch.Tensor
    values: torch.Tensor


def trials_from_episodes(batches: list[EpisodeBatch]) -> Trials:
    """Concatenate consecutive episodes of the same trials along time and pack their valid
    steps to the left, so that a trial is one uninterrupted sequence."""
    mask = torch.cat([b.mask for b in batches], dim=2)
    ended = torch.cat([b.mask * (1.0 - torch.cat([b.mask[..., 1:],
                                                  torch.zeros_like(b.mask[..., :1])], -1))
                       for b in batches], dim=2)
    order = torch.argsort((mask == 0).to(torch.int8), dim=-1, stable=True)

    def packed(x: torch.Tensor) -> torch.Tensor:  # (N, R, T, ...) -> (N * R, T, ...), reordered
        index = order.reshape(*order.shape, *[1] * (x.dim() - 3)).expand_as(x)
        x = torch.gather(x, 2, index)
        return x.reshape(-1, *x.shape[2:])

    return Trials(obs=packed(torch.cat([b.obs for b in batches], 2)),
                  actions=packed(torch.cat([b.actions for b in batches], 2)),
                  rewards=packed(torch.cat([b.rewards for b in batches], 2)),
                  ended=packed(ended), mask=packed(mask),
                  log_probs=packed(torch.cat([b.log_probs for b in batches], 2)))


class RecurrentPolicy(nn.Module):
    """GRU/LSTM over (obs, previous action, previous reward, previous done) with policy and value
    heads. ``action_dim`` is the number of actions when ``discrete``."""

    def __init__(self, obs_dim: int, action_dim: int, discrete: bool, hidden_size: int,
                 cell: str, init_std: float) -> None:
        super().__init__()
        check_choice("cell", cell, tuple(CELLS))
        check_integer(1, hidden_size=hidden_size)
        check_positive(init_std=init_std)
        self.obs_dim, self.action_dim, self.discrete = obs_dim, action_dim, discrete
        self.hidden_size, self.cell = hidden_size, cell
        self.rnn = CELLS[cell](obs_dim + action_dim + 2, hidden_size, batch_first=True)
        self.head = nn.Linear(hidden_size, action_dim)
        self.value = nn.Linear(hidden_size, 1)
        with torch.no_grad():  # a near-uniform / zero-mean first policy, as is usual for PPO
            self.head.weight.mul_(0.01)
            self.head.bias.zero_()
        self.log_std = (None if discrete else
                        nn.Parameter(torch.full((action_dim,), math.log(init_std))))

    @property
    def state_size(self) -> int:
        """Size of the carried state per row: h for a GRU, (h, c) side by side for an LSTM."""
        return self.hidden_size * (2 if self.cell == "lstm" else 1)

    def initial_state(self, rows: int) -> torch.Tensor:
        """The state at the start of a trial: zeros, (rows, state_size)."""
        weight = self.value.weight
        return weight.new_zeros((rows, self.state_size))

    def encode_action(self, actions: torch.Tensor) -> torch.Tensor:
        """Actions as network input: one-hot for discrete actions, the raw vector for boxes."""
        if self.discrete:
            return F.one_hot(actions.long(), self.action_dim).to(self.value.weight.dtype)
        return actions.to(self.value.weight.dtype)

    def inputs(self, obs: torch.Tensor, prev_action: torch.Tensor, prev_reward: torch.Tensor,
               prev_done: torch.Tensor) -> torch.Tensor:
        """Network input (..., obs_dim + action_dim + 2) from already encoded previous actions."""
        return torch.cat([obs, prev_action, prev_reward.unsqueeze(-1),
                          prev_done.unsqueeze(-1)], dim=-1)

    def recur(self, x: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the cell over inputs (B, T, in) from states (B, state_size): outputs (B, T, H)
        and the final states."""
        if self.cell == "lstm":
            h, c = state.split(self.hidden_size, dim=-1)
            out, (h, c) = self.rnn(x, (h.unsqueeze(0).contiguous(), c.unsqueeze(0).contiguous()))
            return out, torch.cat([h[0], c[0]], dim=-1)
        out, h = self.rnn(x, state.unsqueeze(0).contiguous())
        return out, h[0]

    def forward(self, features: torch.Tensor) -> DistParams:
        """Distribution parameters from recurrent outputs (..., H)."""
        out = self.head(features)
        if self.log_std is None:
            return (out,)
        return out, self.log_std.expand_as(out)

    def values(self, features: torch.Tensor) -> torch.Tensor:
        return self.value(features).squeeze(-1)

    @staticmethod
    def distribution(out: DistParams) -> Distribution:
        if len(out) == 1:
            return Categorical(logits=out[0])
        mean, log_std = out
        return Independent(Normal(mean, log_std.exp()), 1)

    @staticmethod
    def sample(out: DistParams, generator: torch.Generator) -> torch.Tensor:
        if len(out) == 1:
            probs = torch.softmax(out[0], -1).to(generator.device)
            flat = torch.multinomial(probs.reshape(-1, probs.shape[-1]), 1, generator=generator)
            return flat.reshape(probs.shape[:-1]).to(out[0].device)
        mean, log_std = out
        noise = torch.randn(mean.shape, generator=generator, dtype=mean.dtype,
                            device=generator.device)
        return mean + log_std.exp() * noise.to(mean.device)

    def evaluate(self, trials: Trials, bptt_length: int | None = None) -> TrialOutputs:
        """Log-probs, entropies and values on every step of ``trials``, from a zero state.

        With ``bptt_length``, gradients flow back at most that many steps: the state is carried
        forward between chunks but detached (truncated backpropagation through time).
        """
        prev_action = _shift(self.encode_action(trials.actions))
        x = self.inputs(trials.obs, prev_action, _shift(trials.rewards), _shift(trials.ended))
        state = self.initial_state(x.shape[0])
        chunk = x.shape[1] if bptt_length is None else bptt_length
        outputs = []
        for start in range(0, x.shape[1], chunk):
            out, state = self.recur(x[:, start:start + chunk], state)
            outputs.append(out)
            state = state.detach()
        features = torch.cat(outputs, dim=1)
        dist = self.distribution(self(features))
        return TrialOutputs(dist.log_prob(trials.actions), dist.entropy(), self.values(features))


def _shift(x: torch.Tensor) -> torch.Tensor:
    """The previous step's value along the time axis (axis 1), zeros at the first step."""
    return torch.cat([torch.zeros_like(x[:, :1]), x[:, :-1]], dim=1)


class RecurrentActor:
    """The acting side of one trial per (task, rollout) row, for the sampler.

    The state (N, R, state_size) and the previous action, reward and done flag are carried
    across the episodes of the trial, i.e. across ``sample`` calls with this object. A row whose
    episode has ended keeps its state unchanged through the padding steps the sampler still runs
    for it; once every row has ended (the end of a ``sample`` call) all rows start their next
    episode, whose first input has done flag 1 and the last real action and reward.
    """

    def __init__(self, policy: RecurrentPolicy, num_tasks: int) -> None:
        self.policy = policy
        self.num_tasks = num_tasks
        self.state: torch.Tensor | None = None  # (N, R, state_size) once R is known

    def act(self, obs: torch.Tensor, generator: torch.Generator
            ) -> tuple[torch.Tensor, torch.Tensor]:
        n, r = obs.shape[:2]
        if self.state is None:
            self._start(n, r)
        elif (n, r) != self.state.shape[:2]:
            raise ValueError(f"this trial acts for {tuple(self.state.shape[:2])} (tasks, "
                             f"rollouts), got observations for {(n, r)}; start a new trial")
        assert self.state is not None
        policy = self.policy
        x = policy.inputs(obs, self.prev_action, self.prev_reward, self.prev_done)
        features, state = policy.recur(x.reshape(n * r, 1, -1),
                                       self.state.reshape(n * r, -1))
        out = policy(features.reshape(n, r, -1))
        action = policy.sample(out, generator)
        log_prob = policy.distribution(out).log_prob(action)
        alive = self.alive.unsqueeze(-1)
        self.state = torch.where(alive, state.reshape(n, r, -1), self.state)
        self.prev_action = torch.where(alive, policy.encode_action(action), self.prev_action)
        return action, log_prob

    def observe(self, rewards: torch.Tensor, ended: torch.Tensor) -> None:
        """Record the step's rewards and episode ends for the rows still in their episode."""
        self.prev_reward = torch.where(self.alive, rewards.to(self.prev_reward.dtype),
                                       self.prev_reward)
        self.prev_done = torch.where(self.alive, ended.to(self.prev_done.dtype), self.prev_done)
        self.alive = self.alive & ~ended
        if not self.alive.any():  # the sample call is over: every row starts its next episode
            self.alive = torch.ones_like(self.alive)

    def _start(self, n: int, r: int) -> None:
        """A fresh trial: zero state and zero previous action, reward and done flag."""
        self.state = self.policy.initial_state(n * r).reshape(n, r, -1)
        self.prev_action = self.state.new_zeros((n, r, self.policy.action_dim))
        self.prev_reward = self.state.new_zeros((n, r))
        self.prev_done = self.state.new_zeros((n, r))
        self.alive = torch.ones((n, r), dtype=torch.bool, device=self.state.device)


def recurrent_policy(observation_space: gym.Space, action_space: gym.Space,
                     hidden_size: int = 128, cell: str = "gru", init_std: float = 1.0
                     ) -> RecurrentPolicy:
    """The recurrent policy that fits the spaces: Gaussian head for boxes, categorical for
    discrete actions."""
    if not isinstance(observation_space, gym.spaces.Box) or len(observation_space.shape) != 1:
        raise ValueError(f"model: the recurrent policy needs a flat Box observation space, got "
                         f"{observation_space}")
    obs_dim = int(observation_space.shape[0])
    if isinstance(action_space, gym.spaces.Box) and len(action_space.shape) == 1:
        return RecurrentPolicy(obs_dim, int(action_space.shape[0]), False, hidden_size, cell,
                               init_std)
    if isinstance(action_space, gym.spaces.Discrete):
        return RecurrentPolicy(obs_dim, int(action_space.n), True, hidden_size, cell, init_std)
    raise ValueError(f"model: no recurrent policy for action space {action_space}")

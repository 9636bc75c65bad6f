"""MLP policies: Gaussian with a learned state-independent log-std, and categorical.

``forward`` returns plain tensors (the distribution's parameters) so that the policy can be
called through ``torch.func.functional_call`` and ``torch.func.vmap`` with per-task parameters;
``distribution`` and ``sample`` turn those tensors into a distribution or an action.
"""

from __future__ import annotations

import math

import gymnasium as gym
import torch
from torch import nn
from torch.distributions import Categorical, Distribution, Independent, Normal

from metarl_cli.core.checks import check_choice, check_positive

DistParams = tuple[torch.Tensor, ...]
# Weight initialisations: "torch" keeps nn.Linear's default (uniform in +-1/sqrt(fan_in), biases
# too); "xavier" is Glorot-uniform weights and zero biases, as in the MAML and rllab code.
INITS = ("torch", "xavier")


def mlp(in_dim: int, out_dim: int, hidden_sizes: list[int], activation: str,
        init: str = "torch") -> nn.Sequential:
    """Fully connected network; ``activation`` names a torch.nn activation (ReLU, Tanh, ...)
    and ``init`` one of :data:`INITS`."""
    check_choice("init", init, INITS)
    act = getattr(nn.modules.activation, activation, None)
    if not (isinstance(act, type) and issubclass(act, nn.Module)):
        raise ValueError(f"activation: unknown torch.nn activation {activation!r} "
                         "(use e.g. ReLU or Tanh)")
    layers: list[nn.Module] = []
    for size in hidden_sizes:
        if size < 1:
            raise ValueError(f"hidden_sizes: every layer needs >= 1 unit, got {hidden_sizes}")
        layers += [nn.Linear(in_dim, size), act()]
        in_dim = size
    layers.append(nn.Linear(in_dim, out_dim))
    if init == "xavier":
        for layer in layers:
            if isinstance(layer, nn.Linear):
                nn.init.xavier_uniform_(layer.weight)
                nn.init.zeros_(layer.bias)
    return nn.Sequential(*layers)


class GaussianMLPPolicy(nn.Module):
    """Diagonal Gaussian whose mean is an MLP of the observation and whose log-std is learned."""

    def __init__(self, obs_dim: int, act_dim: int, hidden_sizes: list[int], activation: str,
                 init_std: float, init: str = "torch") -> None:
        super().__init__()
        check_positive(init_std=init_std)
        self.mean = mlp(obs_dim, act_dim, hidden_sizes, activation, init)
        self.log_std = nn.Parameter(torch.full((act_dim,), math.log(init_std)))

    def forward(self, obs: torch.Tensor) -> DistParams:
        mean = self.mean(obs)
        return mean, self.log_std.expand_as(mean)

    @staticmethod
    def distribution(out: DistParams) -> Distribution:
        mean, log_std = out
        return Independent(Normal(mean, log_std.exp()), 1)

    @staticmethod
    def sample(out: DistParams, generator: torch.Generator) -> torch.Tensor:
        mean, log_std = out
        noise = torch.randn(mean.shape, generator=generator, dtype=mean.dtype,
                            device=generator.device)
        return mean + log_std.exp() * noise.to(mean.device)


class CategoricalMLPPolicy(nn.Module):
    """Categorical distribution over discrete actions with MLP logits."""

    def __init__(self, obs_dim: int, num_actions: int, hidden_sizes: list[int], activation: str,
                 init: str = "torch") -> None:
        super().__init__()
        self.logits = mlp(obs_dim, num_actions, hidden_sizes, activation, init)

    def forward(self, obs: torch.Tensor) -> DistParams:
        return (self.logits(obs),)

    @staticmethod
    def distribution(out: DistParams) -> Distribution:
        return Categorical(logits=out[0])

    @staticmethod
    def sample(out: DistParams, generator: torch.Generator) -> torch.Tensor:
        probs = torch.softmax(out[0], -1).to(generator.device)
        flat = torch.multinomial(probs.reshape(-1, probs.shape[-1]), 1, generator=generator)
        return flat.reshape(probs.shape[:-1]).to(out[0].device)


def mlp_policy(observation_space: gym.Space, action_space: gym.Space, hidden_sizes: list[int],
               activation: str = "ReLU", init_std: float = 1.0, init: str = "torch"
               ) -> nn.Module:
    """The MLP policy that fits the action space: Gaussian for boxes, categorical for discrete."""
    if not isinstance(observation_space, gym.spaces.Box):
        raise ValueError(f"model: the MLP policy needs a Box observation space, got "
                         f"{observation_space}")
    obs_dim = int(observation_space.shape[0])
    if isinstance(action_space, gym.spaces.Box):
        return GaussianMLPPolicy(obs_dim, int(action_space.shape[0]), list(hidden_sizes),
                                 activation, init_std, init)
    if isinstance(action_space, gym.spaces.Discrete):
        return CategoricalMLPPolicy(obs_dim, int(action_space.n), list(hidden_sizes), activation,
                                    init)
    raise ValueError(f"model: no MLP policy for action space {action_space}")

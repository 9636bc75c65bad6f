"""PEARL (Rakelly, Zhou, Quillen, Finn & Levine, ICML 2019): off-policy meta-RL with a
probabilistic task latent z inferred from context.

Data collection (per meta-iteration, through the batched sampler, one policy forward per step
for all tasks): before the first iteration every training task of a fixed task set
(``train_tasks``, as PEARL collects its initial pool) gets ``num_initial_steps`` with z from the
prior, and so does, with a preset that draws fresh tasks, a task seen for the first time;
then every task of the meta-batch has its encoder data refreshed (the encoder buffer is
cleared, as in PEARL) and gets ``num_steps_prior`` steps with z ~ prior (a fresh z per episode)
and ``num_steps_posterior`` steps with z ~ posterior, both written to the encoder and the RL
buffers, then ``num_extra_rl_steps_posterior`` posterior steps written to the RL buffer only.
Posterior episodes are collected one per task per round, each round's z inferred from a fresh
context batch of that task's encoder buffer (PEARL's ``update_post_train=1``).

Training: ``num_train_steps_per_itr`` gradient steps, each on ``meta_batch`` tasks drawn from the
tasks with data: context from the encoder buffer, a SAC batch from the RL buffer. The encoder
is trained by the critic loss (z is not detached there) plus ``kl_lambda`` times the KL of the
posterior to the prior N(0, I) (summed over tasks, as in PEARL); the actor sees z detached.
The entropy weight is fixed at 1, ``reward_scale`` scales rewards in the Bellman target (PEARL's
way of setting the entropy trade-off); twin Q critics with Polyak-averaged targets (SAC, Haarnoja
et al. 2018) replace PEARL's separate state-value network. A step whose mask goes from 1 to 0
before the horizon is terminal; the horizon is a time limit, not a terminal. When the family
offers ``training_rewards(tasks, next_obs)`` (PEARL's sparse point robot) the RL buffer stores
those shaped rewards, while the encoder and meta-test see the environment's own reward.

Meta-test (core/evaluation.py), PEARL's protocol (its ``collect_paths``): every episode acts
with the mean action (``deterministic_eval``) and a fresh z per (task, rollout) row; the first
``num_exp_traj_eval`` episodes of a trial draw z from the prior, and each later episode from the
posterior of all the trial's earlier episodes. ``adapt`` adds the row's new episode (masked
steps excluded) to its context, kept as the product-of-Gaussians sufficient statistics. With
``num_exp_traj_eval=2`` (REFERENCE's protocol, PEARL's MuJoCo configs) the third episode is the
first that uses the posterior. Replay data is never used at meta-test.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import nn

from metarl_cli.core.checks import (
    check_non_negative,
    check_positive,
    check_unit_interval,
    require_optimizer,
)
from metarl_cli.core.replay import MultiTaskReplay, Transitions
from metarl_cli.core.sampler import Sampler
from metarl_cli.core.types import EpisodeBatch, OptimizerFactory
from metarl_cli.policies.context import (
    PEARLNetworks,
    TanhGaussianActor,
    gaussian_kl_to_standard_normal,
    posterior_from_sums,
    product_of_gaussians,
)


class PEARLPolicy:
    """Acts with a task latent per (task, rollout) row: z is drawn from N(mean, var) with the
    sampler's generator at the first ``act`` (so meta-test randomness stays the meta-test
    sampler's). ``precision`` / ``weighted_mean`` are the context's sufficient statistics
    (sum 1/var_j, sum mu_j/var_j over the row's context transitions; None: no context yet),
    gathered from ``episodes`` episodes; z is drawn from their posterior when ``posterior``,
    else from the prior N(0, I)."""

    def __init__(self, networks: PEARLNetworks, deterministic: bool,
                 precision: torch.Tensor | None = None,
                 weighted_mean: torch.Tensor | None = None,
                 mean: torch.Tensor | None = None, var: torch.Tensor | None = None,
                 episodes: int = 0, posterior: bool = True) -> None:
        self.networks = networks
        self.deterministic = deterministic
        self.precision, self.weighted_mean = precision, weighted_mean
        self.episodes = episodes
        if mean is None and posterior and precision is not None and weighted_mean is not None:
            mean, var = posterior_from_sums(precision, weighted_mean)
        self.mean, self.var = mean, var
        self.z: torch.Tensor | None = None

    def act(self, obs: torch.Tensor, generator: torch.Generator
            ) -> tuple[torch.Tensor, torch.Tensor]:
        nets = self.networks
        if self.z is None:
            shape = (*obs.shape[:-1], nets.latent_dim)
            mean = obs.new_zeros(shape) if self.mean is None else self.mean.expand(shape)
            var = obs.new_ones(shape) if self.var is None else self.var.expand(shape)
            self.z = mean + var.sqrt() * _randn(shape, generator, obs)
        mean_a, log_std = nets.actor(obs, self.z)
        if self.deterministic:
            action, log_prob = torch.tanh(mean_a), obs.new_zeros(obs.shape[:-1])
        else:
            action, log_prob = TanhGaussianActor.squash(
                mean_a, log_std, _randn(mean_a.shape, generator, obs))
        return nets.to_env_action(action), log_prob


class PEARL:
    adapts_per_episode = True  # meta-test step k is episode k (core/evaluation.py)

    def __init__(self, policy: PEARLNetworks, sampler: Sampler,
                 optimizer: OptimizerFactory | None = None, lr: float | None = 3e-4,
                 num_initial_steps: int = 2000, num_steps_prior: int = 400,
                 num_steps_posterior: int = 0, num_extra_rl_steps_posterior: int = 400,
                 num_train_steps_per_itr: int = 2000, meta_batch: int = 16,
                 embedding_batch_size: int = 64, embedding_mini_batch_size: int = 64,
                 batch_size: int = 256, kl_lambda: float = 0.1, discount: float = 0.99,
                 soft_target_tau: float = 0.005, reward_scale: float = 5.0,
                 replay_capacity: int = 100_000, max_tasks: int = 100,
                 deterministic_eval: bool = True, num_exp_traj_eval: int = 2,
                 train_tasks: Sequence[Any] | None = None) -> None:
        if not isinstance(policy, PEARLNetworks):
            raise ValueError("algo=pearl needs model=pearl (the PEARLNetworks module), got "
                             f"{type(policy).__name__}")
        check_non_negative(num_initial_steps=num_initial_steps, num_steps_prior=num_steps_prior,
                           num_steps_posterior=num_steps_posterior,
                           num_extra_rl_steps_posterior=num_extra_rl_steps_posterior,
                           kl_lambda=kl_lambda)
        check_positive(num_train_steps_per_itr=num_train_steps_per_itr, meta_batch=meta_batch,
                       embedding_batch_size=embedding_batch_size,
                       embedding_mini_batch_size=embedding_mini_batch_size,
                       batch_size=batch_size, reward_scale=reward_scale,
                       replay_capacity=replay_capacity, max_tasks=max_tasks,
                       num_exp_traj_eval=num_exp_traj_eval)
        if embedding_mini_batch_size > embedding_batch_size:
            raise ValueError(f"embedding_mini_batch_size ({embedding_mini_batch_size}) must be "
                             f"<= embedding_batch_size ({embedding_batch_size})")
        if num_steps_prior + num_steps_posterior + num_extra_rl_steps_posterior == 0:
            raise ValueError("num_steps_prior, num_steps_posterior and "
                             "num_extra_rl_steps_posterior are all 0, so no data would be "
                             "collected after the first iteration; set one of them > 0")
        if num_initial_steps + num_steps_prior + num_steps_posterior == 0:
            raise ValueError("num_initial_steps, num_steps_prior and num_steps_posterior are all "
                             "0, so the encoder would have no context; set one of them > 0")
        check_unit_interval(discount=discount, soft_target_tau=soft_target_tau)
        check_positive(or_none=True, lr=lr)
        optimizer = require_optimizer(optimizer, "PEARL")
        self.policy, self.sampler = policy, sampler
        self.num_initial_steps, self.num_steps_prior = num_initial_steps, num_steps_prior
        self.num_steps_posterior = num_steps_posterior
        self.num_extra_rl_steps_posterior = num_extra_rl_steps_posterior
        self.num_train_steps_per_itr, self.meta_batch = num_train_steps_per_itr, meta_batch
        self.embedding_batch_size = embedding_batch_size
        self.embedding_mini_batch_size = embedding_mini_batch_size
        self.batch_size, self.kl_lambda, self.discount = batch_size, kl_lambda, discount
        self.soft_target_tau, self.reward_scale = soft_target_tau, reward_scale
        self.deterministic_eval, self.num_exp_traj_eval = deterministic_eval, num_exp_traj_eval
        self.train_tasks = list(train_tasks or [])
        if len(self.train_tasks) > max_tasks:
            raise ValueError(f"max_tasks ({max_tasks}) must be >= the {len(self.train_tasks)} "
                             "training tasks, which all get initial data")

        def make(params: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
            return optimizer(params) if lr is None else optimizer(params, lr=lr)

        self.actor_optimizer = make(policy.actor.parameters())
        self.critic_optimizer = make([*policy.qf1.parameters(), *policy.qf2.parameters()])
        self.encoder_optimizer = make(policy.encoder.parameters())
        horizon = sampler.horizon
        encoder_capacity = horizon * max(_episodes(num_initial_steps, horizon),
                                         _episodes(num_steps_prior, horizon)
                                         + _episodes(num_steps_posterior, horizon), 1)
        dims = (policy.obs_dim, policy.act_dim)
        self.rl_replay = MultiTaskReplay(*dims, replay_capacity, max_tasks, sampler.device)
        self.encoder_replay = MultiTaskReplay(*dims, encoder_capacity, max_tasks, sampler.device)
        seed = int(torch.randint(0, 2**62, (1,)).item())  # from the run's torch.manual_seed
        self.generator = torch.Generator().manual_seed(seed)

    def train_step(self, tasks: list[Any]) -> dict[str, float]:
        unique = list({repr(t): t for t in tasks}.values())
        horizon = self.sampler.horizon
        steps = 0
        returns: dict[str, list[torch.Tensor]] = {"prior": [], "posterior": []}

        # --- initial data, z from the prior: every fixed training task before the first
        # iteration (PEARL's initial pool), and any task seen for the first time ---
        seen = {repr(t) for t in unique}
        new = [t for t in [*unique, *(t for t in self.train_tasks if repr(t) not in seen)]
               if t not in self.rl_replay]
        if new and self.num_initial_steps > 0:
            batch = self._collect(new, None, _episodes(self.num_initial_steps, horizon))
            self._store(batch, encoder=True)
            steps += batch.num_steps

        # --- data with z from the prior, then the posterior (encoder data refreshed) ---
        if self.num_steps_prior + self.num_steps_posterior > 0:
            self.encoder_replay.clear(unique)
        if self.num_steps_prior > 0:
            batch = self._collect(unique, None, _episodes(self.num_steps_prior, horizon))
            self._store(batch, encoder=True)
            steps += batch.num_steps
            returns["prior"].append(batch.episode_returns().mean())
        rounds = [True] * _episodes(self.num_steps_posterior, horizon) \
            + [False] * _episodes(self.num_extra_rl_steps_posterior, horizon)
        for to_encoder in rounds:
            batch = self._collect(unique, self._buffer_posterior(unique), 1)
            self._store(batch, encoder=to_encoder)
            steps += batch.num_steps
            returns["posterior"].append(batch.episode_returns().mean())

        # --- SAC and encoder gradient steps on meta-batches of tasks with data ---
        keys = [k for k in self.rl_replay.keys() if k in set(self.encoder_replay.keys())]
        totals: dict[str, torch.Tensor] = {}
        for _ in range(self.num_train_steps_per_itr):
            pick = torch.randint(len(keys), (self.meta_batch,), generator=self.generator)
            for name, value in self._gradient_step([keys[i] for i in pick.tolist()]).items():
                totals[name] = totals.get(name, 0.0) + value
        metrics = {name: float(v.item()) / self.num_train_steps_per_itr
                   for name, v in totals.items()}
        means = {phase: float(torch.stack(v).mean().item()) for phase, v in returns.items() if v}
        metrics |= {f"meta_train/return_{phase}": value for phase, value in means.items()}
        # the trainer's progress line reads pre/post: prior and posterior episodes here
        metrics["meta_train/return_pre"] = means.get("prior", means.get("posterior"))
        metrics["meta_train/return_post"] = means.get("posterior", means.get("prior"))
        return metrics | {"env_steps": float(steps)}

    def exploration_policy(self, num_tasks: int) -> PEARLPolicy:
        """A trial's first episode: z from the prior for every (task, rollout) row."""
        return PEARLPolicy(self.policy, self.deterministic_eval)

    def adapt(self, policy: PEARLPolicy, episodes: EpisodeBatch) -> PEARLPolicy:
        """Add each row's episode (masked steps excluded) to that row's context; the next
        episode draws z from the new posterior once the context holds ``num_exp_traj_eval``
        episodes, from the prior before that."""
        nets = self.policy
        with torch.no_grad():
            context = nets.context(episodes.obs, episodes.actions, episodes.rewards,
                                   episodes.next_obs())
            mu, var = nets.encoder(context)  # (N, R, T, L)
            precision = episodes.mask.unsqueeze(-1) / var
            new_precision, new_weighted = precision.sum(2), (precision * mu).sum(2)
        if policy.precision is not None and policy.weighted_mean is not None:
            new_precision = new_precision + policy.precision
            new_weighted = new_weighted + policy.weighted_mean
        seen = policy.episodes + 1
        return PEARLPolicy(nets, self.deterministic_eval, new_precision, new_weighted,
                           episodes=seen, posterior=seen >= self.num_exp_traj_eval)

    def state_dict(self) -> dict[str, Any]:
        return {"networks": self.policy.state_dict(),
                "actor_optimizer": self.actor_optimizer.state_dict(),
                "critic_optimizer": self.critic_optimizer.state_dict(),
                "encoder_optimizer": self.encoder_optimizer.state_dict(),
                "rl_replay": self.rl_replay.state_dict(),
                "encoder_replay": self.encoder_replay.state_dict(),
                "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.policy.load_state_dict(state["networks"])
        self.actor_optimizer.load_state_dict(state["actor_optimizer"])
        self.critic_optimizer.load_state_dict(state["critic_optimizer"])
        self.encoder_optimizer.load_state_dict(state["encoder_optimizer"])
        self.rl_replay.load_state_dict(state["rl_replay"])
        self.encoder_replay.load_state_dict(state["encoder_replay"])
        self.generator.set_state(state["generator"])

    # --- helpers: data collection ---
    def _collect(self, tasks: Sequence[Any], posterior: tuple[torch.Tensor, torch.Tensor] | None,
                 rollouts: int) -> EpisodeBatch:
        """Episodes with stochastic actions; z from ``posterior`` ((N, L) mean, var) or from
        the prior, drawn per (task, rollout) row."""
        if posterior is None:
            acting = PEARLPolicy(self.policy, deterministic=False)
        else:
            mean, var = posterior
            acting = PEARLPolicy(self.policy, False, mean=mean.unsqueeze(1),
                                 var=var.unsqueeze(1))
        return self.sampler.sample(acting, tasks, rollouts)

    def _store(self, batch: EpisodeBatch, encoder: bool) -> None:
        """Write a batch to the RL buffer (shaped rewards where the family has them) and,
        with ``encoder``, to the encoder buffer (the environment's rewards)."""
        next_obs = batch.next_obs()
        mask = batch.mask
        later = torch.cat([mask[..., 1:], torch.ones_like(mask[..., :1])], dim=-1)
        terminals = mask * (1.0 - later)  # the mask drops to 0 before the horizon
        shaped = getattr(self.sampler.env, "training_rewards", None)
        rewards = batch.rewards if shaped is None else shaped(batch.tasks, next_obs) * mask
        self.rl_replay.add(batch.tasks, batch.obs, batch.actions, rewards, next_obs, terminals,
                           mask)
        if encoder:
            self.encoder_replay.add(batch.tasks, batch.obs, batch.actions, batch.rewards,
                                    next_obs, terminals, mask)

    def _buffer_posterior(self, tasks: Sequence[Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior (mean, var), (N, L), from a context batch of each task's encoder buffer;
        the prior for a task whose encoder buffer is empty."""
        n, latent = len(tasks), self.policy.latent_dim
        dtype, device = torch.get_default_dtype(), self.sampler.device
        mean = torch.zeros((n, latent), dtype=dtype, device=device)
        var = torch.ones((n, latent), dtype=dtype, device=device)
        have = [i for i, t in enumerate(tasks) if t in self.encoder_replay]
        if have:
            data = self.encoder_replay.sample([repr(tasks[i]) for i in have],
                                              self.embedding_batch_size, self.generator)
            with torch.no_grad():
                m, v = self.policy.encoder.posterior(self._context(data))
            index = torch.tensor(have, device=device)
            mean[index], var[index] = m, v
        return mean, var

    def _context(self, data: Transitions) -> torch.Tensor:
        return self.policy.context(data.obs, data.actions, data.rewards, data.next_obs)

    # --- helpers: one gradient step ---
    def _gradient_step(self, keys: list[str]) -> dict[str, torch.Tensor]:
        nets = self.policy
        context = self._context(self.encoder_replay.sample(keys, self.embedding_batch_size,
                                                           self.generator))
        rl = self.rl_replay.sample(keys, self.batch_size, self.generator)

        # encoder: posterior per task; only the first mini-batch of the context gets gradients
        mu, var = nets.encoder(context)
        m = self.embedding_mini_batch_size
        if m < context.shape[1]:
            mu = torch.cat([mu[:, :m], mu[:, m:].detach()], dim=1)
            var = torch.cat([var[:, :m], var[:, m:].detach()], dim=1)
        mean, post_var = product_of_gaussians(mu, var)
        z = mean + post_var.sqrt() * _randn(mean.shape, self.generator, mean)
        kl = gaussian_kl_to_standard_normal(mean, post_var).sum()
        z = z.unsqueeze(1).expand(-1, self.batch_size, -1)
        z_detached = z.detach()

        # critics (and encoder through z)
        actions = nets.normalize_action(rl.actions)
        q1, q2 = nets.qf1(rl.obs, actions, z), nets.qf2(rl.obs, actions, z)
        with torch.no_grad():
            next_mean, next_log_std = nets.actor(rl.next_obs, z_detached)
            next_action, next_log_prob = TanhGaussianActor.squash(
                next_mean, next_log_std, _randn(next_mean.shape, self.generator, next_mean))
            target_q = torch.min(nets.target_qf1(rl.next_obs, next_action, z_detached),
                                 nets.target_qf2(rl.next_obs, next_action, z_detached))
            target = self.reward_scale * rl.rewards + (1.0 - rl.terminals) * self.discount * (
                target_q - next_log_prob)
        qf_loss = ((q1 - target) ** 2).mean() + ((q2 - target) ** 2).mean()
        self.encoder_optimizer.zero_grad()
        self.critic_optimizer.zero_grad()
        (qf_loss + self.kl_lambda * kl).backward()
        self.critic_optimizer.step()
        self.encoder_optimizer.step()

        # actor, z detached
        pi_mean, pi_log_std = nets.actor(rl.obs, z_detached)
        action, log_prob = TanhGaussianActor.squash(
            pi_mean, pi_log_std, _randn(pi_mean.shape, self.generator, pi_mean))
        q_pi = torch.min(nets.qf1(rl.obs, action, z_detached), nets.qf2(rl.obs, action, z_detached))
        policy_loss = (log_prob - q_pi).mean()
        self.actor_optimizer.zero_grad()
        policy_loss.backward()
        self.actor_optimizer.step()

        # targets
        with torch.no_grad():
            for target_net, net in [(nets.target_qf1, nets.qf1), (nets.target_qf2, nets.qf2)]:
                for tp, p in zip(target_net.parameters(), net.parameters(), strict=True):
                    tp.lerp_(p, self.soft_target_tau)
        return {"loss/qf": qf_loss.detach(), "loss/policy": policy_loss.detach(),
                "loss/kl": kl.detach(), "q/mean": q1.detach().mean(),
                "z/posterior_mean_abs": mean.detach().abs().mean(),
                "z/posterior_std": post_var.detach().sqrt().mean(),
                "policy/entropy": -log_prob.detach().mean()}


def _episodes(steps: int, horizon: int) -> int:
    """Episodes needed for ``steps`` environment steps (PEARL collects whole episodes)."""
    return math.ceil(steps / horizon)


def _randn(shape: Sequence[int], generator: torch.Generator, like: torch.Tensor
           ) -> torch.Tensor:
    """Standard normal noise from a (CPU) generator, on ``like``'s device and dtype."""
    return torch.randn(tuple(shape), generator=generator, dtype=like.dtype,
                       device=generator.device).to(like.device)

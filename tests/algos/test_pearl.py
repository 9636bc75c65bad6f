"""PEARL: the learner contract on point_nav and point_robot, adapt() uses only its row's
episodes, transitions/terminals written to the buffers, a bit-identical resume, bad values."""

from __future__ import annotations

import copy
import functools
import io
from collections.abc import Callable

import numpy as np
import pytest
import torch
from omegaconf import DictConfig

from metarl_cli.algos.pearl import PEARL
from metarl_cli.commands.experiment import build_experiment
from metarl_cli.core.build import ConfigError
from metarl_cli.core.evaluation import meta_test
from metarl_cli.core.sampler import Sampler
from metarl_cli.core.types import EpisodeBatch
from metarl_cli.envs.point_nav import BatchedPointNav
from metarl_cli.envs.point_robot import BatchedPointRobot, BatchedPointRobotSparse
from metarl_cli.policies.context import pearl_networks, product_of_gaussians

HORIZON = 6
SMALL = {"num_initial_steps": 12, "num_steps_prior": 6, "num_steps_posterior": 6,
         "num_extra_rl_steps_posterior": 6, "num_train_steps_per_itr": 3, "meta_batch": 3,
         "embedding_batch_size": 8, "embedding_mini_batch_size": 4, "batch_size": 16,
         "replay_capacity": 100, "max_tasks": 10}
Adam = functools.partial(torch.optim.Adam, lr=1e-3)


def make_pearl(family=None, seed: int = 0, horizon: int = HORIZON, **kwargs) -> PEARL:
    family = family if family is not None else BatchedPointRobot()
    torch.manual_seed(seed)
    nets = pearl_networks(family.observation_space, family.action_space, [16, 16], [16],
                          latent_dim=3)
    sampler = Sampler(family, horizon=horizon, seed=seed)
    return PEARL(nets, sampler, **({"optimizer": Adam} | SMALL | kwargs))


@pytest.mark.parametrize("family", [BatchedPointNav(), BatchedPointRobot(),
                                    BatchedPointRobotSparse()])
def test_train_step_metrics_and_meta_test(family) -> None:
    pearl = make_pearl(family)
    tasks = family.sample_tasks(2, np.random.default_rng(0))
    curve = meta_test(pearl, pearl.sampler, tasks, steps=2, rollouts=3)
    assert curve.returns.shape == (3, 2) and np.all(np.isfinite(curve.returns))
    before = {n: p.detach().clone() for n, p in pearl.policy.named_parameters()}
    metrics = pearl.train_step(tasks)
    assert {"loss/qf", "loss/policy", "loss/kl", "meta_train/return_prior",
            "meta_train/return_posterior", "meta_train/return_pre", "meta_train/return_post",
            "z/posterior_mean_abs", "z/posterior_std", "env_steps"} <= metrics.keys()
    assert all(np.isfinite(v) for v in metrics.values())
    steps = 2 * (12 + 6 + 6 + 6)
    if isinstance(family, BatchedPointNav):  # terminates on reaching the goal
        assert 0 < metrics["env_steps"] <= steps
    else:
        assert metrics["env_steps"] == steps
    for name, p in pearl.policy.named_parameters():
        if name.startswith(("encoder", "actor", "qf1", "qf2")):
            assert not torch.equal(p, before[name]), name
    # only prior + posterior steps of this iteration stay in the encoder buffer
    assert int(pearl.encoder_replay.size[pearl.encoder_replay.slot(repr(tasks[0]))]) == 12
    assert int(pearl.rl_replay.size[pearl.rl_replay.slot(repr(tasks[0]))]) == 30 or \
        isinstance(family, BatchedPointNav)
    metrics = pearl.train_step(tasks)  # tasks seen before: no initial steps
    assert metrics["env_steps"] == 2 * 18 or isinstance(family, BatchedPointNav)


def test_sparse_family_stores_shaped_rewards_for_rl_and_env_rewards_for_the_encoder() -> None:
    family = BatchedPointRobotSparse()
    pearl = make_pearl(family, num_steps_posterior=0, num_extra_rl_steps_posterior=0,
                       num_initial_steps=0)
    task = family.sample_tasks(1, np.random.default_rng(0))
    pearl.train_step(task)
    key = repr(task[0])
    goal = torch.tensor(task[0].goal, dtype=torch.get_default_dtype())
    for buffer, shaped in [(pearl.rl_replay, True), (pearl.encoder_replay, False)]:
        s, n = buffer.slot(key), int(buffer.size[buffer.slot(key)])
        nxt, rew = buffer._data["next_obs"][s, :n], buffer._data["rewards"][s, :n]
        d = torch.linalg.vector_norm(nxt - goal, dim=-1)
        expected = -d if shaped else torch.where(d <= 0.2, 1 - d, torch.zeros_like(d))
        torch.testing.assert_close(rew, expected)
        assert torch.equal(buffer._data["terminals"][s, :n], torch.zeros(n))  # time limits


def test_terminal_is_where_the_mask_drops_before_the_horizon() -> None:
    pearl = make_pearl(BatchedPointNav())
    mask = torch.tensor([[[1.0, 1.0, 0.0, 0.0, 0.0, 0.0], [1.0] * 6]])
    obs = torch.arange(12.0).view(1, 2, 6, 1).repeat(1, 1, 1, 2)
    batch = EpisodeBatch([BatchedPointNav().sample_tasks(1, np.random.default_rng(0))[0]],
                         obs, torch.zeros(1, 2, 6, 2), torch.ones(1, 2, 6), mask,
                         torch.zeros(1, 2, 6), final_obs=torch.full((1, 2, 2), 99.0))
    pearl._store(batch, encoder=False)
    s = pearl.rl_replay.slot(repr(batch.tasks[0]))
    assert int(pearl.rl_replay.size[s]) == 8
    assert pearl.rl_replay._data["terminals"][s, :8].tolist() == [0, 1] + [0] * 6
    assert pearl.rl_replay._data["next_obs"][s, :8, 0].tolist() == [1, 2, 7, 8, 9, 10, 11, 99]


def test_adapt_uses_only_the_rows_own_episodes() -> None:
    pearl = make_pearl()
    tasks = BatchedPointRobot().sample_tasks(2, np.random.default_rng(0))
    policy = pearl.exploration_policy(2)
    first = pearl.sampler.sample(policy, tasks, 3)
    adapted = pearl.adapt(policy, first)
    second = pearl.sampler.sample(adapted, tasks, 3)
    adapted2 = pearl.adapt(adapted, second)
    nets = pearl.policy

    def row(b: EpisodeBatch, i: int, r: int) -> torch.Tensor:
        return nets.context(b.obs[i, r], b.actions[i, r], b.rewards[i, r], b.next_obs()[i, r])

    for i, r in [(0, 0), (1, 2)]:
        with torch.no_grad():
            mean, var = nets.encoder.posterior(torch.cat([row(first, i, r), row(second, i, r)]))
        torch.testing.assert_close(adapted2.mean[i, r], mean)
        torch.testing.assert_close(adapted2.var[i, r], var)
    # PEARL's protocol (num_exp_traj_eval=2): the second episode still explores with the prior,
    # its context kept; every episode acts with the mean action
    assert adapted.mean is None and adapted.precision is not None and adapted.episodes == 1
    assert adapted2.episodes == 2
    assert policy.deterministic and adapted.deterministic and adapted2.deterministic
    # a row with a shorter (masked) episode: padded steps do not count
    masked = EpisodeBatch(first.tasks, first.obs, first.actions, first.rewards,
                          first.mask.clone(), first.log_probs, first.final_obs)
    masked.mask[0, 1, 3:] = 0.0
    with torch.no_grad():
        mu, var = nets.encoder(nets.context(first.obs[0, 1], first.actions[0, 1],
                                            first.rewards[0, 1], first.next_obs()[0, 1]))
    expected = product_of_gaussians(mu[:3], var[:3])
    pearl = make_pearl(num_exp_traj_eval=1)  # the same networks; the posterior at once
    got = pearl.adapt(pearl.exploration_policy(2), masked)
    torch.testing.assert_close(got.mean[0, 1], expected[0])


def test_state_dict_round_trip_continues_bit_identically() -> None:
    tasks = BatchedPointRobot().sample_tasks(3, np.random.default_rng(0))
    source = make_pearl()
    source.train_step(tasks[:2])
    buffer = io.BytesIO()
    torch.save({"learner": source.state_dict(), "sampler": source.sampler.state_dict()}, buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    target = make_pearl(seed=5)
    target.load_state_dict(copy.deepcopy(state["learner"]))
    target.sampler.load_state_dict(state["sampler"])
    a, b = source.train_step(tasks[1:]), target.train_step(tasks[1:])
    assert a == b
    for p, q in zip(source.policy.state_dict().values(), target.policy.state_dict().values(),
                    strict=True):
        assert torch.equal(p, q)


def test_every_fixed_training_task_gets_initial_data_before_the_first_iteration(
        compose_config: Callable[..., DictConfig]) -> None:
    exp = build_experiment(compose_config(
        "algo=pearl", "env=point_robot", "model.hidden_sizes=[8]",
        "model.encoder_hidden_sizes=[8]", "algo.num_train_steps_per_itr=1",
        "algo.num_steps_prior=20", "algo.num_extra_rl_steps_posterior=20"))
    pearl, tasks = exp.learner, exp.task_sets.train_tasks
    assert tasks is not None and pearl.train_tasks == tasks and len(tasks) == 80
    first = pearl.train_step(exp.task_sets.train_batch(5))
    assert all(t in pearl.rl_replay and t in pearl.encoder_replay for t in tasks)
    assert first["env_steps"] == 80 * 200 + 5 * 40  # PEARL's initial pool, then the iteration's
    assert pearl.train_step(exp.task_sets.train_batch(5))["env_steps"] == 5 * 40
    with pytest.raises(ValueError, match="max_tasks"):
        make_pearl(train_tasks=tasks, max_tasks=10)


@pytest.mark.parametrize(("kwargs", "name"), [
    ({"num_train_steps_per_itr": 0}, "num_train_steps_per_itr"),
    ({"discount": 0.0}, "discount"), ({"optimizer": None}, "optimizer"),
    ({"embedding_mini_batch_size": 9}, "embedding_mini_batch_size"),
    ({"num_steps_prior": 0, "num_steps_posterior": 0, "num_extra_rl_steps_posterior": 0},
     "num_steps_prior"), ({"lr": -1.0}, "lr"), ({"num_exp_traj_eval": 0}, "num_exp_traj_eval"),
])
def test_bad_constructor_values_raise_value_error_naming_the_parameter(kwargs, name) -> None:
    with pytest.raises(ValueError, match=name):
        make_pearl(**kwargs)


def test_config_builds_with_pearl_model_and_paper_settings(
        compose_config: Callable[..., DictConfig]) -> None:
    cfg = compose_config("algo=pearl", "env=point_robot_sparse")
    assert cfg.model._target_.endswith("pearl_networks") and cfg.model.latent_dim == 5
    assert (cfg.algo.reward_scale, cfg.algo.kl_lambda, cfg.algo.discount) == (100.0, 1.0, 0.9)
    assert (cfg.meta_batch_size, cfg.eval.steps, cfg.eval.num_tasks) == (10, 6, 20)
    assert cfg.algo.num_exp_traj_eval == 5  # oyster's sparse-point-robot.json
    exp = build_experiment(compose_config("algo=pearl", "env=point_robot",
                                          "model.hidden_sizes=[8]",
                                          "model.encoder_hidden_sizes=[8]"))
    assert isinstance(exp.learner, PEARL)
    with pytest.raises(ConfigError, match="algo: .*num_train_steps_per_itr"):
        build_experiment(compose_config("algo=pearl", "algo.num_train_steps_per_itr=0"))

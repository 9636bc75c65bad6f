"""Config matrix: every algo x env (and every experiment preset) composes and builds."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from omegaconf import DictConfig

from metarl_cli.commands import experiment
from metarl_cli.commands.experiment import build_experiment
from metarl_cli.core.build import ConfigError
from metarl_cli.core.paths import CONFIG_DIR


def choices(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))


SMALL = ["eval.num_tasks=2", "meta_batch_size=2"]
DISCRETE_ENVS = {"bandit_k5", "bandit_k10", "bandit_k50", "tabular_mdp"}  # SAC needs Box actions


@pytest.mark.parametrize("algo", choices("algo"))
@pytest.mark.parametrize("env", choices("env"))
def test_every_algo_env_pair_builds(compose_config: Callable[..., DictConfig], algo: str,
                                    env: str) -> None:
    cfg = compose_config(f"algo={algo}", f"env={env}", *SMALL)
    if algo == "pearl" and env in DISCRETE_ENVS:
        with pytest.raises(ConfigError, match="algo=pearl needs continuous"):
            build_experiment(cfg)
        return
    exp = build_experiment(cfg)
    tasks = exp.task_sets.train_batch(2)
    assert len(tasks) == 2
    assert exp.learner.exploration_policy(2) is not None


@pytest.mark.parametrize("experiment", choices("experiment"))
def test_every_experiment_preset_builds(compose_config: Callable[..., DictConfig],
                                        experiment: str) -> None:
    build_experiment(compose_config(f"+experiment={experiment}", *SMALL))


def test_paper_settings_follow_the_env_choice(compose_config: Callable[..., DictConfig]) -> None:
    nav = compose_config()
    assert (nav.algo.inner_lr, nav.meta_batch_size, nav.eval.rollouts) == (0.5, 20, 40)
    cheetah = compose_config("env=halfcheetah_vel")
    assert (cheetah.algo.inner_lr, cheetah.meta_batch_size, cheetah.env.horizon) == (0.1, 40, 200)
    assert compose_config("env=halfcheetah_dir").algo.max_kl == 0.02
    assert compose_config("env=halfcheetah_dir", "algo.max_kl=0.05").algo.max_kl == 0.05



@pytest.mark.parametrize("algo", ["promp", "emaml", "reptile"])
def test_gradient_based_algos_get_the_maml_protocol_on_point_nav(
        compose_config: Callable[..., DictConfig], algo: str) -> None:
    nav = compose_config(f"algo={algo}")
    assert (nav.algo.inner_lr, nav.meta_batch_size, nav.eval.rollouts) == (0.5, 20, 40)
    # HalfCheetahDir: the 32 M environment steps of MAML's 100 iterations (Reptile samples
    # 5 inner batches of 20 tasks x 10 rollouts per iteration, the others 2 of 40 x 20).
    cheetah = compose_config(f"algo={algo}", "env=halfcheetah_dir")
    batches = cheetah.algo.inner_steps if algo == "reptile" else 2
    steps = (cheetah.iterations * batches * cheetah.meta_batch_size
             * cheetah.algo.rollouts_per_task * cheetah.env.horizon)
    assert steps == 32_000_000

@pytest.mark.parametrize(("override", "message"), [
    ("+algo.inner_lrr=0.1", "algo.inner_lrr: unknown key"),
    ("algo.inner_lr=fast", "algo.inner_lr: expected float"),
    ("algo.inner_lr=0", "algo: inner_lr must be > 0"),
    ("algo.outer_step=adam", "algo: outer_step must be one of trpo, vpg"),
    ("model.hidden_sizes=[0]", "model: hidden_sizes"),
    ("env.horizon=0", "env.horizon: expected an integer >= 1"),
    ("iterations=-1", "iterations: expected an integer >= 0"),
    ("meta_batch_size=1.5", "meta_batch_size: expected an integer >= 1"),
    ("env.family.goal_range=-1", "env.family: goal_range must be > 0"),
    ("device=tpu", "device: expected cpu or cuda"),
    ("keep_freed_memory=sometimes", "keep_freed_memory: expected true or false"),
])
def test_bad_values_name_the_key(compose_config: Callable[..., DictConfig], override: str,
                                 message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        build_experiment(compose_config(override))


def test_more_test_tasks_than_a_fixed_list_is_refused(
        compose_config: Callable[..., DictConfig]) -> None:
    with pytest.raises(ConfigError, match="eval.num_tasks<=30"):
        build_experiment(compose_config("env=halfcheetah_vel_pearl", "eval.num_tasks=40"))


@pytest.mark.parametrize("keep", [True, False])
def test_keep_freed_memory_is_applied_only_when_asked(
        compose_config: Callable[..., DictConfig], monkeypatch: pytest.MonkeyPatch,
        keep: bool) -> None:
    calls: list[None] = []
    monkeypatch.setattr(experiment, "keep_freed_memory", lambda: calls.append(None) or True)
    build_experiment(compose_config(f"keep_freed_memory={str(keep).lower()}"))
    assert len(calls) == int(keep)

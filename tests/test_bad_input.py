"""Bad input: each case is refused with one line naming the key and the fix (exit code 2),
before anything runs, and leaves nothing in outputs/."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from metarl_cli.commands.experiment import build_experiment
from metarl_cli.commands.preflight import compose_checked, preflight
from metarl_cli.core.build import ConfigError

# (overrides, the start of the message: the key, then a fragment with the reason or the fix)
CASES = [
    (["algo=nope"], "algo: unknown choice 'nope'", "choose one of", "maml"),
    (["env=nope"], "env: unknown choice 'nope'", "choose one of", "halfcheetah_vel, "),
    (["model=nope"], "model: unknown choice", "choose one of", "mlp"),
    (["optimizer=nope"], "optimizer: unknown choice", "choose one of", "adam, sgd"),
    (["+experiment=nope"], "experiment: unknown choice", "choose one of", "maml17_point_nav"),
    (["nosuch=1"], "nosuch: unknown key", "valid top-level keys:", "meta_batch_size"),
    (["algo.inner_lrr=0.1"], "algo.inner_lrr: unknown key", "valid keys of algo:", "inner_lr,"),
    (["+algo.inner_lrr=0.1"], "algo.inner_lrr: unknown key", "valid keys are", "inner_lr,"),
    (["+nosuch=1"], "nosuch: unknown key", "valid top-level keys:", "meta_batch_size"),
    (["++eval.nosuch=1"], "eval.nosuch: unknown key", "valid keys of eval:", "rollouts"),
    (["+env.nosuch=1"], "env.nosuch: unknown key", "valid keys of env:", "horizon"),
    (["+sampler.nosuch=1"], "sampler.nosuch: unknown key", "valid keys of sampler:",
     "num_threads"),
    (["algo.inner_lr=[1"], "algo.inner_lr=[1: not a valid override", "write key=value", ""),
    (["env.horizon=1,2"], "env.horizon: ambiguous value", "env.horizon=[1,2]", "-m"),
    (["algo.inner_lr=fast"], "algo.inner_lr: expected float", "got 'fast'", ""),
    (["algo.inner_lr=0"], "algo: inner_lr must be > 0", "got 0", ""),
    (["algo.max_kl=-0.1"], "algo: max_kl must be > 0", "", ""),
    (["algo.cg_damping=-1"], "algo: cg_damping must be >= 0", "", ""),
    (["algo.gamma=1.5"], "algo: gamma must be in (0, 1]", "", ""),
    (["algo.outer_step=adam"], "algo: outer_step must be one of", "trpo", ""),
    (["algo.first_order=maybe"], "algo.first_order: expected bool", "", ""),
    (["algo.gamma=${oops}"], "algo.gamma: Interpolation key 'oops' not found", "", ""),
    (["optimizer.lr=0"], "optimizer.lr: expected a learning rate > 0", "", ""),
    (["optimizer=sgd", "optimizer.lr=-0.01"], "optimizer.lr: expected a learning rate > 0",
     "", ""),
    (["model.hidden_sizes=[0]"], "model: hidden_sizes: every layer needs >= 1 unit", "", ""),
    (["model.hidden_sizes=64"], "model.hidden_sizes: expected list", "", ""),
    (["model.activation=Relu"], "model: activation: unknown torch.nn activation", "ReLU", ""),
    (["model.init_std=0"], "model: init_std must be > 0", "", ""),
    (["env.horizon=0"], "env.horizon: expected an integer >= 1", "", ""),
    (["env.family.goal_range=-1"], "env.family: goal_range must be > 0", "", ""),
    (["env.num_test_tasks=0"], "env: num_test_tasks must be >= 1 or null", "", ""),
    (["env=halfcheetah_vel_pearl", "eval.num_tasks=40"], "env: eval.num_tasks=40 is more than",
     "the 30 fixed test tasks", "use eval.num_tasks<=30"),
    (["meta_batch_size=0"], "meta_batch_size: expected an integer >= 1", "", ""),
    (["meta_batch_size=1.5"], "meta_batch_size: expected an integer >= 1", "", ""),
    (["iterations=-1"], "iterations: expected an integer >= 0", "", ""),
    (["eval_every=0"], "eval_every: expected an integer >= 1", "", ""),
    (["eval.num_tasks=0"], "eval.num_tasks: expected an integer >= 1", "", ""),
    (["eval.rollouts=0"], "eval.rollouts: expected an integer >= 1", "", ""),
    (["eval.steps=-1"], "eval.steps: expected an integer >= 0", "", ""),
    (["eval.step_budget=0"], "eval.step_budget: expected an integer >= 1 or null", "", ""),
    (["eval.legacy_task_seed=-1"], "eval.legacy_task_seed: expected an integer in "
                                   "[0, 4294967295] or null", "", ""),
    (["algo=rl2", "env=bandit_k5", "eval.step_budget=100"],
     "eval.step_budget: RL2 adapts one episode at a time", "", "leave eval.step_budget null"),
    (["seed=-1"], "seed: expected an integer in [0, 9223372036854775807]", "", ""),
    (["task_seed=abc"], "task_seed: expected an integer in [0, 9223372036854775807]",
     "got 'abc'", ""),
    (["torch_threads=0"], "torch_threads: expected an integer >= 1 or null", "", ""),
    (["sampler.num_threads=-1"], "sampler.num_threads: expected an integer >= 1 or null", "",
     ""),
    (["device=tpu"], "device: expected cpu or cuda", "", ""),
]


@pytest.mark.parametrize(("overrides", "start", "reason", "fix"), CASES,
                         ids=[" ".join(case[0]) for case in CASES])
def test_bad_input_is_one_line_naming_the_key(overrides: list[str], start: str, reason: str,
                                              fix: str) -> None:
    with pytest.raises(ConfigError) as refused:
        preflight(overrides, multirun=False)  # what `metarl train` checks before Hydra starts
        build_experiment(compose_checked(overrides))  # ... and before the first iteration
    message = str(refused.value)
    assert message.startswith(start), message
    assert reason in message and fix in message, message
    assert "\n" not in message


def test_plus_overrides_compose_where_valid_or_checked_later() -> None:
    assert compose_checked(["++seed=3"]).seed == 3  # ++ overrides an existing key
    assert compose_checked(["+experiment=maml17_point_nav"]).iterations == 100  # a group
    assert compose_checked(["+model.foo=1"]).model.foo == 1  # checked when the model is built


def metarl(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["metarl", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env={**os.environ, **env})


@pytest.mark.parametrize(("args", "message"), [
    (["env=nope"], "error: env: unknown choice 'nope' (there is no env/nope.yaml); choose one "
                   "of ant_dir,"),
    (["iterations=1", "eval.rollouts=0"], "error: eval.rollouts: expected an integer >= 1, "
                                          "got 0"),
    (["resume=no/such/run"], "error: resume: no/such/run is not a run directory"),
    (["resume="], "error: resume: empty; give the run_dir"),
    (["seed=99999999999999999999999"], "error: seed: expected an integer in "
                                       "[0, 9223372036854775807], got 99999999999999999999999"),
    (["seed=${foo}"], "error: seed: Interpolation key 'foo' not found"),
    (["optimizer.lr=nan"], "error: optimizer.lr: expected a learning rate > 0, got nan"),
])
def test_cli_refuses_with_exit_2_and_creates_nothing(tmp_path: Path, args: list[str],
                                                     message: str) -> None:
    result = metarl("train", *args, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith(message) and result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []  # no outputs/, not even Hydra's own files


def test_verbose_shows_the_traceback(tmp_path: Path) -> None:
    result = metarl("train", "--verbose", "eval.num_tasks=-3", cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" in result.stderr
    assert result.stderr.splitlines()[-1] == \
        "error: eval.num_tasks: expected an integer >= 1, got -3"


def test_a_sweep_into_a_directory_that_holds_runs_is_refused(tmp_path: Path) -> None:
    (tmp_path / "sweep" / "seed=0").mkdir(parents=True)
    (tmp_path / "sweep" / "seed=0" / "metrics.jsonl").write_text("{}\n")
    result = metarl("train", "-m", "seed=0,1", f"hydra.sweep.dir={tmp_path / 'sweep'}",
                    cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: hydra.sweep.dir: {tmp_path / 'sweep'} already "
                                    "holds runs of another sweep")
    assert sorted(p.name for p in (tmp_path / "sweep").rglob("*")) == ["metrics.jsonl",
                                                                       "seed=0"]

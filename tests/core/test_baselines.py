"""The linear feature baseline: feature layout, ridge fit per task, masking, singular designs."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import torch

from metarl_cli.core.baselines import fit_linear_baseline, linear_features

REG = 1e-5  # the default ridge term of fit_linear_baseline


def _numpy_features(obs: np.ndarray) -> np.ndarray:
    """[clip(o), clip(o)^2, t/100, (t/100)^2, (t/100)^3, 1] for (T, d) observations."""
    o = np.clip(obs, -10.0, 10.0)
    t = (np.arange(obs.shape[0]) / 100.0)[:, None]
    return np.concatenate([o, o**2, t, t**2, t**3, np.ones_like(t)], axis=1)


def test_linear_features_layout_for_a_known_observation() -> None:
    obs = torch.tensor([[1.0, -2.0], [20.0, 0.5], [-30.0, 3.0]], dtype=torch.float64)
    feats = linear_features(obs)
    expected = torch.tensor([
        # o0,   o1,  o0^2, o1^2,  t,    t^2,       t^3,       1
        [1.0, -2.0, 1.0, 4.0, 0.00, 0.0, 0.0, 1.0],
        [10.0, 0.5, 100.0, 0.25, 0.01, 0.01**2, 0.01**3, 1.0],
        [-10.0, 3.0, 100.0, 9.0, 0.02, 0.02**2, 0.02**3, 1.0],
    ], dtype=torch.float64)
    torch.testing.assert_close(feats, expected)


def test_linear_features_keep_leading_axes_and_restart_time_per_episode() -> None:
    obs = torch.randn(2, 3, 5, 4, dtype=torch.float64)
    feats = linear_features(obs)
    assert feats.shape == (2, 3, 5, 2 * 4 + 4)
    expected_t = torch.arange(5, dtype=torch.float64) / 100.0
    for i in range(2):
        for j in range(3):
            torch.testing.assert_close(feats[i, j, :, 8], expected_t)
            torch.testing.assert_close(feats[i, j], torch.from_numpy(
                _numpy_features(obs[i, j].numpy())))


def test_fit_recovers_returns_that_are_linear_in_the_features_with_per_task_weights() -> None:
    rng = np.random.default_rng(0)
    n, r, t, d = 2, 4, 100, 3  # t up to 0.99 keeps the time columns well scaled
    obs = rng.normal(size=(n, r, t, d))
    weights = rng.normal(size=(n, 2 * d + 4))
    weights[1] *= -3.0  # clearly different weights for task 1
    returns = np.stack([
        np.stack([_numpy_features(obs[i, j]) @ weights[i] for j in range(r)]) for i in range(n)
    ])
    values = fit_linear_baseline(torch.from_numpy(obs), torch.from_numpy(returns),
                                 torch.ones(n, r, t, dtype=torch.float64))
    assert values.shape == (n, r, t)
    np.testing.assert_allclose(values.numpy(), returns, atol=1e-6 * np.abs(returns).max())
    # a single shared fit could not reproduce both tasks
    pooled = fit_linear_baseline(torch.from_numpy(obs.reshape(1, n * r, t, d)),
                                 torch.from_numpy(returns.reshape(1, n * r, t)),
                                 torch.ones(1, n * r, t, dtype=torch.float64))
    assert np.abs(pooled.numpy().reshape(n, r, t) - returns).max() > 0.1


def test_fit_equals_numpy_ridge_solution_on_random_data() -> None:
    rng = np.random.default_rng(1)
    n, r, t, d = 3, 2, 6, 2
    obs = rng.normal(scale=4.0, size=(n, r, t, d))
    returns = rng.normal(size=(n, r, t))
    values = fit_linear_baseline(torch.from_numpy(obs), torch.from_numpy(returns),
                                 torch.ones(n, r, t, dtype=torch.float64))
    for i in range(n):
        x = np.concatenate([_numpy_features(obs[i, j]) for j in range(r)])
        y = returns[i].reshape(-1)
        w = np.linalg.solve(x.T @ x + REG * np.eye(x.shape[1]), x.T @ y)
        np.testing.assert_allclose(values[i].numpy().reshape(-1), x @ w, rtol=1e-7, atol=1e-9)


def test_masked_steps_get_zero_value_and_do_not_influence_the_fit() -> None:
    rng = np.random.default_rng(2)
    n, r, t, d = 2, 3, 8, 2
    obs = rng.normal(size=(n, r, t, d))
    returns = rng.normal(size=(n, r, t))
    lengths = np.array([[8, 3, 5], [1, 6, 8]])
    mask = (np.arange(t) < lengths[..., None]).astype(np.float64)
    values = fit_linear_baseline(torch.from_numpy(obs), torch.from_numpy(returns),
                                 torch.from_numpy(mask)).numpy()
    assert np.all(values[mask == 0] == 0)

    junk_obs, junk_returns = obs.copy(), returns.copy()
    junk_obs[mask == 0] = 1e3
    junk_returns[mask == 0] = -1e4
    junk_values = fit_linear_baseline(torch.from_numpy(junk_obs), torch.from_numpy(junk_returns),
                                      torch.from_numpy(mask)).numpy()
    np.testing.assert_allclose(junk_values, values, rtol=1e-10, atol=1e-12)

    # and it is the ridge fit on the valid rows alone
    for i in range(n):
        rows = [(_numpy_features(obs[i, j])[: lengths[i, j]], returns[i, j, : lengths[i, j]])
                for j in range(r)]
        x = np.concatenate([x for x, _ in rows])
        y = np.concatenate([y for _, y in rows])
        w = np.linalg.solve(x.T @ x + REG * np.eye(x.shape[1]), x.T @ y)
        np.testing.assert_allclose(values[i][mask[i] == 1], x @ w, rtol=1e-7, atol=1e-9)


def test_singular_design_with_all_zero_observations_gives_finite_values() -> None:
    n, r, t, d = 2, 3, 4, 3
    obs = torch.zeros(n, r, t, d)
    returns = torch.arange(n * r * t, dtype=torch.float32).reshape(n, r, t)
    values = fit_linear_baseline(obs, returns, torch.ones(n, r, t))
    assert values.shape == (n, r, t)
    assert values.dtype == torch.float32
    assert torch.isfinite(values).all()



def test_a_fit_with_the_ants_214_features_after_a_thread_count_change() -> None:
    # In torch 2.13's CPU build a batched LU solve of matrices this large raises once the
    # intra-op thread count has changed (the sampler sets it to 1 while sampling); the state
    # sticks to the process, so the check runs in a fresh one.
    code = """
import torch
from metarl_cli.core.baselines import fit_linear_baseline
torch.manual_seed(0)
torch.set_num_threads(1)
torch.set_num_threads(2)
obs, returns = torch.randn(3, 4, 50, 105), torch.randn(3, 4, 50)
values = fit_linear_baseline(obs, returns, torch.ones(3, 4, 50))
assert torch.isfinite(values).all()
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr

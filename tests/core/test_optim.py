"""Conjugate gradient, Hessian-vector products and the TRPO step."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
from torch.distributions import Independent, Normal

from metarl_cli.core.optim import (
    conjugate_gradient,
    gradient_step_kl_product,
    hessian_vector_product,
    trpo_step,
)


def _spd(n: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    m = torch.randn(n, n, generator=gen, dtype=torch.float64)
    return m @ m.T + n * torch.eye(n, dtype=torch.float64)


def test_conjugate_gradient_solves_a_random_spd_system_in_n_iterations() -> None:
    a = _spd(10, seed=0)
    b = torch.randn(10, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    x = conjugate_gradient(lambda v: a @ v, b, iters=10)
    torch.testing.assert_close(x, torch.linalg.solve(a, b), atol=1e-6, rtol=0)


def test_conjugate_gradient_with_too_few_iterations_is_only_approximate() -> None:
    # guards the previous test against a solver that ignores ``iters``
    a = _spd(10, seed=0)
    b = torch.randn(10, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    x = conjugate_gradient(lambda v: a @ v, b, iters=1)
    assert (x - torch.linalg.solve(a, b)).abs().max() > 1e-4


def test_hessian_vector_product_of_a_quadratic_is_a_times_v() -> None:
    a = _spd(6, seed=2)
    gen = torch.Generator().manual_seed(3)
    # the variable is split over two parameter tensors to check the flattening order
    x1 = torch.randn(2, generator=gen, dtype=torch.float64).requires_grad_()
    x2 = torch.randn(2, 2, generator=gen, dtype=torch.float64).requires_grad_()
    x = torch.cat([x1, x2.reshape(-1)])
    hvp = hessian_vector_product(0.5 * x @ a @ x, [x1, x2])
    for _ in range(3):  # the product can be taken repeatedly from one graph
        v = torch.randn(6, generator=gen, dtype=torch.float64)
        torch.testing.assert_close(hvp(v), a @ v)


# ------------------------------------------------------------------ TRPO on a Gaussian policy
@dataclass
class GaussianProblem:
    """A linear-Gaussian policy on fixed observations, actions and advantages."""

    weight: torch.Tensor
    log_std: torch.Tensor
    obs: torch.Tensor
    actions: torch.Tensor
    advantages: torch.Tensor
    old_mean: torch.Tensor
    old_log_std: torch.Tensor

    @property
    def params(self) -> list[torch.Tensor]:
        return [self.weight, self.log_std]

    def dist(self) -> Independent:
        return Independent(Normal(self.obs @ self.weight.T, self.log_std.exp()), 1)

    def old_dist(self) -> Independent:
        return Independent(Normal(self.old_mean, self.old_log_std.exp()), 1)

    def loss(self, differentiable: bool = True) -> torch.Tensor:
        ratio = torch.exp(self.dist().log_prob(self.actions)
                          - self.old_dist().log_prob(self.actions))
        return -(ratio * self.advantages).mean()

    def kl(self, differentiable: bool = True) -> torch.Tensor:
        return torch.distributions.kl_divergence(self.old_dist(), self.dist()).mean()

    def objective(self, differentiable: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        return self.loss(differentiable), self.kl(differentiable)


@pytest.fixture
def problem() -> GaussianProblem:
    gen = torch.Generator().manual_seed(4)
    obs = torch.randn(64, 3, generator=gen, dtype=torch.float64)
    weight = (0.3 * torch.randn(2, 3, generator=gen, dtype=torch.float64)).requires_grad_()
    log_std = torch.full((2,), -0.5, dtype=torch.float64, requires_grad=True)
    with torch.no_grad():
        mean = obs @ weight.T
        actions = mean + log_std.exp() * torch.randn(64, 2, generator=gen, dtype=torch.float64)
    advantages = torch.randn(64, generator=gen, dtype=torch.float64)
    return GaussianProblem(weight, log_std, obs, actions, advantages, mean.clone(),
                           log_std.detach().clone())


def _gaussian_kl(mu0: torch.Tensor, log_std0: torch.Tensor, mu1: torch.Tensor,
                 log_std1: torch.Tensor) -> float:
    """Mean over rows of KL(N(mu0, s0) || N(mu1, s1)) for diagonal Gaussians, in closed form."""
    var0, var1 = torch.exp(2 * log_std0), torch.exp(2 * log_std1)
    per_dim = log_std1 - log_std0 + (var0 + (mu0 - mu1) ** 2) / (2 * var1) - 0.5
    return per_dim.sum(-1).mean().item()


@pytest.mark.parametrize("max_kl", [1e-3, 1e-2])
def test_trpo_step_keeps_kl_within_the_bound_and_lowers_the_loss(problem, max_kl) -> None:
    before = problem.loss().item()
    out = trpo_step(problem.params, problem.objective, max_kl=max_kl)
    assert out["optim/accepted"] == 1.0
    with torch.no_grad():
        new_mean = problem.obs @ problem.weight.T
        kl = _gaussian_kl(problem.old_mean, problem.old_log_std, new_mean, problem.log_std)
        after = problem.loss().item()
    assert 0 < kl <= max_kl
    assert kl == pytest.approx(out["optim/kl"], rel=1e-9)
    # the bound is used, not far undershot: the first or an early backtracking step is taken
    assert kl > 0.1 * max_kl
    assert after < before
    assert out["loss/surrogate_before"] == pytest.approx(before)
    assert out["loss/surrogate_after"] == pytest.approx(after)
    assert 1 <= out["optim/line_search_steps"] <= 15


def test_trpo_step_that_never_improves_leaves_params_unchanged(problem) -> None:
    start = [p.detach().clone() for p in problem.params]

    def flat_loss(differentiable: bool) -> torch.Tensor:
        # a nonzero gradient, but the value is the same constant at every parameter value
        return 1.0 + sum((p - p.detach()).sum() for p in problem.params)

    out = trpo_step(problem.params, lambda d: (flat_loss(d), problem.kl(d)), max_kl=0.01,
                    line_search_steps=5)
    assert out["optim/accepted"] == 0.0
    assert out["optim/line_search_steps"] == 5
    for p, p0 in zip(problem.params, start, strict=True):
        assert torch.equal(p.detach(), p0)


def test_trpo_step_rejects_steps_that_raise_the_loss(problem) -> None:
    start = [p.detach().clone() for p in problem.params]

    def lying_loss(differentiable: bool) -> torch.Tensor:
        # the gradient points one way, the values seen by the line search go the other
        return problem.loss() if differentiable else -problem.loss() + 1.0

    out = trpo_step(problem.params, lambda d: (lying_loss(d), problem.kl(d)), max_kl=0.01)
    assert out["optim/accepted"] == 0.0
    for p, p0 in zip(problem.params, start, strict=True):
        assert torch.equal(p.detach(), p0)


def test_trpo_step_with_zero_gradient_is_a_no_op(problem) -> None:
    start = [p.detach().clone() for p in problem.params]

    def stationary_loss(differentiable: bool) -> torch.Tensor:
        return 0.0 * problem.loss()

    out = trpo_step(problem.params, lambda d: (stationary_loss(d), problem.kl(d)),
                    max_kl=0.01)
    assert out["optim/accepted"] == 0.0
    for p, p0 in zip(problem.params, start, strict=True):
        assert torch.equal(p.detach(), p0)


# ------------------------------------------------------------------ KL curvature through a step
def _one_step_problem(seed: int) -> tuple[list[torch.Tensor], Callable[..., list[torch.Tensor]],
                                          Callable[[list[torch.Tensor]], torch.Tensor]]:
    """theta -> per-task adapted params (one gradient step on each task's own policy-gradient
    loss, a linear-tanh Gaussian policy) and the mean KL from the adapted policies' own
    distribution, so the KL's gradient vanishes at the start as at a TRPO step's start."""
    gen = torch.Generator().manual_seed(seed)
    n, b = 3, 16
    obs = torch.randn(n, b, 3, generator=gen, dtype=torch.float64)
    post_obs = torch.randn(n, b, 3, generator=gen, dtype=torch.float64)
    actions = torch.randn(n, b, 2, generator=gen, dtype=torch.float64)
    advantages = torch.randn(n, b, generator=gen, dtype=torch.float64)
    theta = [(0.5 * torch.randn(2, 3, generator=gen, dtype=torch.float64)).requires_grad_(),
             torch.full((2,), -0.3, dtype=torch.float64, requires_grad=True)]

    def dist(w: torch.Tensor, log_std: torch.Tensor, x: torch.Tensor) -> Independent:
        mean = torch.tanh(torch.einsum("nij,nbj->nbi", w, x))
        return Independent(Normal(mean, log_std.exp().unsqueeze(1).expand_as(mean)), 1)

    def adapt(task_params: list[torch.Tensor], second_order: bool = True) -> list[torch.Tensor]:
        w, log_std = task_params
        loss = -(dist(w, log_std, obs).log_prob(actions) * advantages).mean(1).sum()
        grads = torch.autograd.grad(loss, task_params, create_graph=second_order)
        return [p - 0.3 * g for p, g in zip(task_params, grads, strict=True)]

    start = [p.detach().unsqueeze(0).expand(n, *p.shape).clone().requires_grad_()
             for p in theta]
    old = dist(*[t.detach() for t in adapt(start, second_order=False)], post_obs)

    def kl(adapted: list[torch.Tensor]) -> torch.Tensor:
        return torch.distributions.kl_divergence(old, dist(*adapted, post_obs)).mean()

    return theta, adapt, kl


def _expanded(theta: list[torch.Tensor], n: int = 3) -> list[torch.Tensor]:
    return [p.unsqueeze(0).expand(n, *p.shape) for p in theta]


@pytest.mark.parametrize("second_order", [True, False])
def test_gradient_step_kl_product_equals_the_full_hessian_vector_product(second_order) -> None:
    theta, adapt, kl = _one_step_problem(seed=5)
    full = hessian_vector_product(kl(adapt(_expanded(theta), second_order)), theta)
    task_params = [p.detach().clone().requires_grad_() for p in _expanded(theta)]
    fast = gradient_step_kl_product(task_params, adapt(task_params, second_order), kl)
    gen = torch.Generator().manual_seed(6)
    for _ in range(3):
        v = torch.randn(8, generator=gen, dtype=torch.float64)
        expected = full(v)
        assert expected.abs().max() > 1e-3
        torch.testing.assert_close(fast(v), expected, rtol=1e-9, atol=1e-12)


def test_the_second_order_step_changes_the_curvature() -> None:
    # guards the test above: the inner step's Hessian really enters the product
    theta, adapt, kl = _one_step_problem(seed=5)
    v = torch.randn(8, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    second = hessian_vector_product(kl(adapt(_expanded(theta), True)), theta)(v)
    first = hessian_vector_product(kl(adapt(_expanded(theta), False)), theta)(v)
    assert (second - first).abs().max() > 1e-3 * first.abs().max()


def test_gradient_step_kl_product_at_a_given_point_uses_that_point_for_the_kl() -> None:
    # adapted from other data (a subsample) but the KL taken at the full step's point: the
    # product is J_sub^T F J_sub, the Hessian of the KL of at + (adapted_sub - its value)
    theta, adapt, kl = _one_step_problem(seed=5)
    at = [t.detach() for t in adapt([p.detach().requires_grad_() for p in _expanded(theta)],
                                    second_order=False)]

    def adapt_sub(task_params: list[torch.Tensor]) -> list[torch.Tensor]:
        return [p + 0.2 * p**2 for p in task_params]  # any map with a non-identity Jacobian

    shifted = [a + s - s.detach() for a, s in zip(at, adapt_sub(_expanded(theta)), strict=True)]
    full = hessian_vector_product(kl(shifted), theta)
    task_params = [p.detach().clone().requires_grad_() for p in _expanded(theta)]
    fast = gradient_step_kl_product(task_params, adapt_sub(task_params), kl, at=at)
    plain = gradient_step_kl_product(task_params, adapt_sub(task_params), kl)
    v = torch.randn(8, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    torch.testing.assert_close(fast(v), full(v), rtol=1e-9, atol=1e-12)
    assert (plain(v) - fast(v)).abs().max() > 1e-3 * fast(v).abs().max()

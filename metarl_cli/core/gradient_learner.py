"""What the gradient-based meta-learners (MAML, E-MAML, ProMP, Reptile) share, written once.

They differ in their outer objectives. They share how a policy adapts (the
:class:`AdaptationRule`: the same policy-gradient steps in the training inner loop and at
meta-test), the outer update of an objective differentiated through adaptation (a TRPO step
with the :class:`TrustRegion` settings, or full-batch steps of a torch optimizer), the cheaper
KL curvature for one inner step, and the layout of their checkpoints (one entry per stateful
part). The learners compose these records; none of them inherits from another.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from metarl_cli.core.adaptation import (
    AdaptationData,
    LearnedStepSizes,
    StepSchedule,
    StepSize,
    adapt_policy,
    adapted_params,
    check_estimator,
    inner_step,
    mean_kl,
    optimizer_update,
    sample_and_adapt,
)
from metarl_cli.core.checks import (
    check_choice,
    check_non_negative,
    check_positive,
    check_unit_interval,
)
from metarl_cli.core.functional import Params, PerTaskPolicy, broadcast_policy, task_distribution
from metarl_cli.core.optim import gradient_step_kl_product, trpo_step
from metarl_cli.core.returns import policy_gradient_advantages
from metarl_cli.core.sampler import Sampler
from metarl_cli.core.types import EpisodeBatch
from metarl_cli.policies.gaussian_curvature import closed_form_layout, gaussian_mlp_kl_product

KLCurvature = Callable[[], Callable[[torch.Tensor], torch.Tensor]]
Stateful = nn.Module | torch.optim.Optimizer
# How TRPO gets the KL's Hessian-vector products: "closed_form" writes them out for the
# Gaussian MLP policy (policies/gaussian_curvature.py) where that applies and is otherwise
# "gradient_step"; "gradient_step" uses core/optim.py:gradient_step_kl_product where it is
# exact (one inner step with one step size) and autograd elsewhere; "autograd" always
# differentiates the KL twice.
CURVATURES = ("closed_form", "gradient_step", "autograd")


# ----------------------------------------------------------------------------- adaptation
@dataclass(frozen=True)
class AdaptationRule:
    """How a gradient-based learner adapts ``policy``: policy-gradient steps with GAE(gamma,
    gae_lambda) advantages and the ``estimator`` inner loss; step k's size is ``learned`` (per
    parameter entry, Meta-SGD) when given, else ``schedule(k)``. One record serves the training
    inner loop and meta-test, so the two cannot drift apart."""

    policy: nn.Module
    schedule: StepSchedule
    gamma: float
    gae_lambda: float
    estimator: str = "log_likelihood"
    learned: LearnedStepSizes | None = None

    def __post_init__(self) -> None:
        check_unit_interval(gamma=self.gamma, gae_lambda=self.gae_lambda)
        check_estimator(self.estimator)

    def step_size(self, step: int) -> StepSize:
        """Inner step size of adaptation step ``step``: learned or from the schedule."""
        return self.schedule(step) if self.learned is None else self.learned.for_step(step)

    def exploration_policy(self, num_tasks: int) -> PerTaskPolicy:
        """The meta-policy, acting for ``num_tasks`` tasks before any adaptation."""
        return broadcast_policy(self.policy, num_tasks)

    def adapt(self, policy: PerTaskPolicy, episodes: EpisodeBatch) -> PerTaskPolicy:
        """One policy-gradient step per task on ``episodes``, collected by ``policy``."""
        advantages = policy_gradient_advantages(episodes, self.gamma, self.gae_lambda)
        return adapt_policy(policy, episodes, advantages, self.step_size(policy.step),
                            self.estimator)

    def sample_and_adapt(self, sampler: Sampler, tasks: Sequence[Any], rollouts: int,
                         steps: int, sample_post: bool = True) -> AdaptationData:
        """The inner loop of a meta-iteration (core/adaptation.py:sample_and_adapt)."""
        return sample_and_adapt(self.policy, sampler, tasks, rollouts, steps, self.step_size,
                                self.gamma, self.gae_lambda, self.estimator, sample_post)

    def adapted_params(self, data: AdaptationData, second_order: bool) -> list[Params]:
        """theta_0 .. theta_K as functions of the policy's parameters, for the outer step."""
        return adapted_params(self.policy, data, self.step_size, second_order, self.estimator)

    def kl_curvature(self, data: AdaptationData, second_order: bool, subsample: float = 1.0,
                     closed_form: bool = False) -> KLCurvature | None:
        """The outer KL's Hessian-vector product (KL on ``data.post``) in the cheaper form of
        :func:`~metarl_cli.core.optim.gradient_step_kl_product` where it is exact: one inner
        step with one step size for all entries (the paper's setting). None elsewhere, where
        TRPO falls back to its autograd product. With ``closed_form`` the product is the one
        written out for the Gaussian MLP policy where that applies (log-likelihood inner loss;
        :func:`~metarl_cli.policies.gaussian_curvature.closed_form_layout`).

        With ``subsample`` < 1 the product is estimated on the first ceil(subsample * R) of
        each task's R rollouts, before and after adaptation, at the full step's point."""
        lr = self.step_size(0)
        if len(data.batches) != 1 or isinstance(lr, dict):
            return None
        batch, advantages, post, old = (data.batches[0], data.advantages[0], data.post,
                                        data.post_dist)
        assert post is not None and old is not None
        at = None
        if subsample < 1.0:
            count = math.ceil(subsample * batch.obs.shape[1])
            batch, advantages = batch.first_rollouts(count), advantages[:, :count]
            post = post.first_rollouts(math.ceil(subsample * post.obs.shape[1]))
            at = list(data.acting[-1].params.values())
            with torch.no_grad():
                old = task_distribution(self.policy, data.acting[-1].params, post.obs)
        if (closed_form and self.estimator == "log_likelihood"
                and closed_form_layout(self.policy) is not None):
            return lambda: gaussian_mlp_kl_product(self.policy, batch, advantages, lr, post,
                                                   data.acting[-1].params, second_order)

        def build() -> Callable[[torch.Tensor], torch.Tensor]:
            params = {n: p.detach().unsqueeze(0).expand(len(batch.tasks), *p.shape).clone()
                      .requires_grad_() for n, p in self.policy.named_parameters()}
            adapted = inner_step(self.policy, params, batch, advantages, lr,
                                 create_graph=second_order, estimator=self.estimator)
            names = list(adapted)
            return gradient_step_kl_product(
                list(params.values()), list(adapted.values()),
                lambda ps: mean_kl(self.policy, dict(zip(names, ps, strict=True)), post, old),
                at)

        return build


# ----------------------------------------------------------------------------- outer step
@dataclass(frozen=True)
class TrustRegion:
    """The settings of a TRPO outer step (core/optim.py:trpo_step), checked on construction."""

    max_kl: float
    cg_iters: int
    cg_damping: float
    line_search_steps: int
    backtrack_ratio: float
    cg_subsample: float = 1.0  # fraction of each task's rollouts the curvature is taken on

    def __post_init__(self) -> None:
        check_positive(max_kl=self.max_kl, cg_iters=self.cg_iters,
                       line_search_steps=self.line_search_steps)
        check_non_negative(cg_damping=self.cg_damping)
        check_unit_interval(backtrack_ratio=self.backtrack_ratio, cg_subsample=self.cg_subsample)

    def curvature(self, rule: AdaptationRule, data: AdaptationData, second_order: bool,
                  choice: str) -> KLCurvature | None:
        """TRPO's KL curvature for ``choice`` (one of CURVATURES): the rule's cheaper product,
        on ``cg_subsample`` of the rollouts, or None for autograd's product of the KL."""
        if choice == "autograd":
            return None
        return rule.kl_curvature(data, second_order, self.cg_subsample,
                                 closed_form=choice == "closed_form")


def check_curvature(choice: str, trust_region: TrustRegion, one_plain_step: bool) -> None:
    """``choice`` is one of CURVATURES, and a subsampled curvature (cg_subsample < 1) is
    possible: only the closed_form and gradient_step products subsample, and they are exact
    (so used) only for one inner step with one step size for all entries (``one_plain_step``)."""
    check_choice("curvature", choice, CURVATURES)
    if trust_region.cg_subsample < 1.0 and not (choice != "autograd" and one_plain_step):
        raise ValueError("cg_subsample < 1 needs curvature=closed_form or gradient_step with "
                         "inner_steps=1 and learn_inner_lr=false; set cg_subsample=1.0 otherwise")


def outer_update(params: list[torch.Tensor],
                 objective: Callable[[bool], tuple[torch.Tensor, torch.Tensor]],
                 optimizer: torch.optim.Optimizer | None, trust_region: TrustRegion,
                 epochs: int = 1, curvature: KLCurvature | None = None) -> dict[str, float]:
    """The outer step on an objective differentiated through adaptation, with its metrics.

    Without ``optimizer``: one TRPO step on ``params`` (``curvature`` as in trpo_step). With
    it: ``epochs`` full-batch steps of ``optimizer`` on the loss, then the KL the step moved
    the adapted policies by. ``objective(differentiable)`` recomputes the loss and the KL from
    the current parameters (see trpo_step).
    """
    if optimizer is None:
        return trpo_step(params, objective, trust_region.max_kl, trust_region.cg_iters,
                         trust_region.cg_damping, trust_region.line_search_steps,
                         trust_region.backtrack_ratio, curvature)
    before = optimizer_update(optimizer, lambda: objective(True)[0], epochs)
    return {"loss/surrogate_before": before, "optim/kl": objective(False)[1].item()}


# ----------------------------------------------------------------------------- checkpoints
def parts_state_dict(**parts: Stateful | None) -> dict[str, Any]:
    """A learner's checkpoint: each present part's state under its keyword (parts that are
    None are left out), so a checkpoint holds exactly what the learner was configured with."""
    return {name: part.state_dict() for name, part in parts.items() if part is not None}


def load_parts_state_dict(state: Mapping[str, Any], **parts: Stateful | None) -> None:
    """Restore each present part from its entry of a :func:`parts_state_dict` checkpoint."""
    for name, part in parts.items():
        if part is not None:
            part.load_state_dict(state[name])

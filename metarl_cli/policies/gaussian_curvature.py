"""The KL curvature of MAML's TRPO step, written out for the Gaussian MLP policy.

TRPO's conjugate gradient takes ten products of the outer KL's Hessian with a vector per
meta-iteration, and they were 85% of a MAML-TRPO iteration's outer step. The Hessian is
sum_i J_i^T F_i J_i (core/optim.py:gradient_step_kl_product): J_i = I - lr H_i is the Jacobian
of task i's one inner gradient step, with H_i the Hessian of its inner loss
-mean(A log pi(a|s)), and F_i is the KL's Hessian at the adapted parameters. At the TRPO point
the new distribution equals the old one, so F_i is the Fisher information of the diagonal
Gaussian in the network's outputs: 1 / sigma^2 for each mean, 2 for each log-std, nothing
between them.

With the activations of the MLP evaluated once at the point (each layer's input and the
hidden activations' derivatives), every product is a fixed sequence of batched matrix
products: a forward tangent pass (J_mu u), a backward pass, and for H_i the backward pass's own
tangent (forward-over-reverse, by hand). Autograd computes the same products by
differentiating twice, with much more elementwise work on the (tasks, steps, units)
activations; the written-out form was 2.2x faster per product on the HalfCheetah batch
(docs/PERFORMANCE.md) and equals autograd's to float rounding (tests).

It applies to :class:`~metarl_cli.policies.mlp.GaussianMLPPolicy` with ReLU or Tanh hidden
layers, one inner step with one step size and the log-likelihood inner loss; the learners fall
back to the autograd products elsewhere (core/gradient_learner.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from metarl_cli.core.functional import Params
from metarl_cli.core.types import EpisodeBatch
from metarl_cli.policies.mlp import GaussianMLPPolicy

Product = Callable[[torch.Tensor], torch.Tensor]
Tensors = list[torch.Tensor]


@dataclass(frozen=True)
class Layout:
    """Where a Gaussian MLP policy keeps its parameters: the linear layers' weight and bias
    names in order, and whether the hidden activation is tanh (else ReLU)."""

    weights: list[str]
    biases: list[str]
    tanh: bool

    def layers(self, params: Params) -> tuple[Tensors, Tensors]:
        """The weights and the biases of ``params``, in layer order."""
        return [params[k] for k in self.weights], [params[k] for k in self.biases]


def closed_form_layout(policy: nn.Module) -> Layout | None:
    """The policy's layout if the written-out product applies to it, else None."""
    if not isinstance(policy, GaussianMLPPolicy):
        return None
    layers = list(policy.mean)
    activations = {type(m) for m in layers if not isinstance(m, nn.Linear)}
    if activations not in (set(), {nn.ReLU}, {nn.Tanh}):
        return None
    linear = [i for i, m in enumerate(layers) if isinstance(m, nn.Linear)]
    return Layout([f"mean.{i}.weight" for i in linear], [f"mean.{i}.bias" for i in linear],
                  activations == {nn.Tanh})


class _Pass:
    """The mean network of N tasks evaluated at fixed per-task parameters (weights (N, out,
    in), biases (N, out)) on inputs (N, n, in), keeping what the linearised passes need."""

    def __init__(self, weights: Tensors, biases: Tensors, x: torch.Tensor, tanh: bool) -> None:
        self.weights, self.tanh = weights, tanh
        self.inputs = [x]  # each linear layer's input
        self.slopes: Tensors = []  # each hidden activation's derivative at its input
        self.bends: Tensors = []  # and its second derivative (tanh only; ReLU's is 0)
        h = x
        for i, (w, b) in enumerate(zip(weights, biases, strict=True)):
            z = torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2))
            if i == len(weights) - 1:
                self.output = z
                break
            if tanh:
                h = torch.tanh(z)
                slope = 1 - h * h
                self.bends.append(-2 * h * slope)
            else:
                slope = (z > 0).to(z.dtype)
                h = z * slope
            self.slopes.append(slope)
            self.inputs.append(h)

    def tangent(self, dw: Tensors, db: Tensors) -> tuple[Tensors, Tensors, torch.Tensor]:
        """The tangents, in parameter direction (dw, db), of the hidden pre-activations (tanh
        only), of each linear layer's input after the first, and of the output."""
        dzs: Tensors = []
        dhs: Tensors = []
        last = len(self.weights) - 1
        for i, w in enumerate(self.weights):
            dz = torch.baddbmm(db[i].unsqueeze(1), self.inputs[i], dw[i].transpose(1, 2))
            if i > 0:
                dz.baddbmm_(dhs[-1], w.transpose(1, 2))
            if i == last:
                return dzs, dhs, dz
            if self.tanh:
                dzs.append(dz)
                dhs.append(dz * self.slopes[i])
            else:
                dhs.append(dz.mul_(self.slopes[i]))
        raise AssertionError("unreachable: the loop returns at the last layer")

    def cotangents(self, g: torch.Tensor) -> tuple[Tensors, Tensors]:
        """Backpropagating the output's cotangent g: each layer's output cotangent, and (tanh)
        the curvature terms (g_{i+1} W_{i+1}) * tanh''(z_i) of the backward pass's tangent."""
        gs: Tensors = [g]
        curls: Tensors = []
        for i in range(len(self.weights) - 1, 0, -1):
            back = torch.bmm(gs[0], self.weights[i])
            if self.tanh:
                curls.insert(0, back * self.bends[i - 1])
            gs.insert(0, back.mul_(self.slopes[i - 1]))
        return gs, curls

    def vjp(self, g: torch.Tensor) -> tuple[Tensors, Tensors]:
        """J^T g: the weights' and biases' cotangents for the output's cotangent g."""
        gs, _ = self.cotangents(g)
        return ([torch.bmm(gi.transpose(1, 2), x) for gi, x in zip(gs, self.inputs, strict=True)],
                [gi.sum(1) for gi in gs])


def _flat(batch: EpisodeBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Observations (N, n, obs), actions (N, n, act) and each step's weight in its task's
    mean, mask / valid steps (N, n), with the rollout and time axes merged into n."""
    n = batch.obs.shape[0]
    mask = batch.mask.reshape(n, -1)
    return (batch.obs.reshape(n, -1, batch.obs.shape[-1]),
            batch.actions.reshape(n, -1, batch.actions.shape[-1]),
            mask / mask.sum(1, keepdim=True).clamp_min(1.0))


def gaussian_mlp_kl_product(policy: nn.Module, batch: EpisodeBatch, advantages: torch.Tensor,
                            lr: float, post: EpisodeBatch, at: Params, second_order: bool
                            ) -> Product:
    """v -> sum_i J_i^T F_i J_i v (module docstring), in the policy's flat parameter order.

    J_i is the Jacobian of one step of size ``lr`` on task i's log-likelihood loss over
    ``batch`` with ``advantages`` from the policy's current parameters (the identity when not
    ``second_order``); F_i the Fisher of the mean KL over ``post`` (averaged over each task's
    valid steps, then over tasks) at the adapted parameters ``at`` (leading task axis).
    """
    layout = closed_form_layout(policy)
    if layout is None:
        raise ValueError("the closed-form KL curvature needs a GaussianMLPPolicy with ReLU or "
                         "Tanh hidden layers; use curvature=gradient_step")
    names = [name for name, _ in policy.named_parameters()]
    sizes = [p.numel() for _, p in policy.named_parameters()]
    shapes = [p.shape for _, p in policy.named_parameters()]
    num_tasks = post.obs.shape[0]

    # the Fisher at the adapted parameters, on the post-adaptation steps
    post_x, _, post_weight = _flat(post)
    fisher_pass = _Pass(*layout.layers(at), post_x, layout.tanh)
    fisher_weight = (post_weight / num_tasks).unsqueeze(-1) * torch.exp(-2 * at["log_std"]
                                                                         ).unsqueeze(1)
    fisher_log_std = 2 * post_weight.sum(1, keepdim=True) / num_tasks

    def fisher(u: Params) -> Params:
        _, _, dmu = fisher_pass.tangent(*layout.layers(u))
        dw, db = fisher_pass.vjp(fisher_weight * dmu)
        return {**dict(zip(layout.weights, dw, strict=True)),
                **dict(zip(layout.biases, db, strict=True)),
                "log_std": fisher_log_std * u["log_std"]}

    jacobian = (_inner_jacobian(policy, layout, batch, advantages, lr, num_tasks)
                if second_order else None)

    def product(v: torch.Tensor) -> torch.Tensor:
        u = {name: x.view(shape).expand(num_tasks, *shape)
             for name, x, shape in zip(names, torch.split(v, sizes), shapes, strict=True)}
        out = fisher(u if jacobian is None else jacobian(u))
        if jacobian is not None:
            out = jacobian(out)
        return torch.cat([out[name].sum(0).reshape(-1) for name in names])

    return product


def _inner_jacobian(policy: nn.Module, layout: Layout, batch: EpisodeBatch,
                    advantages: torch.Tensor, lr: float, num_tasks: int
                    ) -> Callable[[Params], Params]:
    """u -> u - lr H_i u per task, H_i the Hessian of -mean(A log pi(a|s)) over task i's
    valid steps of ``batch`` at the policy's current parameters."""
    params = {name: p.detach().unsqueeze(0).expand(num_tasks, *p.shape)
              for name, p in policy.named_parameters()}
    x, actions, weight = _flat(batch)
    weight = (weight * advantages.reshape(num_tasks, -1)).unsqueeze(-1)
    net = _Pass(*layout.layers(params), x, layout.tanh)
    inv_var = torch.exp(-2 * params["log_std"]).unsqueeze(1)  # (N, 1, act)
    residual = actions - net.output  # a - mu
    gs, curls = net.cotangents(-weight * residual * inv_var)  # d loss / d mu, backpropagated

    def hessian(u: Params) -> Params:
        dw, db = layout.layers(u)
        dzs, dhs, dmu = net.tangent(dw, db)
        d_log_std = u["log_std"].unsqueeze(1)
        # the loss's gradient in mu and in log-std, differentiated in the direction u
        dg = weight * inv_var * (dmu + 2 * residual * d_log_std)
        out = {"log_std": (2 * weight * residual * inv_var * (dmu + residual * d_log_std)
                           ).sum(1)}
        for i in range(len(net.weights) - 1, -1, -1):
            grad_w = torch.bmm(dg.transpose(1, 2), net.inputs[i])
            out[layout.biases[i]] = dg.sum(1)
            if i == 0:
                out[layout.weights[i]] = grad_w
                break
            out[layout.weights[i]] = grad_w.baddbmm_(gs[i].transpose(1, 2), dhs[i - 1])
            dg = torch.bmm(dg, net.weights[i]).baddbmm_(gs[i], dw[i]).mul_(net.slopes[i - 1])
            if layout.tanh:
                dg.addcmul_(curls[i - 1], dzs[i - 1])
        return out

    def jacobian(u: Params) -> Params:
        hu = hessian(u)
        return {name: u[name] - lr * hu[name] for name in u}

    return jacobian

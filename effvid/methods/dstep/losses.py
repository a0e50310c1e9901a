"""D-STEP's loss terms (Eq. 3), offered to the trainer through ``DStep.loss_terms()``.

``L = L_task + lambda(e) L_spar + gamma L_bound``; a config lists them as ``losses: [{name: ce},
{name: sparsity}, {name: bound, weight: gamma}]``. The schedules live in the model's settings
(:class:`~effvid.methods.dstep.settings.LossSettings`) and read the step's fractional epoch.

* ``sparsity``: ``lambda(e) * (F / F_S - D)^2``. ``F`` is the batch mean of each clip's cost
  (every frame's stem, blocks with their masks and policies, and classifier) and ``F_S`` the
  plain backbone's (the static TSN/TSM the model starts from), so D is the fraction of the
  static model's cost the whole dynamic model may spend. ``F`` is the executed cost in the
  forward pass (what inference will report) with Eq. (2)'s straight-through gradient in the
  backward pass. ``lambda(e) = 0`` for the first K (``warmup_epochs``) epochs, then
  ``alpha * exp(beta * e)`` with ``e`` the epoch as the paper writes it (not shifted by K); the
  term's logged value is the weighted one, so it reads 0 during warm-up.
* ``bound``: the bound loss of Li et al. (DGNet), which the paper adopts: with ``rho_l`` the
  batch mean of block ``l``'s spatial density and ``t`` the target density (``sqrt(D)`` by
  default: spatial and channel sparsity multiply),
  ``mean_l [relu(p t - rho_l)^2 + relu(rho_l - (1 - p + p t))^2]``, where
  ``p(e) = exp(-bound_rate * e)`` starts at 1 (every block pinned to ``t``) and relaxes the
  bounds towards ``[0, 1]``. The rate defaults to DGNet's 0.05 per epoch: the authors' code
  meant to read ``--bound_reg_alpha 5e-2`` but reads a flag worth 2.0, which removes the bound
  after two epochs (``implementations.md`` 4.4); any rate is a setting.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from effvid.methods.dstep.settings import LossSettings

if TYPE_CHECKING:
    from effvid.engine.losses import LossContext


def sparsity_lambda(epoch: float, *, alpha: float, beta: float, warmup_epochs: float) -> float:
    """``lambda(e)``: 0 before ``warmup_epochs``, then ``alpha * exp(beta * epoch)``."""
    return 0.0 if epoch < warmup_epochs else alpha * math.exp(beta * epoch)


def sparsity_loss(flops_ratio: Tensor, target: float) -> Tensor:
    """``(F / F_S - D)^2`` with ``F / F_S`` the batch mean of the per-clip ratios ``(B,)``."""
    return (flops_ratio.mean() - target) ** 2


def bound_relaxation(epoch: float, rate: float) -> float:
    """``p(e) = exp(-rate * e)``."""
    return math.exp(-rate * epoch)


def bound_loss(density: Tensor, *, target: float, relaxation: float) -> Tensor:
    """The bound loss of block densities ``(B, L)`` (module docstring)."""
    rho = density.mean(dim=0)
    low = relaxation * target
    high = 1.0 - relaxation + relaxation * target
    return (torch.relu(low - rho) ** 2 + torch.relu(rho - high) ** 2).mean()


def bound_target(settings: LossSettings) -> float:
    """``t``: ``sqrt(D)`` or ``D`` (``settings.bound_target``)."""
    return math.sqrt(settings.target) if settings.bound_target == "sqrt" else settings.target


def sparsity_term(settings: LossSettings) -> Callable[[LossContext], Tensor]:
    """``lambda(e) L_spar`` of a step's decisions (module docstring)."""

    def term(ctx: LossContext) -> Tensor:
        weight = sparsity_lambda(ctx.epoch, alpha=settings.alpha, beta=settings.beta,
                                 warmup_epochs=settings.warmup_epochs)
        return weight * sparsity_loss(ctx.decisions["flops_ratio"], settings.target)

    return term


def bound_term(settings: LossSettings) -> Callable[[LossContext], Tensor]:
    """``L_bound`` of a step's spatial densities (module docstring); weight it by gamma."""

    def term(ctx: LossContext) -> Tensor:
        return bound_loss(ctx.decisions["spatial_density"], target=bound_target(settings),
                          relaxation=bound_relaxation(ctx.epoch, settings.bound_rate))

    return term

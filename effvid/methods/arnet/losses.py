"""AR-Net's loss terms (Eq. 10-11), offered to the trainer through ``ARNet.loss_terms()``.

A config weights them as Eq. 12 does: ``losses: [{name: ce, weight: 0.9}, {name: flops,
weight: 0.1}, {name: uniform, weight: 0.3}]`` for ``(1 - alpha) CE + alpha L_flops + beta L_uni``.

* ``flops``: the mean over videos and frames of the chosen action's GMACs per frame, from the
  straight-through one-hots, so its gradient reaches the policy. With ``flops_normalized`` (the
  default) the table is divided by its costliest action, making the term a fraction in [0, 1]:
  the paper's raw GFLOPs tie alpha to the backbones' size (its ResNet-50 at 4.1 GFLOPs per frame
  makes alpha = 0.1 act like 0.41 here), and SynthActions-sized backbones cost a hundredth of
  that. The policy's own cost is not in the term (it is the same for every action).
* ``uniform``: the squared deviation of each action's usage rate in the batch from 1/(L+M).
* ``branch_ce``: the mean over branches of each branch's cross-entropy when it alone classifies
  every frame. It is the warm-up of section 4.1 done in one run: the authors train each backbone
  alone at its resolution before the joint stage; weighting the mixture's CE by random routing
  instead gives each branch the gradient of a seventh of the frames.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from torch import Tensor

from effvid.engine.losses import classification_loss

if TYPE_CHECKING:
    from effvid.engine.losses import LossContext
    from effvid.methods.arnet.model import ARNet


def branch_ce_term() -> Callable[[LossContext], Tensor]:
    """The warm-up CE of every branch alone (module docstring); needs a training forward."""

    def term(ctx: LossContext) -> Tensor:
        per_branch = ctx.decisions["branch_logits"]
        return sum(classification_loss(per_branch[:, i], ctx.targets) for i in range(per_branch.shape[1])) \
            / per_branch.shape[1]

    return term


def flops_term(model: ARNet) -> Callable[[LossContext], Tensor]:
    """L_flops of the step's decisions (module docstring)."""

    def term(ctx: LossContext) -> Tensor:
        onehot = ctx.decisions["onehot"]
        table = model.action_costs.to(onehot.dtype)
        if model.settings.flops_normalized:
            table = table / table.max().clamp(min=1e-12)
        return (onehot * table).sum(dim=-1).mean()

    return term


def uniform_term(model: ARNet) -> Callable[[LossContext], Tensor]:
    """L_uni of the step's decisions (module docstring)."""

    def term(ctx: LossContext) -> Tensor:
        usage = ctx.decisions["onehot"].flatten(0, -2).mean(dim=0)
        return ((usage - 1.0 / usage.numel()) ** 2).sum()

    return term

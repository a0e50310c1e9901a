"""VA-RED2's efficiency loss (thesis Eq. 3.6) and the per-layer ratios it reads.

``L_e = mean_b (mu_0 sum_l C(f_l) / sum_k C(f_k) * r_l^s / R_l^s)^2``: ``r^s / R^s`` is the
fraction a layer computes with its largest non-zero choices (``(1/2)^i / 2^j``, 0 when an axis
has no non-zero weight and nothing runs), weighted by the layer's share of the wrapped full
cost, and ``mu_0`` is 1 for a correctly classified clip and 0 otherwise (detached).

Gradient path (the thesis leaves it open; ``r^s / R^s`` is piecewise constant in the gate):
straight-through. The forward value is the discrete ratio the clip will execute; the backward
pass takes the gradient of the expected ratio under a softmax of the gate's pre-activations,
``E = (sum_i softmax(a_c)_i (1/2)^i) * (sum_j softmax(a_t)_j 2^-j)``. It lowers the
pre-activation of the expensive choices and raises the cheap ones', and, unlike an
expectation over ``V = max(tanh(a), 0)``, it still pushes when the gate has only the full
choice active (where ``V`` of the others is exactly 0 and has no gradient), so the expensive
weight can be driven to exactly 0, the only way the executed cost drops.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from effvid.engine.losses import LossContext
from effvid.methods.common.gumbel import straight_through
from effvid.methods.vared2.gate import GateOutput


def layer_ratios(gates: Sequence[GateOutput]) -> tuple[Tensor, Tensor, Tensor]:
    """``(channel_ratio, temporal_ratio, ratio)``, each ``(B, L)``: ``r^s``, ``1 / R^s`` and their
    product ``r^s / R^s`` with the straight-through gradient of the module docstring (the
    expected ratio is not built where gradients are off: inference reads the value only). The
    layers share one search space, so each quantity is one operation over all of them."""
    v_c = torch.stack([gate.v_c for gate in gates], 1)
    v_t = torch.stack([gate.v_t for gate in gates], 1)
    channel, temporal = _largest(v_c), _largest(v_t)
    ratio = channel * temporal
    if torch.is_grad_enabled():
        soft = _expected([gate.a_c for gate in gates], v_c) * _expected([gate.a_t for gate in gates], v_t)
        ratio = straight_through(ratio.detach(), soft)
    return channel, temporal, ratio


def _fractions(n: int, like: Tensor) -> Tensor:
    return 0.5 ** torch.arange(n, dtype=like.dtype, device=like.device)


def _largest(v: Tensor) -> Tensor:
    """``(1/2)^i`` of the first non-zero weight along the last axis of ``v (B, L, S)``, 0 where
    there is none."""
    active = v > 0
    fraction = _fractions(v.shape[-1], v)[active.int().argmax(-1)]
    return torch.where(active.any(-1), fraction, torch.zeros_like(fraction))


def _expected(a: Sequence[Tensor | None], v: Tensor) -> Tensor:
    """``(B, L)``: the expected fraction under ``softmax(a)`` per layer; 1 for an axis switched
    off (its pre-activations are ``None``)."""
    if any(x is None for x in a):
        return v.new_ones(v.shape[:2])
    logits = torch.stack(list(a), 1)  # type: ignore[arg-type]
    return (torch.softmax(logits, dim=-1) * _fractions(logits.shape[-1], logits)).sum(-1)


def efficiency_loss(ratio: Tensor, layer_weights: Tensor, correct: Tensor) -> Tensor:
    """Eq. 3.6 averaged over the batch: ``ratio (B, L)``, ``layer_weights (L,)`` summing to 1,
    ``correct (B,)`` booleans (``mu_0``)."""
    per_clip = correct.to(ratio.dtype) * (ratio * layer_weights).sum(1)
    return (per_clip**2).mean()


def correct_predictions(logits: Tensor, targets: Tensor) -> Tensor:
    """``(B,)`` booleans: the top-1 class is the target (for multi-hot targets: a positive class)."""
    top = logits.detach().argmax(1)
    if targets.is_floating_point():
        return targets.gather(1, top[:, None]).squeeze(1) > 0
    return top == targets


def efficiency_term(layer_weights: Callable[[], Sequence[float]]) -> Callable[[LossContext], Tensor]:
    """The ``"efficiency"`` loss term; ``layer_weights()`` gives the current per-layer cost shares."""

    def term(ctx: LossContext) -> Tensor:
        if "ratio" not in ctx.decisions:
            raise ValueError("the efficiency loss needs a VA-RED2 model's 'ratio' decisions")
        ratio = ctx.decisions["ratio"]
        weights = torch.tensor(list(layer_weights()), dtype=ratio.dtype, device=ratio.device)
        return efficiency_loss(ratio, weights, correct_predictions(ctx.logits, ctx.targets))

    return term

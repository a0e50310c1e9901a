"""Straight-through Gumbel-softmax and the temperature schedule that anneals it.

:func:`gumbel_softmax_st` draws a one-hot sample from a categorical distribution in the forward
pass and passes the gradient of its softmax relaxation back (Jang et al. 2017; AR-Net Eq. 6-8;
D-STEP's channel policy). :func:`gumbel_sigmoid_st` is the two-class case for binary masks.
:func:`exp_decay_temperature` is AR-Net's ``tau(e) = tau0 * exp(rate * e)``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def gumbel_noise(like: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
    """Standard Gumbel samples ``-log(-log U)`` shaped like ``like`` (``U`` kept off 0 and 1)."""
    u = torch.rand(like.shape, device=like.device, dtype=like.dtype, generator=generator)
    tiny = torch.finfo(like.dtype).tiny
    return -torch.log(-torch.log(u.clamp(tiny, 1.0 - 1e-7)))


def straight_through(hard: Tensor, soft: Tensor) -> Tensor:
    """``hard`` in the forward pass, the gradient of ``soft`` in the backward pass."""
    return hard + (soft - soft.detach())


def gumbel_softmax_st(logits: Tensor, tau: float, *, dim: int = -1, noise: bool = True,
                      generator: torch.Generator | None = None) -> Tensor:
    """A one-hot sample along ``dim`` whose gradient is that of ``softmax((logits + G) / tau)``.

    ``noise=False`` takes the argmax of ``logits`` (inference decisions) with the same gradient
    path; ``tau`` must be positive.
    """
    if not tau > 0:
        raise ValueError(f"Gumbel temperature must be positive, got {tau}")
    perturbed = logits + gumbel_noise(logits, generator=generator) if noise else logits
    soft = torch.softmax(perturbed / tau, dim=dim)
    hard = torch.zeros_like(soft).scatter_(dim, perturbed.argmax(dim=dim, keepdim=True), 1.0)
    return straight_through(hard, soft)


def gumbel_sigmoid_st(logits: Tensor, tau: float, *, noise: bool = True,
                      generator: torch.Generator | None = None) -> Tensor:
    """A binary sample (``1`` where ``logits + G1 - G2 > 0``) with the gradient of the relaxed sigmoid."""
    if not tau > 0:
        raise ValueError(f"Gumbel temperature must be positive, got {tau}")
    if noise:
        logits = logits + gumbel_noise(logits, generator=generator) - gumbel_noise(logits, generator=generator)
    soft = torch.sigmoid(logits / tau)
    return straight_through((logits > 0).to(soft.dtype), soft)


def exp_decay_temperature(epoch: float, *, initial: float, rate: float, minimum: float = 0.0) -> float:
    """``max(minimum, initial * exp(rate * epoch))``; a negative ``rate`` anneals."""
    return max(minimum, initial * math.exp(rate * epoch))

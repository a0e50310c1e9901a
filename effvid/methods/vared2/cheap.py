"""The cheap operations that rebuild what a dynamic convolution did not compute.

* Channel path (the thesis's spatial cheap operation, Phi_s / Phi_c): :class:`ChannelRebuild`,
  GhostNet's depthwise convolution. The ``C_out - k`` rebuilt channels come from the ``k``
  computed ones by a depthwise ``(1, k_s, k_s)`` convolution, one filter per rebuilt channel:
  ``(C_out - k) * k_s^2`` MACs per output position, about ``k_s^2 / (C_in * prod(kernel))`` of
  the convolution it replaces (under 2% for R(2+1)D's 3x3 convolutions at ``k_s = 3``). When
  ``C_out - k`` is a multiple of ``k`` (every power-of-two width) it is one grouped call with a
  channel multiplier; otherwise the source channels are gathered first (a copy, no MACs).
  The filters start as the identity (centre tap 1), so a rebuilt channel starts as a copy of
  its source channel and a model initialised from a trained base starts near it.
* Temporal path (Phi_t, Eq. 3.1): :func:`repeat_frames`, each missing frame a copy of the
  computed frame before it. Eq. 3.1 builds frame ``j + iR`` from the computed frame ``i``
  alone, and the identity is the cheapest linear map that does it: no MACs, a strided copy
  into the output. The layers around the convolution (its BN and the next convolution) are
  free to reweight the copies.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class ChannelRebuild(nn.Module):
    """``rebuilt`` channels from ``computed`` ones by a depthwise ``(1, kernel, kernel)`` conv."""

    def __init__(self, computed: int, rebuilt: int, kernel: int = 3) -> None:
        super().__init__()
        if computed < 1 or rebuilt < 1:
            raise ValueError(f"a channel rebuild needs computed and rebuilt channels, got {computed} and {rebuilt}")
        self.computed = computed
        self.rebuilt = rebuilt
        self.kernel = kernel
        self.gathers = rebuilt % computed != 0
        self.groups = rebuilt if self.gathers else computed
        self.weight = nn.Parameter(torch.zeros(rebuilt, 1, 1, kernel, kernel))
        with torch.no_grad():
            self.weight[:, :, :, kernel // 2, kernel // 2] = 1.0
        source = torch.arange(rebuilt) % computed
        self.register_buffer("source", source, persistent=False)

    def macs(self, positions: int) -> int:
        """MACs of rebuilding at ``positions`` output positions (frames x height x width) of one clip."""
        return self.rebuilt * self.kernel * self.kernel * positions

    def forward(self, y: Tensor) -> Tensor:
        """``(B, rebuilt, t, h, w)`` from the computed ``y (B, computed, t, h, w)``."""
        if self.gathers:
            y = y.index_select(1, self.source)
        pad = self.kernel // 2
        return F.conv3d(y, self.weight, padding=(0, pad, pad), groups=self.groups)


def repeat_frames(out: Tensor, frames: Tensor, weight: Tensor, stride: int, *, accumulate: bool) -> None:
    """Write (or with ``accumulate`` add) ``weight * frames`` into ``out`` with each of the
    ``ceil(T / stride)`` ``frames`` repeated ``stride`` times along time (Eq. 3.1 with the
    identity as Phi_t); ``weight`` broadcasts against ``(B, C, t, H, W)``."""
    for offset in range(min(stride, out.shape[2])):
        target = out[:, :, offset::stride]
        write(target, frames[:, :, : target.shape[2]], weight, accumulate=accumulate)


def place_repeated(target: Tensor, frames: Tensor, stride: int) -> None:
    """Copy ``frames (B, C, t, H, W)`` into ``target (B, C, T, H, W)`` with each frame repeated
    ``stride`` times along time (:func:`repeat_frames` without a weight): one broadcast copy
    over the whole groups of ``stride`` frames, one for a last, shorter group."""
    whole = min(target.shape[2] // stride, frames.shape[2])
    if whole:
        target[:, :, : whole * stride].unflatten(2, (whole, stride)).copy_(frames[:, :, :whole].unsqueeze(3))
    if whole * stride < target.shape[2]:
        target[:, :, whole * stride :].copy_(frames[:, :, whole : whole + 1])


def fill_repeated(out: Tensor, stride: int) -> None:
    """Copy each ``stride``-th frame of ``out (B, C, T, H, W)`` (the computed ones, written there
    already) into the ``stride - 1`` frames after it, in place: what :func:`place_repeated`
    writes, without a separate source."""
    if stride == 1:
        return
    frames = out.shape[2]
    whole = frames // stride
    if whole:
        groups = out[:, :, : whole * stride].unflatten(2, (whole, stride))
        groups[:, :, :, 1:].copy_(groups[:, :, :, :1])
    if whole * stride + 1 < frames:
        out[:, :, whole * stride + 1 :].copy_(out[:, :, whole * stride : whole * stride + 1])


def mix_repeated_in_place(z: Tensor, near: Tensor, far: Tensor, stride: int) -> Tensor:
    """``near * z + far * repeat(z[:, :, ::stride])`` (Eq. 3.5 over two temporal choices, every
    frame and every ``stride``-th, :func:`repeat_frames`'s copy as the rebuild), computed in
    ``z (B, C, T, H, W)`` itself; ``near`` and ``far`` are ``(B,)``. The frames between the
    computed ones read those only, so they are mixed first and the computed ones scaled last.
    Inference only (it overwrites ``z``); returns ``z``."""
    shape = (z.shape[0], 1, 1, 1, 1)
    near, far = near.view(shape), far.view(shape)
    anchors = z[:, :, ::stride]
    for offset in range(1, stride):
        frames = z[:, :, offset::stride]
        frames.mul_(near).addcmul_(anchors[:, :, : frames.shape[2]], far)
    anchors.mul_(near + far)
    return z


def write(target: Tensor, value: Tensor, weight: Tensor, *, accumulate: bool) -> None:
    """``target = value * weight`` (or ``+=`` with ``accumulate``), in place and without a
    temporary where autograd allows it."""
    if accumulate:
        target.addcmul_(value, weight)
    elif torch.is_grad_enabled() and (value.requires_grad or weight.requires_grad):
        target.copy_(value * weight)
    else:
        torch.mul(value, weight, out=target)


def is_channels_last(x: Tensor) -> bool:
    """Whether the 5D ``x`` is stored channels-last (``(B, T, H, W, C)``) and not also contiguous."""
    return x.dim() == 5 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last_3d)


def empty_as(like: Tensor, shape: tuple[int, ...]) -> Tensor:
    """An uninitialised tensor of ``shape`` in ``like``'s memory format (channels-last stays so):
    the outputs the rebuilds write into."""
    fmt = torch.channels_last_3d if is_channels_last(like) else torch.contiguous_format
    return torch.empty(shape, dtype=like.dtype, device=like.device, memory_format=fmt)

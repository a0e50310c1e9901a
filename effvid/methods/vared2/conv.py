"""The dynamic convolution (thesis Eq. 3.1-3.3, 3.5, appendix A.1-A.2).

A :class:`DynamicConv3d` replaces one ``nn.Conv3d`` (groups 1) and keeps its ``weight`` and
``bias`` under the same names, so a trained base network's state dict loads into it. Its
:class:`~effvid.methods.vared2.gate.SoftModulationGate` weighs, per clip, the temporal choices
``R = 1, 2, 4`` (compute every R-th output frame: the temporal stride times R) and the channel
choices ``r = 1, 1/2, 1/4`` (compute the first ``r C_out`` filters). What is not computed is
rebuilt by cheap operations (:mod:`effvid.methods.vared2.cheap`: a GhostNet depthwise
convolution for channels, a copy of the previous computed frame for time; why and what they
cost is written there).

The output is Eq. 3.5, channel path first: ``Z = sum_i V_c[i] [Y[:k_i], Phi_c^i(Y[:k_i])]`` on
the computed frames, then ``out = sum_j V_t[j] rebuild_R_j(Z[::R_j / R_s])``, where ``Y`` is the
convolution with the first ``k_s`` filters at temporal stride ``R_s`` (A.1):

* training computes the largest choice (``k_s = C_out``, ``R_s = 1``) once and slices every
  smaller choice from it (shared weights), so the convolution's cost does not grow with the
  search space; only the cheap rebuilds, one per smaller channel choice, do;
* inference (eval mode) computes, per clip, only the largest choice whose weight is non-zero:
  the first ``k_s`` filters (views prepared once per choice, never sliced per call) on every
  ``R_s``-th frame (the input frames are strided when the kernel is 1 frame long), rebuilds
  the rest into one preallocated output, and computes nothing when every weight of an axis is
  zero (the output is then exactly zero). A batch of one runs the chosen convolution
  directly; a larger batch groups the clips by their pattern of non-zero weights
  (:func:`~effvid.methods.common.grouping.group_rows`) and runs each group once. A pattern
  with one non-zero weight per axis (what a trained gate mostly picks) needs no mix: the
  convolution's output is scaled in place and the rebuilt channels and frames are copied
  straight into the output; every frame and one strided choice both non-zero (what a gate
  trained with the efficiency loss often leaves, since the smaller choice costs no MACs once
  the larger one runs) are mixed in place in the computed frames, without a second output.

With ``groups=True`` (inference only) :meth:`DynamicConv3d.forward` returns, per group, what
it computed before any copy to skipped frames (:class:`ComputedGroup`), for a
:class:`~effvid.methods.vared2.deferred.DeferredRepeat` to run on.

Training and inference evaluate the same formula, so for equal gate weights their outputs
are equal. Cost per clip, from the decisions: :meth:`DynamicConv3d.cost_tables`.

Prepared for inference (:func:`effvid.models.prepare_for_inference`, which folds the base
network's BatchNorms into its convolutions), a dynamic convolution absorbs the BatchNorm that
reads its output (:meth:`DynamicConv3d.absorb_batchnorm`): the clip's weight and the
BatchNorm's affine map become one pass, which writes the computed frames and channels straight
into the output, and a clip computing every filter (at any temporal stride) folds both into its
filters where they are smaller than the output it computes, leaving only the copy of the computed
frames to the skipped ones. At R(2+1)D-18's 16x128x128 with one thread, the absorbed BatchNorm
and the allocator setting of the same preparation took the paper-scale ratio of time saved to
GMACs saved from 0.47 to 0.57-0.68 over five runs (the BatchNorm of a full output had allocated
and filled it once more); folding the strided full-filter choice and the gate's own fold
(:mod:`~effvid.methods.vared2.gate`) took it from 0.68 to 0.69-0.74 on another CPU (README).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from effvid.methods.common.grouping import group_rows, scatter_rows
from effvid.methods.vared2.cheap import (
    ChannelRebuild,
    empty_as,
    fill_repeated,
    mix_repeated_in_place,
    place_repeated,
    repeat_frames,
    write,
)
from effvid.methods.vared2.gate import GateOutput, SoftModulationGate
from effvid.models.fold import batchnorm_affine, folding, kept, tensors_key
from effvid.models.onednn import conv3d

Triple = tuple[int, int, int]
Affine = tuple[Tensor, Tensor] | None
"""An absorbed BatchNorm's ``(scale, shift)``, each ``(1, C_out, 1, 1, 1)``, or none."""


@dataclass(frozen=True)
class ComputedGroup:
    """What inference computed for clips sharing one pattern of non-zero gate weights: their
    ``rows`` of the batch (``None``: the whole batch, in order) and ``out``, every ``stride``-th
    of the layer's ``frames`` output frames (1: every frame; more: the frames a temporal choice
    computed, not yet repeated)."""

    rows: Tensor | None
    out: Tensor
    stride: int
    frames: int


def assemble(pieces: Sequence[tuple[Tensor | None, Tensor]], batch: int) -> Tensor:
    """The ``batch`` rows of a layer's output from one ``(rows, value)`` piece per group of clips
    (:class:`ComputedGroup`'s rows): a lone piece whose rows are ``None`` is the whole batch, else
    each value is scattered to its rows of a new output in the first value's memory format."""
    if len(pieces) == 1 and pieces[0][0] is None:
        return pieces[0][1]
    first = pieces[0][1]
    out = empty_as(first, (batch, *first.shape[1:]))
    for rows, value in pieces:
        assert rows is not None
        scatter_rows(out, rows, value)
    return out


class DynamicConv3d(nn.Module):
    """A VA-RED2 convolution with its gate and cheap rebuilds (module docstring)."""

    cost_layer = True
    """Per-layer splits (:func:`effvid.cost.latency.leaf_layers`) count it as one layer."""

    def __init__(self, *, in_channels: int, out_channels: int, kernel_size: Triple, stride: Triple = (1, 1, 1),
                 padding: Triple = (0, 0, 0), dilation: Triple = (1, 1, 1), bias: bool = False, in_frames: int,
                 temporal_choices: int = 2, channel_choices: int = 2, hidden: int = 32, cheap_kernel: int = 3,
                 full_bias: float = 1.0, reduced_bias: float = 0.0, revive: bool = False) -> None:
        super().__init__()
        if out_channels < 2 ** (channel_choices - 1):
            raise ValueError(f"{out_channels} output channels are too few for {channel_choices} channel choices")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding, self.dilation = kernel_size, stride, padding, dilation
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, *kernel_size))
        nn.init.kaiming_normal_(self.weight, mode="fan_out", nonlinearity="relu")
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.gate = SoftModulationGate(in_channels=in_channels, in_frames=in_frames, hidden=hidden,
                                       temporal_choices=temporal_choices, channel_choices=channel_choices,
                                       full_bias=full_bias, reduced_bias=reduced_bias, revive=revive)
        self.keep = tuple(max(1, round(out_channels / 2**i)) for i in range(channel_choices))
        self.strides = tuple(2**j for j in range(temporal_choices))
        self.cheap = nn.ModuleList(ChannelRebuild(k, out_channels - k, cheap_kernel) for k in self.keep[1:])
        self.slice_frames = kernel_size[0] == 1 and padding[0] == 0
        self.last: GateOutput | None = None
        self._views: tuple[Any, list[tuple[Tensor, Tensor | None]]] | None = None

    @classmethod
    def from_conv(cls, conv: nn.Conv3d, *, in_frames: int, **settings: Any) -> DynamicConv3d:
        """A dynamic convolution sharing ``conv``'s weight and bias parameters; ``settings`` are
        the gate and search-space keywords of the constructor."""
        if conv.groups != 1 or not isinstance(conv.padding, tuple):
            raise ValueError("VA-RED2 wraps dense convolutions with explicit padding (groups 1)")
        module = cls(in_channels=conv.in_channels, out_channels=conv.out_channels, kernel_size=conv.kernel_size,
                     stride=conv.stride, padding=conv.padding, dilation=conv.dilation, bias=conv.bias is not None,
                     in_frames=in_frames, **settings)
        module.weight = conv.weight
        module.bias = conv.bias
        return module

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"keep={self.keep}, temporal_strides={self.strides}")

    # -----------------------------------------------------------------------------------------
    # Geometry and cost

    def out_size(self, in_size: Triple) -> Triple:
        """Output ``(T, H, W)`` of the full convolution for an input of ``in_size``."""
        return tuple(  # type: ignore[return-value]
            (n + 2 * p - d * (k - 1) - 1) // s + 1
            for n, k, s, p, d in zip(in_size, self.kernel_size, self.stride, self.padding, self.dilation)
        )

    def cost_tables(self, out_size: Triple) -> tuple[list[list[int]], list[list[int]]]:
        """MACs of one clip at output size ``out_size``: ``conv[i][j]`` of the convolution
        computing channel choice ``i`` at temporal choice ``j``, and ``cheap[i][j]`` of
        rebuilding channel choice ``i`` on the frames that choice ``j`` computes (0 for ``i = 0``).
        The temporal rebuild is a copy (no MACs); the gate's MACs are ``gate.macs``."""
        frames, height, width = out_size
        per_filter = self.in_channels * math.prod(self.kernel_size) * height * width
        conv, cheap = [], []
        for i, k in enumerate(self.keep):
            computed = [math.ceil(frames / r) for r in self.strides]
            conv.append([k * per_filter * t for t in computed])
            cheap.append([0 if i == 0 else self.cheap[i - 1].macs(t * height * width) for t in computed])
        return conv, cheap

    # -----------------------------------------------------------------------------------------
    # Forward

    def forward(self, x: Tensor, *, groups: bool = False) -> Tensor | list[ComputedGroup]:
        """The output (Eq. 3.5); with ``groups`` (inference only) the :class:`ComputedGroup` list
        instead, whose strided groups hold only the frames they computed: what
        :class:`~effvid.methods.vared2.deferred.DeferredRepeat` consumes. Either way it is this
        layer's forward, so hooks on it (timing, tracing) see it run."""
        gate = self.gate(x)
        self.last = gate
        if self.training:
            if groups:
                raise RuntimeError("DynamicConv3d(groups=True) is the inference path (eval mode)")
            channels = list(range(len(self.keep)))
            times = list(range(len(self.strides)))
            return self._mix(self._conv(x, 0, 0), gate.v_c, gate.v_t, channels, times, self.out_size(x.shape[2:])[0])
        if groups:
            return self._infer_groups(x, gate.v_c, gate.v_t, repeat=False)
        return self._infer(x, gate.v_c, gate.v_t)

    def _weights(self, choice: int) -> tuple[Tensor, Tensor | None]:
        """The first ``keep[choice]`` filters: the parameters themselves in training, views
        prepared once per weight storage at inference."""
        if self.training:
            k = self.keep[choice]
            return self.weight[:k], None if self.bias is None else self.bias[:k]
        key = (self.weight.data_ptr(), self.weight.stride(), self.weight.device, self.weight.dtype,
               None if self.bias is None else self.bias.data_ptr())
        if self._views is None or self._views[0] != key:
            weight = self.weight.detach()
            bias = None if self.bias is None else self.bias.detach()
            self._views = (key, [(weight[:k], None if bias is None else bias[:k]) for k in self.keep])
        return self._views[1][choice]

    def _conv(self, x: Tensor, channel: int, time: int) -> Tensor:
        """The convolution of channel choice ``channel`` at temporal choice ``time``."""
        weight, bias = (self.weight, self.bias) if self.training and channel == 0 else self._weights(channel)
        return self._strided_conv(x, weight, bias, self.stride[0] * self.strides[time])

    def _strided_conv(self, x: Tensor, weight: Tensor, bias: Tensor | None, step: int) -> Tensor:
        """The convolution with ``weight`` at temporal stride ``step`` (the input frames strided
        instead when the kernel is one frame long)."""
        if self.slice_frames:
            x = x[:, :, ::step] if step > 1 else x
            stride = (1, self.stride[1], self.stride[2])
        else:
            stride = (step, self.stride[1], self.stride[2])
        return conv3d(x, weight, bias, stride, self.padding, self.dilation)

    def absorb_batchnorm(self, bn: nn.Module | None) -> None:
        """Apply ``bn``, the BatchNorm that reads only this convolution's output, inside it at
        inference (``None``: stop). :func:`effvid.models.fold.fold_batchnorms` calls it when it
        prepares a model for inference, and ``bn`` then passes its input through. The
        BatchNorm's per-channel affine map is fused with the clip's weight ``V_c V_t``, which
        inference applies anyway: ``y * (V a) + b`` is one pass where the weight and the
        BatchNorm were two (module docstring of :mod:`effvid.models.fold`)."""
        if bn is None:
            self.__dict__.pop("absorbed", None)
        else:
            self.__dict__["absorbed"] = bn
        self.__dict__.pop("_affine_cache", None)

    def runs_absorbed(self) -> bool:
        """Whether the absorbed BatchNorm applies now (absorbed, eval mode, gradients off)."""
        return self.__dict__.get("absorbed") is not None and folding(self)

    def _affine(self) -> tuple[Tensor, Tensor] | None:
        """The absorbed BatchNorm's ``(scale, shift)`` per output channel when it applies now
        (eval mode, gradients off), kept until one of its tensors changes; else ``None``."""
        if not self.runs_absorbed():
            return None
        bn = self.__dict__["absorbed"]

        def affine() -> tuple[Tensor, Tensor]:
            scale, shift = batchnorm_affine(bn)
            return scale.view(1, -1, 1, 1, 1), shift.view(1, -1, 1, 1, 1)

        key = tensors_key(bn.weight, bn.bias, bn.running_mean, bn.running_var)
        return kept(self.__dict__, "_affine_cache", key, affine)

    def _infer(self, x: Tensor, v_c: Tensor, v_t: Tensor) -> Tensor:
        """Eval mode: each clip computes only its largest non-zero choice (module docstring)."""
        return assemble([(part.rows, part.out) for part in self._infer_groups(x, v_c, v_t, repeat=True)],
                        x.shape[0])

    def _infer_groups(self, x: Tensor, v_c: Tensor, v_t: Tensor, *, repeat: bool) -> list[ComputedGroup]:
        """The groups of :meth:`forward` with ``groups`` from the gate's weights; with ``repeat``
        every group's output holds every frame."""
        affine = self._affine()
        if x.shape[0] == 1:
            return [self._run(x, v_c, v_t, [v > 0 for v in v_c[0].tolist()], [v > 0 for v in v_t[0].tolist()],
                              affine, None, repeat)]
        active_c, active_t = v_c > 0, v_t > 0
        bits_c = 2 ** torch.arange(active_c.shape[1], device=x.device)
        bits_t = 2 ** torch.arange(active_c.shape[1], active_c.shape[1] + active_t.shape[1], device=x.device)
        keys = (active_c.long() * bits_c).sum(1) + (active_t.long() * bits_t).sum(1)
        groups = list(group_rows(keys))
        if len(groups) == 1:
            return [self._run(x, v_c, v_t, active_c[0].tolist(), active_t[0].tolist(), affine, None, repeat)]
        parts = []
        for key, rows in groups:
            pattern = [bool(key >> b & 1) for b in range(active_c.shape[1] + active_t.shape[1])]
            parts.append(self._run(x.index_select(0, rows), v_c.index_select(0, rows), v_t.index_select(0, rows),
                                   pattern[: active_c.shape[1]], pattern[active_c.shape[1] :], affine, rows, repeat))
        return parts

    def _run(self, x: Tensor, v_c: Tensor, v_t: Tensor, active_c: list[bool], active_t: list[bool],
             affine: Affine, rows: Tensor | None, repeat: bool) -> ComputedGroup:
        """Clips (``rows`` of the batch) sharing one pattern of non-zero weights: the largest
        active choice, then the mix, then the absorbed BatchNorm's ``affine`` map (if any);
        without ``repeat``, a single strided choice leaves out the frames it skips."""
        out_size = self.out_size(x.shape[2:])
        if not any(active_c) or not any(active_t):
            zeros = x.new_zeros((x.shape[0], self.out_channels, *out_size))
            return ComputedGroup(rows, zeros if affine is None else zeros.add_(affine[1]), 1, out_size[0])
        channels = [i for i, on in enumerate(active_c) if on]
        times = [j for j, on in enumerate(active_t) if on]
        if len(channels) == 1 and len(times) == 1:
            out = self._run_single(x, v_c[:, channels[0]] * v_t[:, times[0]], channels[0], times[0], out_size,
                                   affine, repeat)
            return ComputedGroup(rows, out, 1 if repeat else self.strides[times[0]], out_size[0])
        out = self._mix(self._conv(x, channels[0], times[0]), v_c, v_t, channels, times, out_size[0])
        return ComputedGroup(rows, out if affine is None else torch.addcmul(affine[1], out, affine[0], out=out), 1,
                             out_size[0])

    def _run_single(self, x: Tensor, scale: Tensor, channel: int, time: int, out_size: Triple,
                    affine: Affine, repeat: bool) -> Tensor:
        """Clips with one active choice per axis: ``scale (B,)`` (their ``V_c V_t``) times that
        choice, at output size ``out_size``. The convolution's output is scaled in place: the same arithmetic for one clip
        as for a group, so a clip's result, and the decisions of the layers after it, do not
        depend on the batch it came in (folding the scale into a lone clip's filters while a
        group shares its filters would round the two differently, and a gate near 0 then
        flips; measured). The rebuilt channels and frames are written straight into the output
        (the channel rebuild has no bias, so it carries the scale along). With an absorbed
        BatchNorm (``affine``): :meth:`_run_folded` for every filter where the filters are
        smaller than the output a clip computes, else :meth:`_run_single_affine`. Without
        ``repeat``, the output holds the computed frames only."""
        weight, bias = self._weights(channel)
        computed_frames = math.ceil(out_size[0] / self.strides[time])
        step, out_frames = (self.strides[time], out_size[0]) if repeat else (1, computed_frames)
        if affine is not None and channel == 0:
            if weight.numel() < self.out_channels * computed_frames * out_size[1] * out_size[2]:
                return self._run_folded(x, scale, weight, bias, time, step, out_frames, affine)
        y = self._strided_conv(x, weight, bias, self.stride[0] * self.strides[time])
        if affine is not None:
            return self._run_single_affine(y, scale, channel, step, out_frames, affine)
        y.mul_(scale.view(-1, 1, 1, 1, 1))
        if channel == 0 and step == 1:
            return y
        batch, k, _, height, width = y.shape
        out = empty_as(y, (batch, self.out_channels, out_frames, height, width))
        place_repeated(out[:, :k], y, step)
        if k < self.out_channels:
            place_repeated(out[:, k:], self.cheap[channel - 1](y), step)
        return out

    def _run_folded(self, x: Tensor, scale: Tensor, weight: Tensor, bias: Tensor | None, time: int, step: int,
                    out_frames: int, affine: tuple[Tensor, Tensor]) -> Tensor:
        """Every filter at temporal choice ``time`` with the absorbed BatchNorm ``affine = (a, b)``,
        each computed frame repeated ``step`` times into ``out_frames``:
        each clip's weight ``V`` and ``a`` folded into the filters (``W V a``, bias ``bias V a + b``),
        so no pass over the output is left but the copy of the computed frames to the frames
        they stand for (none for the full choice of one clip, whose convolution output is
        returned). Every clip runs its own convolution, alone or in a batch: the same
        arithmetic either way, so a clip's result does not depend on its batch. Taken where the
        filters are smaller than a clip's computed output (a shape rule: the same for every
        batch), since the fold is a pass over the filters."""
        gains = scale.view(-1, 1) * affine[0].view(1, -1)
        shift = affine[1].view(-1)
        out: Tensor | None = None
        for i in range(x.shape[0]):
            gain = gains[i]
            folded_bias = shift if bias is None else torch.addcmul(shift, bias, gain)
            y = self._strided_conv(x[i : i + 1], weight * gain.view(-1, 1, 1, 1, 1), folded_bias,
                                   self.stride[0] * self.strides[time])
            if x.shape[0] == 1 and step == 1:
                return y
            if out is None:
                out = empty_as(y, (x.shape[0], self.out_channels, out_frames, *y.shape[3:]))
            place_repeated(out[i : i + 1], y, step)
        assert out is not None
        return out

    def _run_single_affine(self, y: Tensor, scale: Tensor, channel: int, step: int, out_frames: int,
                           affine: tuple[Tensor, Tensor]) -> Tensor:
        """:meth:`_run_single` with the absorbed BatchNorm ``affine = (a, b)``: each computed value
        ``y`` becomes ``y * (V a) + b`` in the output, rebuilt channels from ``y`` likewise, then
        each computed frame is copied to the ``step - 1`` frames after it."""
        batch, k, _, height, width = y.shape
        gain = scale.view(-1, 1, 1, 1, 1) * affine[0]
        shift = affine[1]
        if channel == 0 and step == 1:
            return torch.addcmul(shift, y, gain, out=y)
        out = empty_as(y, (batch, self.out_channels, out_frames, height, width))
        if k < self.out_channels:
            torch.addcmul(shift[:, k:], self.cheap[channel - 1](y), gain[:, k:], out=out[:, k:, ::step])
        torch.addcmul(shift[:, :k], y, gain[:, :k], out=out[:, :k, ::step])
        fill_repeated(out, step)
        return out

    def _mix(self, y: Tensor, v_c: Tensor, v_t: Tensor, channels: list[int], times: list[int],
             out_frames: int) -> Tensor:
        """Eq. 3.5 from ``y``, the convolution of choices ``channels[0]`` and ``times[0]``, over
        the active ``channels`` and ``times`` (ascending indices)."""
        batch, _, frames, height, width = y.shape
        c_out = self.out_channels
        scale: Tensor | None
        if channels == [0]:
            z, scale = y, v_c[:, 0]
        else:
            z, scale = empty_as(y, (batch, c_out, frames, height, width)), None
            for n, i in enumerate(channels):
                k = self.keep[i]
                weight = v_c[:, i].view(batch, 1, 1, 1, 1)
                computed = y[:, :k] if k < y.shape[1] else y
                write(z[:, :k], computed, weight, accumulate=n > 0)
                if k < c_out:
                    write(z[:, k:], self.cheap[i - 1](computed), weight, accumulate=n > 0)
        v_t = v_t if scale is None else v_t * scale[:, None]
        first = self.strides[times[0]]
        if times == [0]:
            return z * v_t[:, 0].view(batch, 1, 1, 1, 1)
        if len(times) == 2 and times[0] == 0 and not torch.is_grad_enabled():
            return mix_repeated_in_place(z, v_t[:, 0], v_t[:, times[1]], self.strides[times[1]])
        out = empty_as(z, (batch, c_out, out_frames, height, width))
        for n, j in enumerate(times):
            step = self.strides[j] // first
            weight = v_t[:, j].view(batch, 1, 1, 1, 1)
            computed = z[:, :, ::step] if step > 1 else z
            if self.strides[j] == 1:
                write(out, computed, weight, accumulate=n > 0)
            else:
                repeat_frames(out, computed, weight, self.strides[j], accumulate=n > 0)
        return out


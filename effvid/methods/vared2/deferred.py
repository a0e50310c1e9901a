"""The copy of skipped frames deferred past the layers that commute with it (inference only).

In R(2+1)D's (2+1)D unit (a ``(1,3,3)`` spatial convolution, BatchNorm, ReLU, a ``(3,1,1)``
temporal convolution) VA-RED2 makes the spatial convolution dynamic. A clip whose spatial layer
computes every other frame (``R = 2``) would copy each computed frame to the next one, run the
BatchNorm and the ReLU on every frame, then the temporal convolution. The BatchNorm and the
ReLU act per value, so they commute with the copy; and the temporal convolution of repeated
frames ``x = (z0, z0, z1, z1, ...)`` with taps ``(w0, w1, w2)`` and zero padding 1 is a
convolution of the computed frames ``z`` with summed taps:

    out[2s]     = w0 z[s-1] + (w1 + w2) z[s]
    out[2s + 1] = (w0 + w1) z[s] + w2 z[s+1]

(at temporal stride 2, the temporal convolution of the first block of a stage, only the first
line, one output per computed frame). :class:`DeferredRepeat` runs its BatchNorm and ReLU on
the computed frames only, then one convolution of them whose ``2 C_out`` filters hold both tap
sets, ``(w0, w1 + w2, 0)`` and ``(0, w0 + w1, w2)``, and interleaves its two halves into the
output frames. What it saves is the copy of the spatial layer's output to the skipped frames
and half the ReLU; it adds a copy of the temporal layer's output, which has fewer channels
(R(2+1)D-18's first stage: 64 against 144). Measured alone on this project's CPU (1 thread, a
one-off script): 31.7 against 23.2 ms for the first stage's unit at 16x128x128, 0.27 against
0.21 ms for the demo network's at 16x48x48.

The convolution executes the MACs of the temporal convolution it replaces (half the frames
times twice the filters, one tap of three zero), so the cost the model reports and the
executed-op count stay those of the plain unit; a 2-tap form would skip the zero taps, a
quarter of those MACs counting the extra border frame, but then the cost model would have to
know which temporal convolutions follow a strided layer (left as an idea). The output equals
the plain unit's up to float summation order.

It applies where the unit runs folded for inference (:func:`effvid.models.prepare_for_inference`:
eval mode, gradients off, the BatchNorm absorbed by the dynamic convolution; so tracing the
unprepared model finds the plain unit's BatchNorm pairs), to each group of clips sharing one
pattern of non-zero gate weights whose single temporal choice is ``R = 2`` on an even number of
frames; every other group, and every other unit, runs the plain way. A clip's group is the same
alone as in a batch, so its output does not depend on its batch.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from effvid.methods.vared2.cheap import empty_as, place_repeated
from effvid.methods.vared2.conv import ComputedGroup, DynamicConv3d, assemble
from effvid.models.fold import folding, kept, running_weights, tensors_key
from effvid.models.onednn import conv3d


class DeferredRepeat(nn.Sequential):
    """A (2+1)D unit ``(DynamicConv3d, BatchNorm3d, ReLU, Conv3d (3,1,1))`` that defers the copy
    of the frames its dynamic convolution skips (module docstring): the same modules and
    state-dict keys as the ``nn.Sequential`` it was (:meth:`adopt`)."""

    @staticmethod
    def fits(module: nn.Module) -> bool:
        """Whether ``module`` is a plain ``nn.Sequential`` (2+1)D unit this class can take over."""
        if type(module) is not nn.Sequential or len(module) != 4:
            return False
        dynamic, norm, relu, temporal = module
        return (isinstance(dynamic, DynamicConv3d) and isinstance(norm, nn.BatchNorm3d)
                and isinstance(relu, nn.ReLU) and isinstance(temporal, nn.Conv3d)
                and tuple(temporal.kernel_size) == (3, 1, 1) and tuple(temporal.padding) == (1, 0, 0)
                and tuple(temporal.dilation) == (1, 1, 1) and temporal.groups == 1
                and temporal.padding_mode == "zeros" and temporal.stride[0] in (1, 2))

    @classmethod
    def adopt(cls, network: nn.Module) -> int:
        """Make every unit of ``network`` that :meth:`fits` a :class:`DeferredRepeat` (in place,
        its children kept); returns how many."""
        units = [m for m in network.modules() if cls.fits(m)]
        for unit in units:
            unit.__class__ = cls
        return len(units)

    def forward(self, x: Tensor) -> Tensor:
        dynamic, norm, relu, temporal = self
        if not (folding(self) and dynamic.runs_absorbed()):
            return super().forward(x)
        return assemble([(part.rows, self._tail(part)) for part in dynamic(x, groups=True)], x.shape[0])

    def _tail(self, part: ComputedGroup) -> Tensor:
        """BatchNorm, ReLU and temporal convolution of one group (module docstring)."""
        _, norm, relu, temporal = self
        z = part.out
        if part.stride == 1:
            return temporal(relu(norm(z)))
        if part.stride != 2 or part.frames % 2:
            full = empty_as(z, (z.shape[0], z.shape[1], part.frames, *z.shape[3:]))
            place_repeated(full, z, part.stride)
            return temporal(relu(norm(full)))
        z = relu(norm(z))
        weight, bias = self._summed_taps()
        stride = (1, *temporal.stride[1:])
        y = conv3d(z, weight, bias, stride, temporal.padding, temporal.dilation)
        if temporal.stride[0] == 2:
            return y
        channels = weight.shape[0] // 2
        out = empty_as(y, (y.shape[0], channels, 2 * y.shape[2], *y.shape[3:]))
        out.unflatten(2, (y.shape[2], 2)).copy_(y.unflatten(1, (2, channels)).permute(0, 2, 3, 1, 4, 5))
        return out

    def _summed_taps(self) -> tuple[Tensor, Tensor | None]:
        """The temporal convolution's filters (its BatchNorm folded in, if it absorbed one) as the
        summed taps of the module docstring, kept until its tensors change: the even output
        frames' ``(w0, w1 + w2, 0)``, then at temporal stride 1 the odd ones' ``(0, w0 + w1, w2)``."""
        temporal = self[3]
        weight, bias = running_weights(temporal)

        def summed() -> tuple[Tensor, Tensor | None]:
            w0, w1, w2 = weight[:, :, 0:1], weight[:, :, 1:2], weight[:, :, 2:3]
            zero = torch.zeros_like(w0)
            even = torch.cat([w0, w1 + w2, zero], dim=2)
            if temporal.stride[0] == 2:
                return even.contiguous(memory_format=torch.channels_last_3d), bias
            odd = torch.cat([zero, w0 + w1, w2], dim=2)
            both = torch.cat([even, odd]).contiguous(memory_format=torch.channels_last_3d)
            return both, None if bias is None else torch.cat([bias, bias])

        return kept(self.__dict__, "_summed_cache", tensors_key(weight, bias), summed)

"""3D convolutions sent to oneDNN at inference on the CPU, whatever their size.

PyTorch's CPU dispatcher chooses per call between oneDNN (``aten.mkldnn_convolution``) and its
own im2col kernel (``slow_conv3d``) by a size rule: at batch 1 a dense 3D convolution with
kernels of at most 3 goes to oneDNN only when ``N * C * T * H`` of its input exceeds 20480.
Measured on this project's 2-core CPU (one thread), the small R(2+1)D-18 of the demo (16x48x48)
spends 8.1 ms in its convolutions on the im2col kernel and 3.6 ms in oneDNN with channels-last
tensors, and a dynamic network that strides frames or keeps fewer input channels crosses the
rule layer by layer, so the same MACs run at two speeds in the base and in the dynamic model.

:func:`conv3d` runs a CPU float32 convolution that needs no gradient in oneDNN (anything else:
``F.conv3d``); :func:`route_conv3d` makes a model's plain ``nn.Conv3d`` modules call it
(:class:`OneDnnConv3d`: the same module, parameters and state-dict keys, another
``_conv_forward``). The executed-op counter counts ``aten.mkldnn_convolution`` as the
convolution it is (:mod:`effvid.cost.executed`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def uses_onednn(x: Tensor, weight: Tensor) -> bool:
    """Whether :func:`conv3d` sends this call to oneDNN: CPU, float32, no gradient needed."""
    needs_grad = torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad)
    return (x.device.type == "cpu" and x.dtype == torch.float32 and weight.dtype == torch.float32
            and not needs_grad and torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled)


def conv3d(x: Tensor, weight: Tensor, bias: Tensor | None, stride: Sequence[int], padding: Sequence[int],
           dilation: Sequence[int], groups: int = 1) -> Tensor:
    """``F.conv3d`` with explicit (tuple) padding, run in oneDNN when :func:`uses_onednn`."""
    if uses_onednn(x, weight):
        return torch.mkldnn_convolution(x, weight, bias, padding, stride, dilation, groups)
    return F.conv3d(x, weight, bias, stride, padding, dilation, groups)


class OneDnnConv3d(nn.Conv3d):
    """An ``nn.Conv3d`` whose zero-padded, explicitly padded forward goes through :func:`conv3d`."""

    def _conv_forward(self, input: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        if self.padding_mode != "zeros" or isinstance(self.padding, str):
            return super()._conv_forward(input, weight, bias)
        return conv3d(input, weight, bias, self.stride, self.padding, self.dilation, self.groups)  # type: ignore[arg-type]


def route_conv3d(model: nn.Module) -> nn.Module:
    """``model`` with every plain ``nn.Conv3d`` made an :class:`OneDnnConv3d` (in place)."""
    for module in model.modules():
        if type(module) is nn.Conv3d:
            module.__class__ = OneDnnConv3d
    return model

"""Helpers of the VA-RED2 tests: tiny specs, fixed gate weights and a record of the convolutions run."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.utils._python_dispatch import TorchDispatchMode

from effvid.methods.vared2 import DynamicConv3d, GateOutput
from effvid.models import default_spec
from effvid.spec import ArchSpec, MethodSpec


def tiny_spec(family: str = "r2plus1d_18", **settings: Any) -> ArchSpec:
    """A VA-RED2 spec of ``family`` at width 1/4, 4 frames of 32x32, 5 classes."""
    depth = 0.5 if family.startswith("r2plus1d") else 0.2
    return default_spec(family, num_classes=5, num_frames=4, frame_stride=1, crop_size=32, width_mult=0.25,
                        depth_mult=depth, train_resize=(32, 32), test_resize=32,
                        method=MethodSpec("vared2", settings))


def fix_gate(layer: DynamicConv3d, v_t: Tensor, v_c: Tensor) -> None:
    """Make ``layer``'s gate answer ``v_t (B, S_t)`` and ``v_c (B, S_c)`` for every input."""
    out = GateOutput(v_t=v_t, v_c=v_c, a_t=None, a_c=None)
    layer.gate.forward = lambda x: out  # type: ignore[method-assign]


def randomize_gates(model: torch.nn.Module, std: float = 1.0, seed: int = 0) -> None:
    """Gate output biases drawn from N(0, std): clips and layers then differ in what they compute."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in model.modules():
            if isinstance(layer, DynamicConv3d):
                bias = layer.gate.fc2.bias
                bias.copy_(torch.randn(bias.shape, generator=generator) * std)
                layer.gate.fc1.weight.mul_(30.0)
                layer.gate.fc2.weight.mul_(4.0)


class ConvRecorder(TorchDispatchMode):
    """Records ``(input shape, weight shape)`` of every convolution executed inside it (through
    PyTorch's dispatcher or straight in oneDNN, as inference runs them)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[tuple[int, ...], tuple[int, ...]]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in (torch.ops.aten.convolution.default, torch.ops.aten.mkldnn_convolution.default):
            self.calls.append((tuple(args[0].shape), tuple(args[1].shape)))
        return func(*args, **(kwargs or {}))

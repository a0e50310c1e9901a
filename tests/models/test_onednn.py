"""3D convolutions routed to oneDNN at inference: same outputs, same state dict, counted MACs,
and the autograd path untouched."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from effvid.cost.executed import count_executed
from effvid.cost.static import count_spec
from effvid.models import create_from_spec, default_spec, prepare_for_inference
from effvid.models.onednn import OneDnnConv3d, route_conv3d

SPEC = default_spec("r2plus1d_18", num_classes=5, num_frames=4, frame_stride=1, crop_size=32, width_mult=0.25,
                    depth_mult=0.5)


class Kernels(TorchDispatchMode):
    """The convolution kernels called inside it."""

    def __init__(self) -> None:
        super().__init__()
        self.names: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if "conv" in func.__name__:
            self.names.append(func.__name__)
        return func(*args, **(kwargs or {}))


def test_a_prepared_model_runs_every_3d_convolution_in_onednn_with_the_same_output():
    torch.manual_seed(0)
    model = create_from_spec(SPEC).eval()
    x = torch.randn(2, 3, 4, 32, 32)
    with torch.no_grad():
        expected = model(x)
    keys = list(model.state_dict())
    prepared = prepare_for_inference(model)
    assert list(prepared.state_dict()) == keys
    convs = [m for m in prepared.modules() if isinstance(m, nn.Conv3d)]
    assert convs and all(isinstance(m, OneDnnConv3d) for m in convs)
    kernels = Kernels()
    with torch.no_grad(), kernels:
        got = prepared(x)
    assert torch.allclose(got, expected, atol=1e-4)
    assert set(kernels.names) == {"mkldnn_convolution.default"}


def test_the_executed_counter_counts_onednn_convolutions_like_the_static_counter():
    model = prepare_for_inference(create_from_spec(SPEC))
    executed = count_executed(model, torch.randn(2, 3, 4, 32, 32))
    assert torch.allclose(executed.per_sample_gmacs, torch.full((2,), count_spec(SPEC).gmacs, dtype=torch.float64),
                          rtol=1e-9)


def test_training_keeps_the_autograd_kernel():
    conv = route_conv3d(nn.Sequential(nn.Conv3d(3, 4, 3, padding=1)))[0]
    x = torch.randn(1, 3, 4, 8, 8, requires_grad=True)
    kernels = Kernels()
    with kernels:
        out = conv(x)
    assert "mkldnn_convolution.default" not in kernels.names
    out.sum().backward()
    assert x.grad is not None and conv.weight.grad is not None

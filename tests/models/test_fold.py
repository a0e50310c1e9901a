"""BatchNorm folding at inference: every BatchNorm that reads only a convolution's output is
folded, the outputs and state dict stay what they were, training is untouched, and a BatchNorm
whose convolution output is read elsewhere or changed in place keeps running."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from effvid.models import create, prepare_for_inference
from effvid.models.fold import FoldedBatchNorm, fold_batchnorms, fold_into


def _norms(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, (nn.BatchNorm2d, nn.BatchNorm3d))]


@pytest.mark.parametrize("name", ["r2plus1d_18", "x3d_xs", "tsm_r18", "resnet18", "slowfast_4x16_r50", "i3d_inception_v2", "mobilenet_v2"])
def test_every_batchnorm_after_a_convolution_is_folded_and_outputs_are_kept(name):
    model = create(name, num_classes=5, width_mult=0.25, num_frames=8, crop_size=32).eval()
    clip = torch.randn(2, 3, 8, 32, 32)
    with torch.no_grad():
        expected = model(clip)
    keys = set(model.state_dict())
    prepare_for_inference(model)
    assert _norms(model) and all(isinstance(m, FoldedBatchNorm) for m in _norms(model))
    assert set(model.state_dict()) == keys
    with torch.no_grad():
        torch.testing.assert_close(model(clip), expected, rtol=1e-4, atol=1e-5)


def test_folding_is_an_inference_view_training_and_loaded_weights_are_followed():
    model = create("r2plus1d_18", num_classes=5, width_mult=0.25, num_frames=4, crop_size=32)
    other = create("r2plus1d_18", num_classes=5, width_mult=0.25, num_frames=4, crop_size=32)
    clip = torch.randn(2, 3, 4, 32, 32)
    prepare_for_inference(model)
    with torch.no_grad():
        model(clip)  # the folded weights are cached now
        model.load_state_dict(other.state_dict())
        torch.testing.assert_close(model(clip), other.eval()(clip), rtol=1e-4, atol=1e-5)
    model.train().requires_grad_(True)
    other.train()
    torch.manual_seed(0)
    trained = model(clip)
    torch.manual_seed(0)
    torch.testing.assert_close(trained, other(clip))  # BatchNorms run on batch statistics again
    trained.sum().backward()
    assert model.get_submodule("stem.0").weight.grad is not None


def test_fold_into_is_the_batchnorm_of_the_convolution():
    conv, bn = nn.Conv2d(3, 6, 3, padding=1, bias=True), nn.BatchNorm2d(6)
    with torch.no_grad():
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.normal_()
        bn.bias.normal_()
    bn.eval()
    x = torch.randn(2, 3, 8, 8)
    weight, bias = fold_into(conv.weight, conv.bias, bn)
    with torch.no_grad():
        torch.testing.assert_close(F.conv2d(x, weight, bias, padding=1), bn(conv(x)), rtol=1e-5, atol=1e-5)


class _Toy(nn.Module):
    """conv -> bn, with the convolution's output also added after the BatchNorm (``residual``)
    or changed in place before it (``in_place``)."""

    def __init__(self, how: str) -> None:
        super().__init__()
        self.how = how
        self.spec = SimpleNamespace(num_frames=2, test_crop=8)
        self.conv = nn.Conv3d(3, 4, 1)
        self.bn = nn.BatchNorm3d(4)
        with torch.no_grad():
            self.bn.running_mean.fill_(0.5)
            self.bn.running_var.fill_(4.0)

    def forward(self, x):
        y = self.conv(x)
        if self.how == "in_place":
            return self.bn(F.relu(y, inplace=True))
        out = self.bn(y)
        return out + y if self.how == "residual" else out


@pytest.mark.parametrize(("how", "folded"), [("plain", 1), ("residual", 0), ("in_place", 0)])
def test_a_convolution_output_read_elsewhere_or_changed_in_place_keeps_its_batchnorm(how, folded):
    model = _Toy(how).eval()
    x = torch.randn(1, 3, 2, 8, 8)
    with torch.no_grad():
        expected = model(x)
        assert fold_batchnorms(model) == folded
        torch.testing.assert_close(model(x), expected)
    assert isinstance(model.bn, FoldedBatchNorm) == bool(folded)

"""X3D (XS, S, M, L) in PyTorchVideo's module layout, so its state-dict keys are PyTorchVideo's.

Key layout (``Net.blocks``):

* ``blocks.0``: stem ``conv.conv_t`` (the *spatial* 1x3x3 conv, stride 2) then ``conv.conv_xy``
  (the *temporal* depthwise 5x1x1 conv) -- PyTorchVideo's names are swapped relative to their
  content and we keep them -- then ``norm``, ReLU;
* ``blocks.1-4``: ``res_blocks.{k}.branch1_conv/branch1_norm`` (block 0) and
  ``branch2.conv_a`` (1x1x1), ``norm_a``, ``conv_b`` (3x3x3 depthwise, spatial stride 2 in block
  0), ``norm_b.0`` (BN) and ``norm_b.1.block.{0,2}`` (squeeze-excitation, on even-indexed blocks
  only), Swish, ``conv_c`` (1x1x1), ``norm_c``; residual add then ReLU;
* ``blocks.5``: projected-pool head ``pool.pre_conv/pre_norm`` (1x1x1 to the last stage's inner
  width), ReLU, global average pool, ``pool.post_conv`` (1x1x1 to 2048, no BN), ReLU, dropout,
  ``proj``.

Widths: the published X3D widths (stem 24, stages 24/48/96/192, inner ``int(2.25 * out)``, head
2048) are scaled by the width multiplier with X3D's divisor-8 rule
(``round_channels(c, width_mult, 8)``); SE widths are ``round_channels(inner, 1/16, 8)``.
Depths: ``round_depth`` (ceil) on the published blocks per stage. Pooling is adaptive; at the
default input it equals PyTorchVideo's ``AvgPool3d((T, ceil(crop/32), ceil(crop/32)))``.

Activation (``ArchSpec.family`` ``{"activation": ...}``, :class:`X3DSettings`): ``"swish"``, the
published X3D, or ``"relu_except_se"``, the VA-RED2 thesis's variant ("we remove all the swish
non-linearity except those in SE layer", section 4.2): every bottleneck's Swish becomes a ReLU
and the squeeze-excitation is left as it is. In X3D the only Swish is the bottleneck's
``act_b`` (the SE computes ``sigmoid(W2 relu(W1 mean(x)))``, in PySlowFast and PyTorchVideo
alike), so the variant is ReLU-only outside the SE's sigmoid gate. Keys, parameters and MACs
are the same for both, so a checkpoint of one loads into the other.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from effvid.config import from_dict
from effvid.models.layers import Swish
from effvid.models.ptv_blocks import BottleneckBlock, PtvNet, ResBlock, ResStage, init_weights
from effvid.models.registry import register_model
from effvid.spec import ArchSpec, round_channels, round_depth

STEM_WIDTH = 24
STAGE_WIDTHS = (24, 48, 96, 192)
BOTTLENECK_FACTOR = 2.25
SE_RATIO = 1 / 16
HEAD_WIDTH = 2048
# Blocks per stage: ceil(depth_factor * (1, 2, 5, 3)) with depth factor 2.2 (XS/S/M) or 5.0 (L).
DEPTHS_M = (3, 5, 11, 7)
DEPTHS_L = (5, 10, 25, 15)

X3DActivation = Literal["swish", "relu_except_se"]


@dataclass(frozen=True)
class X3DSettings:
    """X3D's own ``ArchSpec.family`` settings: the bottleneck ``activation`` (module docstring)."""

    activation: X3DActivation = "swish"


def x3d_settings(spec: ArchSpec) -> X3DSettings:
    """The typed ``family`` settings of an X3D spec; an unknown key or value is a
    :class:`~effvid.errors.ConfigError` naming it."""
    return from_dict(X3DSettings, spec.family, source=f"{spec.name} ArchSpec.family")


class SqueezeExcitation3d(nn.Module):
    """Channel gating ``x * sigmoid(W2 relu(W1 mean(x)))``; fvcore's layout (1x1x1 convs in
    ``block.{0,2}``), which PyTorchVideo checkpoints use, unlike torchvision's ``fc1``/``fc2``."""

    def __init__(self, channels: int, reduced: int) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv3d(channels, reduced, kernel_size=1, bias=True),
            nn.ReLU(inplace=True),
            nn.Conv3d(reduced, channels, kernel_size=1, bias=True),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.block(x.mean(dim=(2, 3, 4), keepdim=True))


def x3d_bottleneck(*, dim_in: int, dim_inner: int, dim_out: int, spatial_stride: int, se_width: int,
                   activation: X3DActivation = "swish") -> BottleneckBlock:
    """``1x1x1 -> 3x3x3 depthwise (spatial stride) -> BN [-> SE] -> Swish -> 1x1x1``, BN after each conv.

    ``se_width == 0`` leaves out the squeeze-excitation (``norm_b.1`` is then an identity);
    ``activation="relu_except_se"`` puts a ReLU where the Swish is (the SE is unchanged).
    """
    se = SqueezeExcitation3d(dim_inner, se_width) if se_width else nn.Identity()
    return BottleneckBlock(
        conv_a=nn.Conv3d(dim_in, dim_inner, kernel_size=1, bias=False),
        norm_a=nn.BatchNorm3d(dim_inner),
        act_a=nn.ReLU(inplace=True),
        conv_b=nn.Conv3d(
            dim_inner,
            dim_inner,
            kernel_size=3,
            stride=(1, spatial_stride, spatial_stride),
            padding=1,
            groups=dim_inner,
            bias=False,
        ),
        norm_b=nn.Sequential(nn.BatchNorm3d(dim_inner), se),
        act_b=Swish() if activation == "swish" else nn.ReLU(inplace=True),
        conv_c=nn.Conv3d(dim_inner, dim_out, kernel_size=1, bias=False),
        norm_c=nn.BatchNorm3d(dim_out),
    )


class Conv2plus1d(nn.Module):
    """``conv_t`` then ``conv_xy`` (PyTorchVideo's names: ``conv_t`` is the spatial conv here)."""

    def __init__(self, conv_t: nn.Conv3d, conv_xy: nn.Conv3d) -> None:
        super().__init__()
        self.conv_t = conv_t
        self.conv_xy = conv_xy

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_xy(self.conv_t(x))


class X3DStem(nn.Module):
    """Spatial 1x3x3 conv (stride 2), temporal depthwise 5x1x1 conv, BN, ReLU."""

    def __init__(self, *, dim_in: int, dim_out: int) -> None:
        super().__init__()
        self.conv = Conv2plus1d(
            conv_t=nn.Conv3d(dim_in, dim_out, kernel_size=(1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1), bias=False),
            conv_xy=nn.Conv3d(dim_out, dim_out, kernel_size=(5, 1, 1), padding=(2, 0, 0), groups=dim_out, bias=False),
        )
        self.norm = nn.BatchNorm3d(dim_out)
        self.activation = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(self.norm(self.conv(x)))


class ProjectedPool(nn.Module):
    """1x1x1 conv + BN + ReLU, global average pool, 1x1x1 conv + ReLU: ``(B, C, T, H, W) -> (B, D)``."""

    def __init__(self, *, dim_in: int, dim_inner: int, dim_out: int) -> None:
        super().__init__()
        self.pre_conv = nn.Conv3d(dim_in, dim_inner, kernel_size=1, bias=False)
        self.pre_norm = nn.BatchNorm3d(dim_inner)
        self.pre_act = nn.ReLU(inplace=True)
        self.post_conv = nn.Conv3d(dim_inner, dim_out, kernel_size=1, bias=False)
        self.post_act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pre_act(self.pre_norm(self.pre_conv(x)))
        x = x.mean(dim=(2, 3, 4), keepdim=True)
        return self.post_act(self.post_conv(x)).flatten(1)


class X3DHead(nn.Module):
    """Projected pool, dropout, linear classifier ``proj``."""

    def __init__(self, *, dim_in: int, dim_inner: int, dim_out: int, num_classes: int, dropout: float) -> None:
        super().__init__()
        self.pool = ProjectedPool(dim_in=dim_in, dim_inner=dim_inner, dim_out=dim_out)
        self.dropout = nn.Dropout(dropout)
        self.proj = nn.Linear(dim_out, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.dropout(self.pool(x)))


class X3D(PtvNet):
    """X3D in PyTorchVideo's layout (see the module docstring).

    ``forward_features`` returns the res5 feature map ``(B, C, T, H/32, W/32)``;
    ``forward_head`` runs the projected-pool head and the classifier.
    """

    classifier_name = "blocks.5.proj"

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The res5 feature map ``(B, C, T, H/32, W/32)`` of a clip ``(B, 3, T, H, W)``."""
        for block in self.blocks[:5]:
            x = block(x)
        return x

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, classes)``: projected pool, dropout, ``proj``."""
        return self.blocks[5](x)


def build_x3d(
    *,
    num_classes: int,
    stage_depths: Sequence[int] = DEPTHS_M,
    width_mult: float = 1.0,
    depth_mult: float = 1.0,
    stem_width: int = STEM_WIDTH,
    stage_widths: Sequence[int] = STAGE_WIDTHS,
    bottleneck_factor: float = BOTTLENECK_FACTOR,
    se_ratio: float = SE_RATIO,
    head_width: int = HEAD_WIDTH,
    dropout: float = 0.5,
    in_channels: int = 3,
    activation: X3DActivation = "swish",
) -> X3D:
    """X3D with every hyperparameter an argument; defaults are X3D-M's architecture.
    ``activation`` is the bottleneck's (module docstring)."""

    def width(channels: int) -> int:
        return round_channels(channels, width_mult, 8)

    dim_in = width(stem_width)
    blocks: list[nn.Module] = [X3DStem(dim_in=in_channels, dim_out=dim_in)]
    for base_width, depth in zip(stage_widths, stage_depths):
        dim_out = width(base_width)
        dim_inner = int(bottleneck_factor * dim_out)
        se_width = round_channels(dim_inner, se_ratio, 8)
        res_blocks = []
        for k in range(round_depth(depth, depth_mult)):
            stride = 2 if k == 0 else 1
            block_in = dim_in if k == 0 else dim_out
            branch2 = x3d_bottleneck(
                dim_in=block_in,
                dim_inner=dim_inner,
                dim_out=dim_out,
                spatial_stride=stride,
                se_width=se_width if k % 2 == 0 else 0,
                activation=activation,
            )
            res_blocks.append(ResBlock(dim_in=block_in, dim_out=dim_out, spatial_stride=stride, branch2=branch2))
        blocks.append(ResStage(res_blocks))
        dim_in = dim_out
    head = X3DHead(
        dim_in=dim_in, dim_inner=dim_inner, dim_out=width(head_width), num_classes=num_classes, dropout=dropout
    )
    blocks.append(head)
    model = X3D(blocks)
    init_weights(model)
    return model


def _register(
    name: str,
    depths: Sequence[int],
    *,
    frames: int,
    stride: int,
    crop: int,
    train_resize: tuple[int, int],
    test_resize: int,
) -> None:
    spec = ArchSpec(
        name=name,
        num_classes=400,
        num_frames=frames,
        frame_stride=stride,
        crop_size=crop,
        train_resize=train_resize,
        test_resize=test_resize,
        dropout=0.5,
    )

    def builder(s: ArchSpec) -> X3D:
        return build_x3d(
            num_classes=s.num_classes,
            stage_depths=depths,
            width_mult=s.width_mult,
            depth_mult=s.depth_mult,
            dropout=s.dropout,
            activation=x3d_settings(s).activation,
        )

    builder.__name__ = name
    builder.__doc__ = f"{name}: X3D with blocks per stage {tuple(depths)} at {frames}x{crop}."
    register_model(name, default_spec=spec, kind="3d", spatial_stride=32)(builder)


# Inputs follow PySlowFast's X3D configs (frames, stride, train crop, jitter range, test short side).
_register("x3d_xs", DEPTHS_M, frames=4, stride=12, crop=160, train_resize=(182, 228), test_resize=182)
_register("x3d_s", DEPTHS_M, frames=13, stride=6, crop=160, train_resize=(182, 228), test_resize=182)
_register("x3d_m", DEPTHS_M, frames=16, stride=5, crop=224, train_resize=(256, 320), test_resize=256)
_register("x3d_l", DEPTHS_L, frames=16, stride=5, crop=312, train_resize=(356, 446), test_resize=356)

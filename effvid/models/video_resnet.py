"""R(2+1)D-18 and R3D-18 with torchvision's layout and parameter names.

At ``width_mult == depth_mult == 1`` the state dict matches torchvision's ``r2plus1d_18`` /
``r3d_18`` key for key and shape for shape (``stem``, ``layer1..4``, ``fc``). Each basic
block computes torchvision's mid width once, ``(Cin*Cout*27) // (Cin*9 + 3*Cout)``, and uses
it for both of its (2+1)D convs. Layers 2-4 stride 2 in time and space.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

from torch import Tensor, nn

from effvid.models.layers import (
    ClipClassifier,
    PreActivationBlock,
    add_resnet_stages,
    conv3d,
    downsample,
    init_weights,
)
from effvid.models.registry import register_model
from effvid.spec import ArchSpec, round_channels, round_depth

ConvBuilder = Callable[[int, int, int, int], nn.Module]
StemKind = Literal["r2plus1d", "r3d"]

KINETICS_MEAN_TV = (0.43216, 0.394666, 0.37645)
KINETICS_STD_TV = (0.22803, 0.22145, 0.216989)


def conv_2plus1d(in_channels: int, out_channels: int, mid_channels: int, stride: int = 1) -> nn.Sequential:
    """torchvision's ``Conv2Plus1D``: (1,3,3) spatial conv, BN, ReLU, (3,1,1) temporal conv."""
    return nn.Sequential(
        conv3d(in_channels, mid_channels, (1, 3, 3), stride=(1, stride, stride)),
        nn.BatchNorm3d(mid_channels),
        nn.ReLU(inplace=True),
        conv3d(mid_channels, out_channels, (3, 1, 1), stride=(stride, 1, 1)),
    )


def conv_3d(in_channels: int, out_channels: int, mid_channels: int, stride: int = 1) -> nn.Conv3d:
    """torchvision's ``Conv3DSimple``: one 3x3x3 conv (``mid_channels`` is unused)."""
    return conv3d(in_channels, out_channels, 3, stride=stride)


def block_mid_channels(in_channels: int, planes: int) -> int:
    """torchvision's per-block (2+1)D mid width, matching a full 3x3x3 conv's parameters."""
    return (in_channels * planes * 27) // (in_channels * 9 + 3 * planes)


class VideoBasicBlock(PreActivationBlock, nn.Module):
    """torchvision's video ``BasicBlock``: ``conv1 = (conv, BN, ReLU)``, ``conv2 = (conv, BN)``;
    ``relu(preact(conv2(conv1(x)) + shortcut))`` (``preact``: :class:`PreActivationBlock`)."""

    def __init__(self, in_channels: int, planes: int, *, conv_builder: ConvBuilder, stride: int = 1) -> None:
        super().__init__()
        mid = block_mid_channels(in_channels, planes)
        self.conv1 = nn.Sequential(conv_builder(in_channels, planes, mid, stride),
                                   nn.BatchNorm3d(planes), nn.ReLU(inplace=True))
        self.conv2 = nn.Sequential(conv_builder(planes, planes, mid, 1), nn.BatchNorm3d(planes))
        self.relu = nn.ReLU(inplace=True)
        self.out_channels = planes
        self.downsample = (downsample(in_channels, planes, stride, dims=3)
                           if stride != 1 or in_channels != planes else None)
        self.preact = nn.Identity()

    def residual_norm(self) -> nn.Module:
        return self.conv2[-1]

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(self.preact(self.conv2(self.conv1(x)) + identity))


def r2plus1d_stem(*, mid_channels: int = 45, out_channels: int = 64) -> nn.Sequential:
    """torchvision's ``R2Plus1dStem``: (1,7,7)/2 conv to 45, BN, ReLU, (3,1,1) conv, BN, ReLU."""
    return nn.Sequential(
        conv3d(3, mid_channels, (1, 7, 7), stride=(1, 2, 2)),
        nn.BatchNorm3d(mid_channels),
        nn.ReLU(inplace=True),
        conv3d(mid_channels, out_channels, (3, 1, 1)),
        nn.BatchNorm3d(out_channels),
        nn.ReLU(inplace=True),
    )


def r3d_stem(*, out_channels: int = 64) -> nn.Sequential:
    """torchvision's ``BasicStem``: (3,7,7) conv stride (1,2,2), BN, ReLU."""
    return nn.Sequential(conv3d(3, out_channels, (3, 7, 7), stride=(1, 2, 2)),
                         nn.BatchNorm3d(out_channels), nn.ReLU(inplace=True))


class VideoResNet(ClipClassifier):
    """Stem, four stages of :class:`VideoBasicBlock` (strides 1, 2, 2, 2), adaptive pool, fc."""

    stage_names = ("layer1", "layer2", "layer3", "layer4")

    def __init__(self, *, stem: nn.Module, stem_channels: int, conv_builder: ConvBuilder,
                 stage_blocks: Sequence[int], stage_widths: Sequence[int], num_classes: int,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.stem = stem
        self.num_features = add_resnet_stages(
            self, stem_channels, stage_blocks,
            lambda s, b, cin, stride: VideoBasicBlock(cin, stage_widths[s], conv_builder=conv_builder,
                                                      stride=stride))
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(self.num_features, num_classes)
        init_weights(self)

    def forward_features(self, x: Tensor) -> Tensor:
        """The last stage's feature map ``(B, C, t, h, w)``."""
        x = self.stem(x)
        for name in self.stage_names:
            x = getattr(self, name)(x)
        return x


def build_video_resnet(*, conv_type: StemKind, num_classes: int = 400,
                       stage_blocks: Sequence[int] = (2, 2, 2, 2),
                       stage_widths: Sequence[int] = (64, 128, 256, 512),
                       stem_channels: int = 64, stem_mid_channels: int = 45,
                       width_mult: float = 1.0, depth_mult: float = 1.0,
                       dropout: float = 0.0) -> VideoResNet:
    """An R(2+1)D (``conv_type="r2plus1d"``) or R3D video ResNet.

    Widths (stem, its 45-channel (2+1)D mid, stages) scale by ``width_mult`` and blocks per
    stage by ``depth_mult`` with :func:`round_channels` / :func:`round_depth`.
    """
    stem_out = round_channels(stem_channels, width_mult)
    if conv_type == "r2plus1d":
        stem = r2plus1d_stem(mid_channels=round_channels(stem_mid_channels, width_mult), out_channels=stem_out)
        builder: ConvBuilder = conv_2plus1d
    elif conv_type == "r3d":
        stem = r3d_stem(out_channels=stem_out)
        builder = conv_3d
    else:
        raise ValueError(f"conv_type must be 'r2plus1d' or 'r3d', got {conv_type!r}")
    return VideoResNet(
        stem=stem, stem_channels=stem_out, conv_builder=builder,
        stage_blocks=[round_depth(n, depth_mult) for n in stage_blocks],
        stage_widths=[round_channels(w, width_mult) for w in stage_widths],
        num_classes=num_classes, dropout=dropout,
    )


def _spec(name: str) -> ArchSpec:
    # PAS trains R(2+1)D-18 on 16 consecutive frames (stride 1), 128-pixel short side, 112 crop.
    return ArchSpec(name=name, num_classes=400, num_frames=16, frame_stride=1, crop_size=112,
                    train_resize=(128, 128), test_resize=128,
                    mean=KINETICS_MEAN_TV, std=KINETICS_STD_TV)


@register_model("r2plus1d_18", default_spec=_spec("r2plus1d_18"), kind="3d", spatial_stride=16)
def r2plus1d_18(spec: ArchSpec) -> VideoResNet:
    """R(2+1)D-18 (torchvision layout): 31,505,325 parameters and 40.519 GMACs at 16x112x112."""
    return build_video_resnet(conv_type="r2plus1d", num_classes=spec.num_classes,
                              width_mult=spec.width_mult, depth_mult=spec.depth_mult,
                              dropout=spec.dropout)


@register_model("r3d_18", default_spec=_spec("r3d_18"), kind="3d", spatial_stride=16)
def r3d_18(spec: ArchSpec) -> VideoResNet:
    """R3D-18 (torchvision layout): 33,371,472 parameters and 40.697 GMACs at 16x112x112."""
    return build_video_resnet(conv_type="r3d", num_classes=spec.num_classes,
                              width_mult=spec.width_mult, depth_mult=spec.depth_mult,
                              dropout=spec.dropout)

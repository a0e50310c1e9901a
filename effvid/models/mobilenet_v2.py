"""MobileNetV2 frame model with torchvision's layout and parameter names.

Keys match torchvision's ``mobilenet_v2`` (``features.*``, ``classifier.1``) at
``width_mult == depth_mult == 1``: 3,504,872 parameters and 0.301 GMACs per 224 frame with
1000 classes. Channels round to multiples of 8 (torchvision's ``_make_divisible``, which is
:func:`round_channels` with ``divisor=8``); blocks per stage scale by ``depth_mult``.
``shift_div > 0`` adds TSM's residual shift to the input of every residual block's branch.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from effvid.models.layers import ConvNormAct, FrameModel, TemporalShiftMixin, frame_spec, init_weights
from effvid.models.registry import register_model
from effvid.spec import ArchSpec, round_channels, round_depth

#: (expand ratio t, output channels c, blocks n, first stride s) per stage, as in the paper.
MOBILENET_V2_SETTING = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                        (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


class InvertedResidual(TemporalShiftMixin, nn.Module):
    """torchvision's ``InvertedResidual``: [1x1 expand], 3x3 depthwise, linear 1x1 projection."""

    def __init__(self, in_channels: int, out_channels: int, *, stride: int, expand_ratio: int,
                 shift_div: int = 0) -> None:
        super().__init__()
        hidden = int(round(in_channels * expand_ratio))
        self.use_res_connect = stride == 1 and in_channels == out_channels
        self.shift_div = shift_div if self.use_res_connect else 0
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvNormAct(in_channels, hidden, 1, activation=nn.ReLU6))
        layers += [
            ConvNormAct(hidden, hidden, 3, stride=stride, groups=hidden, activation=nn.ReLU6),
            nn.Conv2d(hidden, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
        ]
        self.conv = nn.Sequential(*layers)
        self.out_channels = out_channels

    def forward(self, x: Tensor) -> Tensor:
        if self.use_res_connect:
            return x + self.conv(self.shift_input(x))
        return self.conv(x)


class MobileNetV2(FrameModel):
    """MobileNetV2 applied frame by frame; ``features`` then ``classifier = (Dropout, Linear)``."""

    def __init__(self, *, num_classes: int = 1000, width_mult: float = 1.0, depth_mult: float = 1.0,
                 setting: Sequence[tuple[int, int, int, int]] = MOBILENET_V2_SETTING,
                 stem_channels: int = 32, last_channels: int = 1280, dropout: float = 0.2,
                 shift_div: int = 0) -> None:
        super().__init__()
        in_channels = round_channels(stem_channels, width_mult, 8)
        self.num_features = round_channels(last_channels, max(1.0, width_mult), 8)
        features: list[nn.Module] = [ConvNormAct(3, in_channels, 3, stride=2, activation=nn.ReLU6)]
        stage_ends = []
        for t, c, n, s in setting:
            out_channels = round_channels(c, width_mult, 8)
            for i in range(round_depth(n, depth_mult)):
                features.append(InvertedResidual(in_channels, out_channels, stride=s if i == 0 else 1,
                                                 expand_ratio=t, shift_div=shift_div))
                in_channels = out_channels
            stage_ends.append(len(features) - 1)
        features.append(ConvNormAct(in_channels, self.num_features, 1, activation=nn.ReLU6))
        self.features = nn.Sequential(*features)
        # Outputs at strides 4, 8, 16 and 32 (the last one after the 1x1 expansion to 1280).
        self.stage_names = tuple(f"features.{i}" for i in (stage_ends[1], stage_ends[2], stage_ends[4],
                                                             len(features) - 1))
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(self.num_features, num_classes))
        init_weights(self)


def build_mobilenet_v2(*, num_classes: int = 1000, width_mult: float = 1.0, depth_mult: float = 1.0,
                       dropout: float = 0.2, shift_div: int = 0) -> MobileNetV2:
    """MobileNetV2 at the given width and depth multipliers (torchvision's at 1.0)."""
    return MobileNetV2(num_classes=num_classes, width_mult=width_mult, depth_mult=depth_mult,
                       dropout=dropout, shift_div=shift_div)


@register_model("mobilenet_v2", default_spec=frame_spec("mobilenet_v2", dropout=0.2), kind="2d",
                spatial_stride=32)
def mobilenet_v2(spec: ArchSpec) -> MobileNetV2:
    """MobileNetV2 per frame: 3,504,872 parameters, 0.301 GMACs per 224 frame (1000 classes)."""
    return build_mobilenet_v2(num_classes=spec.num_classes, width_mult=spec.width_mult,
                              depth_mult=spec.depth_mult, dropout=spec.dropout)

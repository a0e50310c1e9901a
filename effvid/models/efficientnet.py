"""EfficientNet-B0..B3 frame models with torchvision's layout and parameter names.

Keys match torchvision's ``efficientnet_b0..b3`` (``features.*``, ``classifier.1``) at
``width_mult == depth_mult == 1``. MBConv blocks have squeeze-excitation (``block.*.fc1/fc2``,
squeeze width = block input // 4), SiLU and stochastic depth (linearly growing to 0.2 over
the blocks, active only in training). Family scaling: width x1.0/1.0/1.1/1.2, depth
x1.0/1.1/1.2/1.4, native crops 224/240/288/300; the spec's multipliers compound with these.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from torch import Tensor, nn

from effvid.models.layers import (
    ConvNormAct,
    FrameModel,
    SqueezeExcitation,
    Swish,
    frame_spec,
    init_weights,
    stochastic_depth,
)
from effvid.models.registry import register_model
from effvid.spec import ArchSpec, round_channels, round_depth

#: (expand ratio, kernel, first stride, input channels, output channels, blocks) of B0.
EFFICIENTNET_B0_SETTING = ((1, 3, 1, 32, 16, 1), (6, 3, 2, 16, 24, 2), (6, 5, 2, 24, 40, 2),
                           (6, 3, 2, 40, 80, 3), (6, 5, 1, 80, 112, 3), (6, 5, 2, 112, 192, 4),
                           (6, 3, 1, 192, 320, 1))


@dataclass(frozen=True)
class EfficientNetScale:
    """A compound-scaling point: width and depth coefficients, native crop and test short side
    (torchvision's eval transforms), head dropout."""

    width: float
    depth: float
    crop_size: int
    test_resize: int
    dropout: float


SCALES = {
    "efficientnet_b0": EfficientNetScale(1.0, 1.0, 224, 256, 0.2),
    "efficientnet_b1": EfficientNetScale(1.0, 1.1, 240, 255, 0.2),
    "efficientnet_b2": EfficientNetScale(1.1, 1.2, 288, 288, 0.3),
    "efficientnet_b3": EfficientNetScale(1.2, 1.4, 300, 320, 0.3),
}


class MBConv(nn.Module):
    """torchvision's ``MBConv``: [1x1 expand], kxk depthwise, SE, 1x1 projection; residual if shapes match."""

    def __init__(self, in_channels: int, out_channels: int, *, expand_ratio: int, kernel: int,
                 stride: int, drop_prob: float) -> None:
        super().__init__()
        self.use_res_connect = stride == 1 and in_channels == out_channels
        self.drop_prob = drop_prob
        hidden = round_channels(in_channels, expand_ratio, 8)
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvNormAct(in_channels, hidden, 1, activation=Swish))
        layers += [
            ConvNormAct(hidden, hidden, kernel, stride=stride, groups=hidden, activation=Swish),
            SqueezeExcitation(hidden, max(1, in_channels // 4), activation=Swish),
            ConvNormAct(hidden, out_channels, 1, activation=None),
        ]
        self.block = nn.Sequential(*layers)
        self.out_channels = out_channels

    def forward(self, x: Tensor) -> Tensor:
        out = self.block(x)
        if self.use_res_connect:
            out = stochastic_depth(out, self.drop_prob, self.training) + x
        return out


class EfficientNet(FrameModel):
    """EfficientNet applied frame by frame; ``features`` then ``classifier = (Dropout, Linear)``."""

    def __init__(self, *, num_classes: int = 1000, width_mult: float = 1.0, depth_mult: float = 1.0,
                 setting: Sequence[tuple[int, int, int, int, int, int]] = EFFICIENTNET_B0_SETTING,
                 dropout: float = 0.2, stochastic_depth_prob: float = 0.2) -> None:
        super().__init__()
        depths = [round_depth(n, depth_mult) for *_, n in setting]
        total_blocks = sum(depths)
        stem = round_channels(setting[0][3], width_mult, 8)
        features: list[nn.Module] = [ConvNormAct(3, stem, 3, stride=2, activation=Swish)]
        in_channels = stem
        block_id = 0
        for (expand, kernel, stride, _, out, _), blocks in zip(setting, depths, strict=True):
            out_channels = round_channels(out, width_mult, 8)
            stage = []
            for i in range(blocks):
                stage.append(MBConv(in_channels, out_channels, expand_ratio=expand, kernel=kernel,
                                    stride=stride if i == 0 else 1,
                                    drop_prob=stochastic_depth_prob * block_id / total_blocks))
                in_channels = out_channels
                block_id += 1
            features.append(nn.Sequential(*stage))
        self.num_features = 4 * in_channels
        features.append(ConvNormAct(in_channels, self.num_features, 1, activation=Swish))
        self.features = nn.Sequential(*features)
        # Outputs at strides 4, 8, 16 and 32 (the last one after the 1x1 head conv).
        self.stage_names = ("features.2", "features.3", "features.5", f"features.{len(features) - 1}")
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(self.num_features, num_classes))
        init_weights(self)


def build_efficientnet(*, num_classes: int = 1000, width_mult: float = 1.0, depth_mult: float = 1.0,
                       dropout: float = 0.2, stochastic_depth_prob: float = 0.2) -> EfficientNet:
    """An EfficientNet at compound width/depth coefficients (B0 at 1.0, 1.0)."""
    return EfficientNet(num_classes=num_classes, width_mult=width_mult, depth_mult=depth_mult,
                        dropout=dropout, stochastic_depth_prob=stochastic_depth_prob)


def _register(name: str) -> None:
    scale = SCALES[name]

    @register_model(name, default_spec=frame_spec(name, crop_size=scale.crop_size,
                                                  test_resize=scale.test_resize, dropout=scale.dropout),
                    kind="2d", spatial_stride=32)
    def build(spec: ArchSpec) -> EfficientNet:
        return build_efficientnet(num_classes=spec.num_classes, width_mult=scale.width * spec.width_mult,
                                  depth_mult=scale.depth * spec.depth_mult, dropout=spec.dropout)

    build.__name__ = name
    build.__doc__ = (f"{name}: EfficientNet at width x{scale.width}, depth x{scale.depth} of B0, "
                     f"native crop {scale.crop_size} (the spec's multipliers compound with these).")


for _name in SCALES:
    _register(_name)

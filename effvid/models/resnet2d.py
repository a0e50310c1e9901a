"""2D ResNet-18/34/50 frame models with torchvision's layout and parameter names.

The state dict matches torchvision's ``resnet18/34/50`` (``conv1``, ``bn1``, ``layer1..4``,
``fc``) at ``width_mult == depth_mult == 1``, so ImageNet weights load directly. Frames are
folded into the batch and the per-frame logits averaged (:class:`~effvid.models.layers.FrameModel`).
``shift_div > 0`` adds TSM's residual temporal shift to every block without changing a key.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from torch import Tensor, nn

from effvid.models.layers import (
    BasicBlock,
    Bottleneck,
    FrameModel,
    add_resnet_stages,
    conv2d,
    frame_spec,
    init_weights,
)
from effvid.models.registry import register_model
from effvid.spec import ArchSpec, round_channels, round_depth

BlockKind = Literal["basic", "bottleneck"]

STAGE_BLOCKS = {"resnet18": (2, 2, 2, 2), "resnet34": (3, 4, 6, 3), "resnet50": (3, 4, 6, 3)}
BLOCK_KIND: dict[str, BlockKind] = {"resnet18": "basic", "resnet34": "basic", "resnet50": "bottleneck"}


class ResNet2d(FrameModel):
    """torchvision's ImageNet ResNet applied frame by frame: 7x7/2 stem, max-pool, 4 stages, fc."""

    stage_names = ("layer1", "layer2", "layer3", "layer4")

    def __init__(self, *, block: BlockKind, stage_blocks: Sequence[int], stage_widths: Sequence[int],
                 stem_channels: int, num_classes: int, dropout: float = 0.0, shift_div: int = 0) -> None:
        super().__init__()
        block_cls = BasicBlock if block == "basic" else Bottleneck
        self.conv1 = conv2d(3, stem_channels, 7, stride=2)
        self.bn1 = nn.BatchNorm2d(stem_channels)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.num_features = add_resnet_stages(
            self, stem_channels, stage_blocks,
            lambda s, b, cin, stride: block_cls(cin, stage_widths[s], stride=stride, shift_div=shift_div))
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(self.num_features, num_classes)
        init_weights(self)

    def forward_frames(self, frames: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(frames))))
        for name in self.stage_names:
            x = getattr(self, name)(x)
        return x

    def classify(self, pooled: Tensor) -> Tensor:
        return self.fc(self.dropout(pooled))

    def reset_classifier(self, num_classes: int) -> None:
        """Replace ``fc`` with a freshly initialised ``Linear`` to ``num_classes``."""
        self.fc = nn.Linear(self.num_features, num_classes)
        init_weights(self.fc)


def build_resnet2d(*, block: BlockKind, stage_blocks: Sequence[int], num_classes: int = 1000,
                   stage_widths: Sequence[int] = (64, 128, 256, 512), stem_channels: int = 64,
                   width_mult: float = 1.0, depth_mult: float = 1.0, dropout: float = 0.0,
                   shift_div: int = 0) -> ResNet2d:
    """A 2D ResNet; widths scale by ``width_mult`` and blocks per stage by ``depth_mult``."""
    return ResNet2d(
        block=block,
        stage_blocks=[round_depth(n, depth_mult) for n in stage_blocks],
        stage_widths=[round_channels(w, width_mult) for w in stage_widths],
        stem_channels=round_channels(stem_channels, width_mult),
        num_classes=num_classes, dropout=dropout, shift_div=shift_div,
    )


def resnet_from_spec(depth_name: str, spec: ArchSpec, *, shift_div: int = 0) -> ResNet2d:
    """``resnet18``/``resnet34``/``resnet50`` built at ``spec``'s width, depth, classes, dropout."""
    return build_resnet2d(block=BLOCK_KIND[depth_name], stage_blocks=STAGE_BLOCKS[depth_name],
                          num_classes=spec.num_classes, width_mult=spec.width_mult,
                          depth_mult=spec.depth_mult, dropout=spec.dropout, shift_div=shift_div)


@register_model("resnet18", default_spec=frame_spec("resnet18"), kind="2d", spatial_stride=32)
def resnet18(spec: ArchSpec) -> ResNet2d:
    """ResNet-18 per frame: 11,689,512 parameters, 1.814 GMACs per 224 frame (1000 classes)."""
    return resnet_from_spec("resnet18", spec)


@register_model("resnet34", default_spec=frame_spec("resnet34"), kind="2d", spatial_stride=32)
def resnet34(spec: ArchSpec) -> ResNet2d:
    """ResNet-34 per frame: 21,797,672 parameters, 3.664 GMACs per 224 frame (1000 classes)."""
    return resnet_from_spec("resnet34", spec)


@register_model("resnet50", default_spec=frame_spec("resnet50"), kind="2d", spatial_stride=32)
def resnet50(spec: ArchSpec) -> ResNet2d:
    """ResNet-50 per frame: 25,557,032 parameters, 4.089 GMACs per 224 frame (1000 classes)."""
    return resnet_from_spec("resnet50", spec)

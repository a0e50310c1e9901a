"""2D ResNet-18/34/50 frame models with torchvision's layout and parameter names.

The state dict matches torchvision's ``resnet18/34/50`` (``conv1``, ``bn1``, ``layer1..4``,
``fc``) at ``width_mult == depth_mult == 1``, so ImageNet weights load directly. Frames are
folded into the batch and the per-frame logits averaged (:class:`~effvid.models.layers.FrameModel`).
``shift_div > 0`` adds TSM's residual temporal shift to every block without changing a key.

The residual block is an argument (:class:`BlockFactory`): the standard ``BasicBlock`` /
``Bottleneck`` by default, or any block with their constructor signature (D-STEP's gated
blocks), so a method reuses the stem, stages, head and weights import unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

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


class BlockFactory(Protocol):
    """A 2D residual block class or factory, shaped like ``BasicBlock`` and ``Bottleneck``.

    ``factory(in_channels, planes, *, stride, shift_div)`` builds a block mapping
    ``(N, in_channels, H, W)`` to ``(N, out_channels, H / stride, W / stride)``; the block
    exposes ``out_channels`` and the factory ``expansion`` (``out_channels / planes``).
    ``shift_div`` is TSM's residual shift (0: none).
    """

    expansion: int

    def __call__(self, in_channels: int, planes: int, *, stride: int, shift_div: int) -> nn.Module: ...


STAGE_BLOCKS = {"resnet18": (2, 2, 2, 2), "resnet34": (3, 4, 6, 3), "resnet50": (3, 4, 6, 3)}
STANDARD_BLOCK: dict[str, BlockFactory] = {"resnet18": BasicBlock, "resnet34": BasicBlock, "resnet50": Bottleneck}


class ResNet2d(FrameModel):
    """torchvision's ImageNet ResNet applied frame by frame: 7x7/2 stem, max-pool, 4 stages, fc.

    Stage ``s`` holds ``stage_blocks[s]`` blocks ``block(cin, stage_widths[s], stride=...,
    shift_div=shift_div)``, the first of stages 2-4 with stride 2.
    """

    classifier_name = "fc"
    stage_names = ("layer1", "layer2", "layer3", "layer4")

    def __init__(self, *, block: BlockFactory, stage_blocks: Sequence[int], stage_widths: Sequence[int],
                 stem_channels: int, num_classes: int, dropout: float = 0.0, shift_div: int = 0) -> None:
        super().__init__()
        self.conv1 = conv2d(3, stem_channels, 7, stride=2)
        self.bn1 = nn.BatchNorm2d(stem_channels)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.num_features = add_resnet_stages(
            self, stem_channels, stage_blocks,
            lambda s, b, cin, stride: block(cin, stage_widths[s], stride=stride, shift_div=shift_div))
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(self.num_features, num_classes)
        init_weights(self)

    def forward_frames(self, frames: Tensor) -> Tensor:
        """The last stage's feature maps ``(N, C', H/32, W/32)`` of frames ``(N, 3, H, W)``."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(frames))))
        for name in self.stage_names:
            x = getattr(self, name)(x)
        return x

    def classify(self, pooled: Tensor) -> Tensor:
        """Logits of pooled features: dropout, then ``fc``."""
        return self.fc(self.dropout(pooled))


def build_resnet2d(*, block: BlockFactory, stage_blocks: Sequence[int], num_classes: int = 1000,
                   stage_widths: Sequence[int] = (64, 128, 256, 512), stem_channels: int = 64,
                   width_mult: float = 1.0, depth_mult: float = 1.0, dropout: float = 0.0,
                   shift_div: int = 0) -> ResNet2d:
    """A 2D ResNet of ``block`` residual blocks; widths scale by ``width_mult`` and blocks per
    stage by ``depth_mult`` (:func:`round_channels` / :func:`round_depth`)."""
    return ResNet2d(
        block=block,
        stage_blocks=[round_depth(n, depth_mult) for n in stage_blocks],
        stage_widths=[round_channels(w, width_mult) for w in stage_widths],
        stem_channels=round_channels(stem_channels, width_mult),
        num_classes=num_classes, dropout=dropout, shift_div=shift_div,
    )


def resnet_from_spec(depth_name: str, spec: ArchSpec, *, shift_div: int = 0,
                     block: BlockFactory | None = None) -> ResNet2d:
    """``resnet18``/``resnet34``/``resnet50`` built at ``spec``'s width, depth, classes, dropout.

    ``block`` replaces the depth's standard block (``BasicBlock`` for 18/34, ``Bottleneck`` for 50).
    """
    return build_resnet2d(block=STANDARD_BLOCK[depth_name] if block is None else block,
                          stage_blocks=STAGE_BLOCKS[depth_name], num_classes=spec.num_classes,
                          width_mult=spec.width_mult, depth_mult=spec.depth_mult, dropout=spec.dropout,
                          shift_div=shift_div)


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

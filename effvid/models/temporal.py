"""TSN and TSM video models built on the 2D frame backbones.

TSN: a 2D backbone on ``num_frames`` segment frames (``sampling="segments"``) with average
consensus of the per-frame logits (:class:`~effvid.models.layers.FrameModel`). TSM adds the
residual temporal shift: in every residual block, 1/8 of the channels of the branch input move
one frame back and 1/8 one frame forward (zero-padded) before the block's first conv; the
shortcut keeps the unshifted input. The shift has no parameters, so TSM's state dict equals
the 2D backbone's and ImageNet torchvision weights load directly.
"""

from __future__ import annotations

from effvid.models.layers import frame_spec
from effvid.models.mobilenet_v2 import MobileNetV2, build_mobilenet_v2
from effvid.models.registry import register_model
from effvid.models.resnet2d import ResNet2d, resnet_from_spec
from effvid.spec import ArchSpec

#: TSM shifts ``C / TSM_SHIFT_DIV`` channels each way.
TSM_SHIFT_DIV = 8


def _video_spec(name: str) -> ArchSpec:
    # Kinetics-400, 8 segments at 224 (256 test side), Dropout 0.5 before the classifier.
    return frame_spec(name, num_classes=400, dropout=0.5)


@register_model("tsn_r18", default_spec=_video_spec("tsn_r18"), kind="2d", spatial_stride=32)
def tsn_r18(spec: ArchSpec) -> ResNet2d:
    """TSN with a ResNet-18 backbone."""
    return resnet_from_spec("resnet18", spec)


@register_model("tsn_r50", default_spec=_video_spec("tsn_r50"), kind="2d", spatial_stride=32)
def tsn_r50(spec: ArchSpec) -> ResNet2d:
    """TSN with a ResNet-50 backbone."""
    return resnet_from_spec("resnet50", spec)


@register_model("tsm_r18", default_spec=_video_spec("tsm_r18"), kind="2d", spatial_stride=32)
def tsm_r18(spec: ArchSpec) -> ResNet2d:
    """TSM (residual shift, 1/8 each way) on ResNet-18."""
    return resnet_from_spec("resnet18", spec, shift_div=TSM_SHIFT_DIV)


@register_model("tsm_r50", default_spec=_video_spec("tsm_r50"), kind="2d", spatial_stride=32)
def tsm_r50(spec: ArchSpec) -> ResNet2d:
    """TSM (residual shift, 1/8 each way) on ResNet-50."""
    return resnet_from_spec("resnet50", spec, shift_div=TSM_SHIFT_DIV)


@register_model("tsm_mobilenet_v2", default_spec=_video_spec("tsm_mobilenet_v2"), kind="2d", spatial_stride=32)
def tsm_mobilenet_v2(spec: ArchSpec) -> MobileNetV2:
    """TSM on MobileNetV2: the shift is applied to the branch input of every residual block."""
    return build_mobilenet_v2(num_classes=spec.num_classes, width_mult=spec.width_mult,
                              depth_mult=spec.depth_mult, dropout=spec.dropout, shift_div=TSM_SHIFT_DIV)

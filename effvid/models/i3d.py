"""I3D ResNet-50: ResNet-50 inflated to 3D as in PyTorchVideo's ``i3d_r50`` / PySlowFast's I3D.

* stem: ``(5,7,7)`` conv stride ``(1,2,2)``, BN, ReLU, ``(1,3,3)`` max-pool stride ``(1,2,2)``;
* a ``(2,1,1)`` temporal max-pool (stride 2) after ``layer1`` (PySlowFast's ``pool2``);
* bottlenecks whose first 1x1 conv is ``(3,1,1)`` on the PySlowFast "i3d" pattern: every
  block of ``layer1``, blocks 0, 2, ... of ``layer2``/``layer3``, block 1 of ``layer4``;
  the 3x3 conv is ``(1,3,3)`` and carries the spatial stride; no other temporal stride.

Parameter names follow torchvision's 2D ResNet-50 (``conv1``, ``bn1``, ``layer1..4``, ``fc``),
so an ImageNet ResNet-50 inflates key for key. Default input is the common 8x8 setting:
8 frames at stride 8, 224 crop (256 test side), Dropout 0.5 before ``fc``.

The residual block is an argument (:class:`InflatedBlockFactory`): :class:`InflatedBottleneck`
by default, or any block with its constructor signature.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from torch import Tensor, nn

from effvid.models.layers import Bottleneck, ClipClassifier, add_resnet_stages, conv3d, init_weights
from effvid.models.registry import register_model
from effvid.spec import ArchSpec, round_channels, round_depth

#: Temporal kernel of conv1 per stage, cycled over the blocks of that stage.
I3D_TEMPORAL_KERNELS = ((3,), (3, 1), (3, 1), (1, 3))


class InflatedBlockFactory(Protocol):
    """A 3D residual block class or factory, shaped like :class:`InflatedBottleneck`.

    ``factory(in_channels, planes, *, stride, temporal_kernel)`` builds a block mapping
    ``(B, in_channels, T, H, W)`` to ``(B, out_channels, T, H / stride, W / stride)`` (``stride``
    is spatial only); the block exposes ``out_channels`` and the factory ``expansion``
    (``out_channels / planes``). ``temporal_kernel`` is the block's temporal extent (1 or 3 in I3D).
    """

    expansion: int

    def __call__(self, in_channels: int, planes: int, *, stride: int, temporal_kernel: int) -> nn.Module: ...


class InflatedBottleneck(Bottleneck):
    """The ResNet-50 bottleneck inflated to 3D: ``(temporal_kernel, 1, 1)`` conv1, ``(1, 3, 3)``
    conv2 with the spatial stride, 1x1x1 conv3 (torchvision's 2D keys)."""

    def __init__(self, in_channels: int, planes: int, *, stride: int = 1, temporal_kernel: int = 1) -> None:
        super().__init__(in_channels, planes, stride=stride, dims=3, temporal_kernel=temporal_kernel)


class I3DResNet(ClipClassifier):
    """Inflated ResNet: stem, ``layer1``, temporal pool, ``layer2..4``, adaptive pool, fc.

    Block ``b`` of stage ``s`` is ``block(cin, stage_widths[s], stride=..., temporal_kernel=k)``
    with ``k`` cycled from ``temporal_kernels[s]``; the first of stages 2-4 has spatial stride 2.
    """

    stage_names = ("layer1", "layer2", "layer3", "layer4")

    def __init__(self, *, stage_blocks: Sequence[int], stage_widths: Sequence[int], stem_channels: int,
                 temporal_kernels: Sequence[Sequence[int]], num_classes: int, stem_temporal_kernel: int = 5,
                 dropout: float = 0.5, block: InflatedBlockFactory = InflatedBottleneck) -> None:
        super().__init__()
        self.conv1 = conv3d(3, stem_channels, (stem_temporal_kernel, 7, 7), stride=(1, 2, 2))
        self.bn1 = nn.BatchNorm3d(stem_channels)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))
        self.pool2 = nn.MaxPool3d((2, 1, 1), stride=(2, 1, 1))
        self.num_features = add_resnet_stages(
            self, stem_channels, stage_blocks,
            lambda s, b, cin, stride: block(cin, stage_widths[s], stride=stride,
                                            temporal_kernel=temporal_kernels[s][b % len(temporal_kernels[s])]))
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(self.num_features, num_classes)
        init_weights(self)

    def forward_features(self, x: Tensor) -> Tensor:
        """The last stage's feature map ``(B, C', T/2, H/32, W/32)``."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.pool2(self.layer1(x))
        return self.layer4(self.layer3(self.layer2(x)))


def build_i3d_resnet(*, num_classes: int = 400, stage_blocks: Sequence[int] = (3, 4, 6, 3),
                     stage_widths: Sequence[int] = (64, 128, 256, 512), stem_channels: int = 64,
                     temporal_kernels: Sequence[Sequence[int]] = I3D_TEMPORAL_KERNELS,
                     stem_temporal_kernel: int = 5, width_mult: float = 1.0, depth_mult: float = 1.0,
                     dropout: float = 0.5, block: InflatedBlockFactory = InflatedBottleneck) -> I3DResNet:
    """An inflated ResNet of ``block`` residual blocks (I3D ResNet-50 by default); widths scale by
    ``width_mult`` and blocks per stage by ``depth_mult``."""
    return I3DResNet(
        stage_blocks=[round_depth(n, depth_mult) for n in stage_blocks],
        stage_widths=[round_channels(w, width_mult) for w in stage_widths],
        stem_channels=round_channels(stem_channels, width_mult),
        temporal_kernels=temporal_kernels, stem_temporal_kernel=stem_temporal_kernel,
        num_classes=num_classes, dropout=dropout, block=block,
    )


@register_model("i3d_r50", default_spec=ArchSpec(name="i3d_r50", num_classes=400, num_frames=8, frame_stride=8,
                                                 crop_size=224, train_resize=(256, 320), test_resize=256,
                                                 dropout=0.5),
                kind="3d", spatial_stride=32, min_frames=2)
def i3d_r50(spec: ArchSpec) -> I3DResNet:
    """I3D ResNet-50 (8x8): 28.04 M parameters with 400 classes."""
    return build_i3d_resnet(num_classes=spec.num_classes, width_mult=spec.width_mult,
                            depth_mult=spec.depth_mult, dropout=spec.dropout)

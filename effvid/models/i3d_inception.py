"""I3D-InceptionV2: BN-Inception (Ioffe and Szegedy 2015) inflated to 3D as in I3D (Carreira and
Zisserman 2017): the I3D of the VA-RED2 thesis, its "I3D-InceptionV2" (for which it cites
Carreira and Zisserman and Xie et al. 2018).

Layout (module names in brackets; every convolution is a :class:`Unit3d` ``conv``/``bn``/``relu``):

* stem: ``conv1`` 7x7x7 stride 2 in time and space, ``pool1`` 1x3x3 max-pool stride (1,2,2),
  ``conv2_reduce`` 1x1x1 (64), ``conv2`` 3x3x3 (192), ``pool2`` 1x3x3 max-pool stride (1,2,2):
  I3D's stem (temporal stride 2 in the first conv, none in the first two pools);
* ``mixed3`` (3a, 3b, 3c), ``mixed4`` (4a-4e), ``mixed5`` (5a, 5b), BN-Inception's modules
  with the widths of the Caffe BN-Inception that TSN and TSM use (:data:`BN_INCEPTION`), each
  module ``branch1x1``, ``branch3x3`` (``reduce``, ``conv``), ``branch3x3dbl`` (``reduce``,
  ``conv1``, ``conv2``) and ``branch_pool`` (``pool``, ``proj``), concatenated in that order.
  Every kxk kernel is inflated to kxkxk (3x3 convolutions and the branch pools to 3x3x3, as
  I3D does). The reduction modules 3c and 4e stride by 2 in time and space (their
  stride-2 3x3x3 convolutions and a 3x3x3 max-pool pass-through): together with ``conv1``
  that is I3D's temporal downsampling (``T/2`` in stage 3, ``T/4`` in 4, ``T/8`` in 5, where
  I3D has its stride-2 pools before Mixed_4 and Mixed_5);
* head: global average pool, dropout, ``fc`` (I3D's 2x7x7 average pool and 1x1x1 logits conv,
  averaged over time, cost the same MACs per clip up to the pooled-window count).

Cost, in effvid's convention (conv + linear MACs, BN excluded), against the thesis's 56.0
"GFLOPs" for I3D at 16 frames, 256 px (Table 4.2): ``effvid flops i3d_inception_v2 --frames 16
--size 256`` gives 43.14 GMACs (33.03 at the default 16 x 224 crop; 43.30 with BN). The gap is
neither the input size (both are 256 px) nor the counting (BN adds 0.4%, and the thesis's X3D-M
figure, 6.20, is our 6.19 for the same network): it is the temporal downsampling, which the
thesis does not state. BN-Inception downsamples inside its reduction modules 3c and 4e, where
the Inception-v1 of the I3D paper has separate stride-2 pools; inflated with I3D's rule
(symmetric strides in every pool after the first two) they halve the frames too, so stage 5
sees ``T/8``, as here. Striding them in space only (``ArchSpec.family``
``{"reduction_temporal_stride": 1}``, ``T/2`` from ``conv1`` to the end) gives 57.99 GMACs,
3.6% above the thesis's figure (its R(2+1)D-18 figures are 4-5% above our count of that network
too), so that is most likely the network the thesis measured. The registered default keeps
Carreira and Zisserman's inflation; VA-RED2's savings are ratios against the model's own base
either way.

Width and depth multipliers: every branch width (and the stem's) is scaled by
``round_channels(c, width_mult)``; the depth multiplier scales, with ``round_depth``, the
modules before the last of each stage (3a-3b, 4a-4d, 5a), dropping the last of them or
repeating it; the last module of each stage (the reduction modules 3c and 4e, and 5b) is kept,
and with it every spatial and temporal stride.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from effvid.config import from_dict
from effvid.models.layers import ClipClassifier, init_weights, triple
from effvid.models.registry import register_model
from effvid.spec import ArchSpec, round_channels, round_depth

PoolKind = Literal["avg", "max"]


@dataclass(frozen=True)
class InceptionConfig:
    """One BN-Inception module's branch widths: ``out_1x1`` (0: no 1x1 branch), the 3x3 branch
    ``reduce_3x3 -> out_3x3``, the double-3x3 branch ``reduce_dbl -> out_dbl -> out_dbl``, the
    pool branch's ``pool`` kind and ``proj`` width (0: the pooled input passes through), and the
    module's spatial ``stride`` (2: a reduction module)."""

    out_1x1: int
    reduce_3x3: int
    out_3x3: int
    reduce_dbl: int
    out_dbl: int
    pool: PoolKind
    proj: int
    stride: int = 1

    def scaled(self, width_mult: float) -> InceptionConfig:
        """The same module with every width scaled by ``round_channels(c, width_mult)`` (0 stays 0)."""
        def w(c: int) -> int:
            return round_channels(c, width_mult) if c else 0
        return InceptionConfig(w(self.out_1x1), w(self.reduce_3x3), w(self.out_3x3), w(self.reduce_dbl),
                               w(self.out_dbl), self.pool, w(self.proj), self.stride)


#: BN-Inception's modules per stage (Caffe BN-Inception, as in TSN), the last of stages 3 and 4
#: a stride-2 reduction module.
BN_INCEPTION: tuple[tuple[InceptionConfig, ...], ...] = (
    (InceptionConfig(64, 64, 64, 64, 96, "avg", 32),
     InceptionConfig(64, 64, 96, 64, 96, "avg", 64),
     InceptionConfig(0, 128, 160, 64, 96, "max", 0, stride=2)),
    (InceptionConfig(224, 64, 96, 96, 128, "avg", 128),
     InceptionConfig(192, 96, 128, 96, 128, "avg", 128),
     InceptionConfig(160, 128, 160, 128, 160, "avg", 128),
     InceptionConfig(96, 128, 192, 160, 192, "avg", 128),
     InceptionConfig(0, 128, 192, 192, 256, "max", 0, stride=2)),
    (InceptionConfig(352, 192, 320, 160, 224, "avg", 128),
     InceptionConfig(352, 192, 320, 192, 224, "max", 128)),
)


class Unit3d(nn.Module):
    """``Conv3d`` (no bias, ``k // 2`` padding) then BatchNorm and ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int | tuple[int, int, int], *,
                 stride: int | tuple[int, int, int] = 1) -> None:
        super().__init__()
        kernel3 = triple(kernel)
        self.conv = nn.Conv3d(in_channels, out_channels, kernel3, stride=triple(stride),
                              padding=tuple(k // 2 for k in kernel3), bias=False)
        self.bn = nn.BatchNorm3d(out_channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.bn(self.conv(x)))


class PaddedAvgPool3d(nn.Module):
    """A 3x3x3 average pool, stride 1, over the input zero-padded by one on every side (every
    window divides by 27, Caffe's and ``count_include_pad``'s convention); unlike
    ``nn.AvgPool3d``, it accepts inputs shorter than the kernel (2 frames in stage 5 of a
    16-frame clip)."""

    def forward(self, x: Tensor) -> Tensor:
        return F.avg_pool3d(F.pad(x, (1, 1, 1, 1, 1, 1)), 3, stride=1)


class InceptionModule3d(nn.Module):
    """A BN-Inception module inflated to 3D: four branches concatenated on channels (module
    docstring); ``out_channels`` is their summed width. A reduction module (``config.stride``
    2) strides by 2 in space and by ``temporal_stride`` in time."""

    def __init__(self, in_channels: int, config: InceptionConfig, *, temporal_stride: int = 2) -> None:
        super().__init__()
        c = config
        stride = (temporal_stride if c.stride > 1 else 1, c.stride, c.stride)
        self.branch1x1 = Unit3d(in_channels, c.out_1x1, 1) if c.out_1x1 else None
        self.branch3x3 = nn.Sequential()
        self.branch3x3.add_module("reduce", Unit3d(in_channels, c.reduce_3x3, 1))
        self.branch3x3.add_module("conv", Unit3d(c.reduce_3x3, c.out_3x3, 3, stride=stride))
        self.branch3x3dbl = nn.Sequential()
        self.branch3x3dbl.add_module("reduce", Unit3d(in_channels, c.reduce_dbl, 1))
        self.branch3x3dbl.add_module("conv1", Unit3d(c.reduce_dbl, c.out_dbl, 3))
        self.branch3x3dbl.add_module("conv2", Unit3d(c.out_dbl, c.out_dbl, 3, stride=stride))
        if c.pool == "avg" and c.stride != 1:
            raise ValueError("a strided BN-Inception module pools with max (its pass-through branch)")
        pool = PaddedAvgPool3d() if c.pool == "avg" else nn.MaxPool3d(3, stride=stride, padding=1)
        self.branch_pool = nn.Sequential()
        self.branch_pool.add_module("pool", pool)
        if c.proj:
            self.branch_pool.add_module("proj", Unit3d(in_channels, c.proj, 1))
        self.out_channels = c.out_1x1 + c.out_3x3 + c.out_dbl + (c.proj or in_channels)

    def forward(self, x: Tensor) -> Tensor:
        branches = [self.branch3x3(x), self.branch3x3dbl(x), self.branch_pool(x)]
        if self.branch1x1 is not None:
            branches.insert(0, self.branch1x1(x))
        return torch.cat(branches, dim=1)


class I3DInception(ClipClassifier):
    """I3D on BN-Inception: stem, stages ``mixed3..5`` of Inception modules, average pool, ``fc``.

    ``forward_features`` returns the ``mixed5`` map ``(B, C', ~T/8, H/32, W/32)``.
    """

    stage_names = ("mixed3", "mixed4", "mixed5")

    def __init__(self, *, stages: Sequence[Sequence[InceptionConfig]], stem_channels: int, stem_inner: int,
                 stem_width: int, num_classes: int, reduction_temporal_stride: int = 2,
                 dropout: float = 0.5) -> None:
        super().__init__()
        self.conv1 = Unit3d(3, stem_channels, 7, stride=2)
        self.pool1 = nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))
        self.conv2_reduce = Unit3d(stem_channels, stem_inner, 1)
        self.conv2 = Unit3d(stem_inner, stem_width, 3)
        self.pool2 = nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))
        channels = stem_width
        for name, configs in zip(self.stage_names, stages):
            stage = nn.Sequential()
            for k, config in enumerate(configs):
                module = InceptionModule3d(channels, config, temporal_stride=reduction_temporal_stride)
                stage.add_module(str(k), module)
                channels = module.out_channels
            self.add_module(name, stage)
        self.num_features = channels
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(channels, num_classes)
        init_weights(self)

    def forward_features(self, x: Tensor) -> Tensor:
        """The ``mixed5`` feature map of a clip ``(B, 3, T, H, W)``."""
        x = self.pool1(self.conv1(x))
        x = self.pool2(self.conv2(self.conv2_reduce(x)))
        return self.mixed5(self.mixed4(self.mixed3(x)))


def stage_modules(configs: Sequence[InceptionConfig], depth_mult: float) -> list[InceptionConfig]:
    """A stage's modules under ``depth_mult``: ``round_depth`` of the modules before the last
    (the reduction module of stages 3 and 4, 5b in stage 5), truncated or extended by repeating
    the last of them, then the last module itself."""
    body, last = list(configs[:-1]), configs[-1]
    count = round_depth(len(body), depth_mult)
    return body[:count] + [body[-1]] * (count - len(body)) + [last]


def build_i3d_inception(*, num_classes: int = 400, stages: Sequence[Sequence[InceptionConfig]] = BN_INCEPTION,
                        stem_channels: int = 64, stem_inner: int = 64, stem_width: int = 192,
                        reduction_temporal_stride: int = 2, width_mult: float = 1.0, depth_mult: float = 1.0,
                        dropout: float = 0.5) -> I3DInception:
    """I3D on BN-Inception with every width and the modules per stage scaled (module docstring);
    ``reduction_temporal_stride`` is the temporal stride of modules 3c and 4e (2: I3D's, 1: the
    frames of ``conv1``'s output kept to the end)."""
    return I3DInception(
        stages=[[c.scaled(width_mult) for c in stage_modules(stage, depth_mult)] for stage in stages],
        stem_channels=round_channels(stem_channels, width_mult), stem_inner=round_channels(stem_inner, width_mult),
        stem_width=round_channels(stem_width, width_mult), num_classes=num_classes,
        reduction_temporal_stride=reduction_temporal_stride, dropout=dropout,
    )


@dataclass(frozen=True)
class I3DInceptionSettings:
    """The family's own ``ArchSpec.family`` settings: ``reduction_temporal_stride`` of modules
    3c and 4e (2, I3D's temporal downsampling, by default; 1 keeps ``T/2`` frames to the end)."""

    reduction_temporal_stride: Literal[1, 2] = 2


def i3d_inception_settings(spec: ArchSpec) -> I3DInceptionSettings:
    """The typed ``family`` settings of an I3D-InceptionV2 spec; an unknown key or a wrong value
    is a :class:`~effvid.errors.ConfigError` naming it."""
    return from_dict(I3DInceptionSettings, spec.family, source=f"{spec.name} ArchSpec.family")


@register_model("i3d_inception_v2",
                default_spec=ArchSpec(name="i3d_inception_v2", num_classes=400, num_frames=16, frame_stride=4,
                                      crop_size=224, train_resize=(256, 320), test_resize=256, dropout=0.5),
                kind="3d", spatial_stride=32, min_frames=1)
def i3d_inception_v2(spec: ArchSpec) -> I3DInception:
    """I3D-InceptionV2 (16 frames at stride 4, 224 crop): 24.50 M parameters with 400 classes."""
    settings = i3d_inception_settings(spec)
    return build_i3d_inception(num_classes=spec.num_classes, width_mult=spec.width_mult,
                               depth_mult=spec.depth_mult, dropout=spec.dropout,
                               reduction_temporal_stride=settings.reduction_temporal_stride)

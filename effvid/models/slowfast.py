"""SlowFast R50 in PyTorchVideo's module layout, so its state-dict keys are PyTorchVideo's.

Key layout (``Net.blocks``): ``blocks.0`` stems (``multipathway_blocks.{0,1}.conv/norm``) and
the first fast-to-slow fusion (``multipathway_fusion.conv_fast_to_slow/norm``); ``blocks.1-4``
residual stages (``multipathway_blocks.{p}.res_blocks.{k}.branch1_conv/branch1_norm`` and
``.branch2.conv_a/norm_a/conv_b/norm_b/conv_c/norm_c``) with fusions after res2-res4;
``blocks.5`` per-pathway pooling and concatenation (no parameters); ``blocks.6.proj``.

The model takes one clip ``(B, C, T, H, W)`` with ``T`` the fast pathway's frames and picks the
slow pathway's ``T // alpha`` frames inside, with PyTorchVideo's ``PackPathway`` indices
(``linspace(0, T - 1, T // alpha)``). So a PAS reduction of the raw clip (fewer frames, lower
frame rate, smaller crop) reaches both pathways, as in the PAS paper's Table 9.

Width multiplier: slow widths are ``round_channels(c, width_mult)``, the nearest integer (never
below ``beta_inv``, so every fast width is at least 1), and fast widths are ``slow // beta_inv``
(beta = ``1 / beta_inv``, rounded down). At ``width_mult == 1`` these are the published widths
(64 / 8 in the stem), so full-width checkpoints load.
Nearest-integer slow widths keep PAS's ``epsilon_c`` a cost step close to the paper's: rounding
them to multiples of ``beta_inv`` took the stem's 64 / 1.4 = 45.7 to 48 and made the step cost
x0.537 where the paper's costs x0.516 (Table 1's SlowFast PAS-5 then came out 6% high).
Depth multiplier: ``round_depth`` on the ``(3, 4, 6, 3)`` blocks per stage.

Pooling adapts to the input (adaptive average pooling per pathway). At the standard input
(crop 224, whole-clip temporal window) this equals PyTorchVideo's fixed ``AvgPool3d`` head;
at other sizes PyTorchVideo's fixed window would average overlapping windows instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from effvid.config import from_dict
from effvid.errors import ConfigError
from effvid.models.ptv_blocks import BottleneckBlock, PtvNet, ResBlock, ResStage, init_weights
from effvid.models.registry import register_model
from effvid.spec import ArchSpec, round_channels, round_depth

R50_DEPTHS = (3, 4, 6, 3)
# Temporal kernel of conv_a per stage (res2..res5), per pathway (SlowFast paper, Table 1).
SLOW_CONV_A_T = (1, 1, 3, 3)
FAST_CONV_A_T = (3, 3, 3, 3)
STAGE_SPATIAL_STRIDES = (1, 2, 2, 2)


def resnet_bottleneck(
    *, dim_in: int, dim_inner: int, dim_out: int, temporal_kernel: int, spatial_stride: int
) -> BottleneckBlock:
    """``Tx1x1 -> 1x3x3 (spatial stride) -> 1x1x1`` bottleneck, BN after each conv, ReLU between."""
    return BottleneckBlock(
        conv_a=nn.Conv3d(
            dim_in, dim_inner, kernel_size=(temporal_kernel, 1, 1), padding=(temporal_kernel // 2, 0, 0), bias=False
        ),
        norm_a=nn.BatchNorm3d(dim_inner),
        act_a=nn.ReLU(inplace=True),
        conv_b=nn.Conv3d(
            dim_inner,
            dim_inner,
            kernel_size=(1, 3, 3),
            stride=(1, spatial_stride, spatial_stride),
            padding=(0, 1, 1),
            bias=False,
        ),
        norm_b=nn.BatchNorm3d(dim_inner),
        act_b=nn.ReLU(inplace=True),
        conv_c=nn.Conv3d(dim_inner, dim_out, kernel_size=1, bias=False),
        norm_c=nn.BatchNorm3d(dim_out),
    )


class Stem(nn.Module):
    """PyTorchVideo ``ResNetBasicStem``: ``Tx7x7`` conv (spatial stride 2), BN, ReLU, 1x3x3 max pool."""

    def __init__(self, *, dim_in: int, dim_out: int, temporal_kernel: int) -> None:
        super().__init__()
        self.conv = nn.Conv3d(
            dim_in,
            dim_out,
            kernel_size=(temporal_kernel, 7, 7),
            stride=(1, 2, 2),
            padding=(temporal_kernel // 2, 3, 3),
            bias=False,
        )
        self.norm = nn.BatchNorm3d(dim_out)
        self.activation = nn.ReLU(inplace=True)
        self.pool = nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.activation(self.norm(self.conv(x))))


class FuseFastToSlow(nn.Module):
    """Lateral connection: a strided ``kx1x1`` conv of the fast features, concatenated to the slow ones."""

    def __init__(self, *, dim_fast: int, fusion_ratio: int, fusion_kernel: int, alpha: int) -> None:
        super().__init__()
        self.conv_fast_to_slow = nn.Conv3d(
            dim_fast,
            dim_fast * fusion_ratio,
            kernel_size=(fusion_kernel, 1, 1),
            stride=(alpha, 1, 1),
            padding=(fusion_kernel // 2, 0, 0),
            bias=False,
        )
        self.norm = nn.BatchNorm3d(dim_fast * fusion_ratio)
        self.activation = nn.ReLU(inplace=True)

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        slow, fast = xs
        lateral = self.activation(self.norm(self.conv_fast_to_slow(fast)))
        return [torch.cat([slow, lateral], dim=1), fast]


class MultiPathWayWithFuse(nn.Module):
    """One module per pathway, then the fusion (``nn.Identity`` after the last stage)."""

    def __init__(self, pathways: Sequence[nn.Module], fusion: nn.Module) -> None:
        super().__init__()
        self.multipathway_blocks = nn.ModuleList(pathways)
        self.multipathway_fusion = fusion

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        return self.multipathway_fusion([block(x) for block, x in zip(self.multipathway_blocks, xs)])


class PoolConcatPathway(nn.Module):
    """Global average pool of each pathway, concatenated along channels: ``(B, C_slow + C_fast)``."""

    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat([x.mean(dim=(2, 3, 4)) for x in xs], dim=1)


class ClassifierHead(nn.Module):
    """Dropout and the linear classifier ``proj`` on pooled features."""

    def __init__(self, *, dim_in: int, num_classes: int, dropout: float) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.proj = nn.Linear(dim_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.dropout(x))


class SlowFast(PtvNet):
    """Two-pathway SlowFast ResNet in PyTorchVideo's layout (see the module docstring).

    ``forward_features`` returns ``[slow, fast]`` feature maps after res5; ``forward_head``
    pools, concatenates and classifies them. The residual stages (``stage_names``) output
    ``[slow, fast]`` lists (after their fusion).
    """

    classifier_name = "blocks.6.proj"

    def __init__(self, blocks: Sequence[nn.Module], *, alpha: int) -> None:
        super().__init__(blocks)
        self.alpha = alpha

    def pathways(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``[slow, fast]`` inputs from a fast-rate clip: the slow one keeps ``T // alpha`` frames."""
        frames = x.shape[2]
        if frames % self.alpha:
            raise ValueError(f"SlowFast needs a frame count divisible by alpha={self.alpha}, got {frames}")
        index = torch.linspace(0, frames - 1, frames // self.alpha).long().to(x.device)
        return [x.index_select(2, index), x]

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``[slow, fast]`` res5 feature maps of a fast-rate clip ``(B, C, T, H, W)``."""
        xs = self.pathways(x)
        for block in self.blocks[:5]:
            xs = block(xs)
        return xs

    def forward_head(self, xs: list[torch.Tensor]) -> torch.Tensor:
        """Logits ``(B, classes)`` of the pooled, concatenated ``[slow, fast]`` features."""
        return self.blocks[6](self.blocks[5](xs))


def build_slowfast(
    *,
    num_classes: int,
    alpha: int = 8,
    beta_inv: int = 8,
    fusion_kernel: int = 5,
    fusion_ratio: int = 2,
    width_mult: float = 1.0,
    depth_mult: float = 1.0,
    stage_depths: Sequence[int] = R50_DEPTHS,
    stem_width: int = 64,
    dropout: float = 0.5,
    in_channels: int = 3,
) -> SlowFast:
    """SlowFast ResNet with every hyperparameter an argument; defaults are SlowFast 4x16 R50.

    Slow widths are ``round_channels(w, width_mult)`` (nearest integer, at least ``beta_inv``;
    ``w`` itself at ``width_mult == 1``) of the R50 widths (stem 64, inner 64*2^i, out
    256*2^i); fast widths are the slow ones floor-divided by ``beta_inv`` (module docstring).
    """

    def slow(channels: int) -> int:
        return max(beta_inv, round_channels(channels, width_mult))

    def fuse(dim_fast: int) -> FuseFastToSlow:
        return FuseFastToSlow(dim_fast=dim_fast, fusion_ratio=fusion_ratio, fusion_kernel=fusion_kernel, alpha=alpha)

    stem_slow = slow(stem_width)
    stem_fast = stem_slow // beta_inv
    blocks: list[nn.Module] = [
        MultiPathWayWithFuse(
            [
                Stem(dim_in=in_channels, dim_out=stem_slow, temporal_kernel=1),
                Stem(dim_in=in_channels, dim_out=stem_fast, temporal_kernel=5),
            ],
            fuse(stem_fast),
        )
    ]
    dims_in = [stem_slow + fusion_ratio * stem_fast, stem_fast]
    for stage, depth in enumerate(stage_depths):
        inner_slow, out_slow = slow(stem_width * 2**stage), slow(4 * stem_width * 2**stage)
        inners = (inner_slow, inner_slow // beta_inv)
        outs = (out_slow, out_slow // beta_inv)
        kernels = (SLOW_CONV_A_T[stage], FAST_CONV_A_T[stage])
        stride = STAGE_SPATIAL_STRIDES[stage]
        pathways = []
        for p in range(2):
            res_blocks = []
            for k in range(round_depth(depth, depth_mult)):
                dim_in = dims_in[p] if k == 0 else outs[p]
                s = stride if k == 0 else 1
                branch2 = resnet_bottleneck(
                    dim_in=dim_in, dim_inner=inners[p], dim_out=outs[p], temporal_kernel=kernels[p], spatial_stride=s
                )
                res_blocks.append(ResBlock(dim_in=dim_in, dim_out=outs[p], spatial_stride=s, branch2=branch2))
            pathways.append(ResStage(res_blocks))
        last = stage == len(stage_depths) - 1
        blocks.append(MultiPathWayWithFuse(pathways, nn.Identity() if last else fuse(outs[1])))
        dims_in = [outs[0] + (0 if last else fusion_ratio * outs[1]), outs[1]]
    blocks.append(PoolConcatPathway())
    blocks.append(ClassifierHead(dim_in=sum(dims_in), num_classes=num_classes, dropout=dropout))
    model = SlowFast(blocks, alpha=alpha)
    init_weights(model)
    return model


@dataclass(frozen=True)
class SlowFastSettings:
    """SlowFast's own ``ArchSpec.family`` settings: speed ratio ``alpha`` (fast frames per slow
    frame), channel ratio ``1 / beta_inv`` of the fast pathway, lateral fusion kernel in time."""

    alpha: int = 8
    beta_inv: int = 8
    fusion_kernel: int = 5

    def __post_init__(self) -> None:
        for key in ("alpha", "beta_inv", "fusion_kernel"):
            value = getattr(self, key)
            if value < 1:
                raise ConfigError(f"ArchSpec.family.{key} must be a positive integer, got {value!r}")


def slowfast_settings(spec: ArchSpec) -> SlowFastSettings:
    """The typed ``family`` settings of a SlowFast spec; an unknown key or a wrong type is a
    :class:`ConfigError` naming it."""
    return from_dict(SlowFastSettings, spec.family, source=f"{spec.name} ArchSpec.family")


def _from_spec(spec: ArchSpec) -> SlowFast:
    settings = slowfast_settings(spec)
    if spec.num_frames % settings.alpha:
        raise ConfigError(
            f"{spec.name}: num_frames={spec.num_frames} (fast pathway) must be a multiple of alpha={settings.alpha}"
        )
    return build_slowfast(
        num_classes=spec.num_classes,
        alpha=settings.alpha,
        beta_inv=settings.beta_inv,
        fusion_kernel=settings.fusion_kernel,
        width_mult=spec.width_mult,
        depth_mult=spec.depth_mult,
        dropout=spec.dropout,
    )


def _default_spec(name: str, *, alpha: int, fusion_kernel: int) -> ArchSpec:
    return ArchSpec(
        name=name,
        num_classes=400,
        num_frames=32,
        frame_stride=2,
        crop_size=224,
        test_crop_size=256,  # trained at 224, tested (and priced) at 256: PySlowFast, PAS section 4.2
        train_resize=(256, 320),
        test_resize=256,
        dropout=0.5,
        family={"alpha": alpha, "beta_inv": 8, "fusion_kernel": fusion_kernel},
    )


def _register(name: str, *, alpha: int, fusion_kernel: int) -> None:
    def builder(spec: ArchSpec) -> SlowFast:
        return _from_spec(spec)

    builder.__name__ = name
    builder.__doc__ = (
        f"{name}: 32 fast frames at stride 2, slow {32 // alpha}, alpha {alpha}, beta 1/8, "
        f"fusion kernel {fusion_kernel}."
    )
    spec = _default_spec(name, alpha=alpha, fusion_kernel=fusion_kernel)
    register_model(name, default_spec=spec, kind="slowfast", spatial_stride=32, min_frames=alpha)(builder)


_register("slowfast_4x16_r50", alpha=8, fusion_kernel=5)
_register("slowfast_8x8_r50", alpha=4, fusion_kernel=7)

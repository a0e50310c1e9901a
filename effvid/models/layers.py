"""Small building blocks shared by the backbone families.

Everything here keeps torchvision's parameter names so that models built from these blocks
load torchvision state dicts directly: ``ConvNormAct`` is ``Conv2dNormActivation`` (keys
``0`` conv, ``1`` norm), ``SqueezeExcitation`` has ``fc1``/``fc2``, ``BasicBlock`` and
``Bottleneck`` have ``conv1``/``bn1``/.../``downsample.{0,1}``. Convolutions are plain
``nn.Conv2d``/``nn.Conv3d`` modules so later wrappers can replace them in place.

Every residual block here (and :class:`~effvid.models.ptv_blocks.ResBlock`,
:class:`~effvid.models.video_resnet.VideoBasicBlock`) is a :class:`PreActivationBlock`: its
residual sum passes through an ``nn.Identity`` named ``preact`` just before the final ReLU, so a
forward hook sees the pre-ReLU feature (feature distillation's margin-ReLU point).

``ClipClassifier`` is the base of the 3D clip ResNets (adaptive pool, dropout, ``fc`` head).
``FrameModel`` is the base of every 2D frame model: it folds ``T`` into the batch, runs the
2D trunk per frame and averages the per-frame logits (TSN's average consensus); it lives here
rather than in ``temporal.py`` because the 2D families subclass it and ``temporal.py``
builds on them. Both are :class:`~effvid.models.base.ModelBase` models (the model contract).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from effvid.models.base import ModelBase
from effvid.spec import ArchSpec

Size3 = int | tuple[int, int, int]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: Swish / SiLU activation, ``x * sigmoid(x)`` (EfficientNet, X3D).
Swish = nn.SiLU


def triple(value: Size3) -> tuple[int, int, int]:
    """``value`` as a ``(t, h, w)`` triple."""
    return (value, value, value) if isinstance(value, int) else tuple(value)  # type: ignore[return-value]


def conv3d(in_channels: int, out_channels: int, kernel: Size3, *, stride: Size3 = 1,
           padding: Size3 | None = None, groups: int = 1, bias: bool = False) -> nn.Conv3d:
    """A ``Conv3d``; ``padding=None`` pads ``k // 2`` on each axis (same size at stride 1)."""
    kernel3 = triple(kernel)
    pad = tuple(k // 2 for k in kernel3) if padding is None else triple(padding)
    return nn.Conv3d(in_channels, out_channels, kernel3, stride=triple(stride), padding=pad,
                     groups=groups, bias=bias)


def conv2d(in_channels: int, out_channels: int, kernel: int, *, stride: int = 1,
           padding: int | None = None, groups: int = 1, bias: bool = False) -> nn.Conv2d:
    """A ``Conv2d``; ``padding=None`` pads ``(k - 1) // 2`` (same size at stride 1)."""
    pad = (kernel - 1) // 2 if padding is None else padding
    return nn.Conv2d(in_channels, out_channels, kernel, stride=stride, padding=pad, groups=groups,
                     bias=bias)


class ConvNormAct(nn.Sequential):
    """``Conv2d -> BatchNorm2d [-> activation]`` with torchvision's keys (``0``, ``1``)."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int = 3, *, stride: int = 1,
                 groups: int = 1, activation: Callable[..., nn.Module] | None = nn.ReLU) -> None:
        layers: list[nn.Module] = [
            conv2d(in_channels, out_channels, kernel, stride=stride, groups=groups),
            nn.BatchNorm2d(out_channels),
        ]
        if activation is not None:
            layers.append(activation(inplace=True))
        super().__init__(*layers)
        self.out_channels = out_channels


class SqueezeExcitation(nn.Module):
    """Channel gating ``x * sigmoid(fc2(act(fc1(avgpool(x)))))`` with 1x1 convs ``fc1``/``fc2``.

    ``dims`` is 2 for image feature maps (torchvision layout) or 3 for clips.
    """

    def __init__(self, channels: int, squeeze_channels: int, *,
                 activation: Callable[..., nn.Module] = nn.ReLU, dims: int = 2) -> None:
        super().__init__()
        conv = nn.Conv2d if dims == 2 else nn.Conv3d
        self.avgpool = nn.AdaptiveAvgPool2d(1) if dims == 2 else nn.AdaptiveAvgPool3d(1)
        self.fc1 = conv(channels, squeeze_channels, 1)
        self.fc2 = conv(squeeze_channels, channels, 1)
        self.activation = activation()
        self.scale_activation = nn.Sigmoid()

    def forward(self, x: Tensor) -> Tensor:
        scale = self.scale_activation(self.fc2(self.activation(self.fc1(self.avgpool(x)))))
        return x * scale


def stochastic_depth(x: Tensor, p: float, training: bool) -> Tensor:
    """Drop whole samples of a residual branch with probability ``p`` while training.

    Survivors are scaled by ``1 / (1 - p)``; at inference (or ``p == 0``) ``x`` is returned.
    """
    if not training or p == 0.0:
        return x
    keep = 1.0 - p
    mask = torch.empty((x.shape[0],) + (1,) * (x.dim() - 1), dtype=x.dtype, device=x.device)
    return x * mask.bernoulli_(keep).div_(keep)


def temporal_shift(x: Tensor, num_segments: int, fold_div: int = 8) -> Tensor:
    """TSM's zero-padded temporal shift of a folded ``(B*T, C, ...)`` tensor.

    Channels ``[0, C/fold_div)`` take their value from the next frame (shift backward in
    time), channels ``[C/fold_div, 2C/fold_div)`` from the previous frame (shift forward);
    the rest are unchanged. Frames shifted in from outside the clip are zeros.
    """
    nt, channels = x.shape[:2]
    if nt % num_segments:
        raise ValueError(f"temporal_shift: batch {nt} is not a multiple of {num_segments} frames")
    clip = x.view(nt // num_segments, num_segments, channels, *x.shape[2:])
    fold = channels // fold_div
    out = torch.zeros_like(clip)
    out[:, :-1, :fold] = clip[:, 1:, :fold]
    out[:, 1:, fold:2 * fold] = clip[:, :-1, fold:2 * fold]
    out[:, :, 2 * fold:] = clip[:, :, 2 * fold:]
    return out.view_as(x)


class TemporalShiftMixin:
    """Residual-shift support for 2D blocks: ``shift_input`` shifts the branch input in time.

    ``shift_div == 0`` disables the shift. ``num_segments`` (frames per clip) is set by the
    owning :class:`FrameModel` before each forward, so a model accepts any clip length.
    """

    shift_div: int = 0
    num_segments: int = 1

    def shift_input(self, x: Tensor) -> Tensor:
        if self.shift_div <= 0:
            return x
        return temporal_shift(x, self.num_segments, self.shift_div)


def downsample(in_channels: int, out_channels: int, stride: Size3, *, dims: int = 2) -> nn.Sequential:
    """The 1x1 projection shortcut ``Sequential(conv, BN)`` (keys ``downsample.0/1``)."""
    if dims == 2:
        conv: nn.Module = nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)
        norm: nn.Module = nn.BatchNorm2d(out_channels)
    else:
        conv = nn.Conv3d(in_channels, out_channels, 1, stride=triple(stride), bias=False)
        norm = nn.BatchNorm3d(out_channels)
    return nn.Sequential(conv, norm)


class PreActivationBlock:
    """A residual block ``relu(preact(branch(x) + shortcut(x)))`` that exposes its pre-ReLU sum.

    ``preact`` is an ``nn.Identity`` applied to the residual sum just before the final ReLU: a
    forward hook on it sees the pre-ReLU tensor (Heo et al.'s distillation point) and nothing
    else changes -- outputs, cost and, since it has no parameters or buffers, state-dict keys
    stay as they were. The final ReLU runs in place on that very tensor, so a hook that keeps
    it must keep a clone. :meth:`residual_norm` names the BN that ends the residual branch, the
    statistics of the margin ReLU.
    """

    preact: nn.Identity

    def residual_norm(self) -> nn.Module:
        """The BatchNorm at the end of the residual branch (looked up on each call, so a
        SyncBatchNorm conversion is followed)."""
        raise NotImplementedError


class BasicBlock(TemporalShiftMixin, PreActivationBlock, nn.Module):
    """torchvision's 2D ResNet basic block (two 3x3 convs), optionally with TSM's residual shift."""

    expansion = 1

    def __init__(self, in_channels: int, planes: int, *, stride: int = 1, shift_div: int = 0) -> None:
        super().__init__()
        out_channels = planes * self.expansion
        self.out_channels = out_channels
        self.shift_div = shift_div
        self.conv1 = conv2d(in_channels, planes, 3, stride=stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv2d(planes, out_channels, 3)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.downsample = (downsample(in_channels, out_channels, stride)
                           if stride != 1 or in_channels != out_channels else None)
        self.preact = nn.Identity()

    def residual_norm(self) -> nn.Module:
        return self.bn2

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(self.shift_input(x))))
        out = self.bn2(self.conv2(out))
        return self.relu(self.preact(out + identity))


class Bottleneck(TemporalShiftMixin, PreActivationBlock, nn.Module):
    """torchvision's ResNet-50 bottleneck (1x1, 3x3 with the stride, 1x1 x4), 2D or inflated 3D.

    With ``dims=3`` the first 1x1 conv becomes ``(temporal_kernel, 1, 1)`` (I3D inflation),
    the 3x3 becomes ``(1, 3, 3)`` with spatial stride only, and the shortcut strides spatially.
    ``shift_div`` adds TSM's residual shift (2D only).
    """

    expansion = 4

    def __init__(self, in_channels: int, planes: int, *, stride: int = 1, dims: int = 2,
                 temporal_kernel: int = 1, shift_div: int = 0) -> None:
        super().__init__()
        out_channels = planes * self.expansion
        self.out_channels = out_channels
        self.shift_div = shift_div
        if dims == 2:
            self.conv1: nn.Module = conv2d(in_channels, planes, 1)
            self.conv2: nn.Module = conv2d(planes, planes, 3, stride=stride)
            self.conv3: nn.Module = conv2d(planes, out_channels, 1)
            norm: Callable[[int], nn.Module] = nn.BatchNorm2d
            shortcut_stride: Size3 = stride
        else:
            self.conv1 = conv3d(in_channels, planes, (temporal_kernel, 1, 1))
            self.conv2 = conv3d(planes, planes, (1, 3, 3), stride=(1, stride, stride))
            self.conv3 = conv3d(planes, out_channels, 1)
            norm = nn.BatchNorm3d
            shortcut_stride = (1, stride, stride)
        self.bn1 = norm(planes)
        self.bn2 = norm(planes)
        self.bn3 = norm(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = (downsample(in_channels, out_channels, shortcut_stride, dims=dims)
                           if stride != 1 or in_channels != out_channels else None)
        self.preact = nn.Identity()

    def residual_norm(self) -> nn.Module:
        return self.bn3

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(self.shift_input(x))))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(self.preact(out + identity))


def add_resnet_stages(module: nn.Module, in_channels: int, stage_blocks: Sequence[int],
                      make_block: Callable[[int, int, int, int], nn.Module]) -> int:
    """Add stages ``layer1..layerN`` to ``module`` and return the last stage's channels.

    Stage ``s`` holds ``stage_blocks[s]`` blocks ``make_block(s, b, in_channels, stride)``;
    the first block of every stage but the first gets stride 2, all others 1. Each block
    must expose ``out_channels``.
    """
    for s, blocks in enumerate(stage_blocks):
        stage = []
        for b in range(blocks):
            block = make_block(s, b, in_channels, 2 if s > 0 and b == 0 else 1)
            stage.append(block)
            in_channels = block.out_channels
        module.add_module(f"layer{s + 1}", nn.Sequential(*stage))
    return in_channels


def init_weights(module: nn.Module) -> None:
    """torchvision-style init: Kaiming-normal (fan-out) convs, unit BN, N(0, 0.01) linear."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Conv3d)):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm3d)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.01)
            nn.init.zeros_(m.bias)


class ClipClassifier(ModelBase):
    """Base of 3D clip models: ``forward_head`` = adaptive average pool, dropout, ``fc``.

    Subclasses implement :meth:`forward_features` (``(B, C, T, H, W) -> (B, C', t, h, w)``) and
    set ``num_features``, ``dropout``, ``fc`` and ``stage_names``.
    """

    classifier_name = "fc"
    stage_names: tuple[str, ...] = ()
    num_features: int
    dropout: nn.Dropout
    fc: nn.Linear

    def forward_head(self, features: Tensor) -> Tensor:
        """Logits ``(B, classes)`` of the pooled feature map."""
        return self.fc(self.dropout(F.adaptive_avg_pool3d(features, 1).flatten(1)))


class FrameModel(ModelBase):
    """Base of 2D frame models: ``(B, C, T, H, W)`` in, per-frame 2D trunk, averaged logits out.

    The defaults follow torchvision's ``features`` + ``classifier = (Dropout, Linear)`` layout
    (MobileNetV2, EfficientNet; ``classifier_name = "classifier.1"``): :meth:`forward_frames`
    (``(N, C, H, W) -> (N, C', h, w)``) and :meth:`classify` (pooled ``(..., C') -> (..., classes)``);
    other layouts override them and ``classifier_name``. Subclasses set ``num_features`` and
    ``stage_names``. Stage outputs of a frame model are folded ``(B*T, C, h, w)`` maps.
    """

    classifier_name = "classifier.1"
    stage_names: tuple[str, ...] = ()
    num_features: int

    def forward_frames(self, frames: Tensor) -> Tensor:
        """Feature maps ``(N, C', h, w)`` of a batch of frames ``(N, C, H, W)``."""
        return self.features(frames)

    def classify(self, pooled: Tensor) -> Tensor:
        """Logits ``(..., classes)`` of pooled features ``(..., C')``."""
        return self.classifier(pooled)

    def forward_features(self, x: Tensor) -> Tensor:
        """Per-frame feature maps, unfolded to ``(B, C', T, h, w)``."""
        b, c, t, h, w = x.shape
        for m in self.modules():
            if isinstance(m, TemporalShiftMixin):
                m.num_segments = t
        frames = x.transpose(1, 2).reshape(b * t, c, h, w)
        feats = self.forward_frames(frames)
        return feats.view(b, t, *feats.shape[1:]).transpose(1, 2)

    def frame_logits(self, features: Tensor) -> Tensor:
        """Per-frame logits ``(B, T, classes)`` from :meth:`forward_features`' output."""
        return self.classify(features.mean(dim=(3, 4)).transpose(1, 2))

    def forward_head(self, features: Tensor) -> Tensor:
        """Average consensus: the mean over frames of the per-frame logits."""
        return self.frame_logits(features).mean(dim=1)


def frame_spec(name: str, *, num_classes: int = 1000, crop_size: int = 224,
               test_resize: int | None = None, dropout: float = 0.0) -> ArchSpec:
    """Default spec of a 2D frame model: 8 TSN segments, ImageNet normalisation; the test
    short side defaults to ``8/7 * crop`` (256 at 224)."""
    return ArchSpec(name=name, num_classes=num_classes, num_frames=8, frame_stride=1,
                    crop_size=crop_size, sampling="segments", test_resize=test_resize,
                    mean=IMAGENET_MEAN, std=IMAGENET_STD, dropout=dropout)

"""PyTorchVideo's residual building blocks and ``Net`` container, shared by SlowFast and X3D.

``ResBlock`` (shortcut + ``branch2``), ``ResStage`` (``res_blocks``), ``BottleneckBlock``
(``conv_a``/``norm_a``/... in order), :func:`init_weights` (zero-initialised last BN of every
branch) and ``PtvNet`` (the ``blocks`` list, a :class:`~effvid.models.base.ModelBase`). The
module and parameter names are PyTorchVideo's, so models built from them load PyTorchVideo
checkpoints key for key.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from effvid.models.base import ModelBase
from effvid.models.layers import PreActivationBlock
from effvid.models.layers import init_weights as init_torchvision_style


class ResBlock(PreActivationBlock, nn.Module):
    """PyTorchVideo ``ResBlock``: ``relu(preact(branch2(x) + shortcut(x)))``.

    The shortcut is ``branch1_conv`` (1x1x1, spatial stride) + ``branch1_norm`` when the
    width or the resolution changes, the identity otherwise. ``preact`` exposes the pre-ReLU
    sum (:class:`~effvid.models.layers.PreActivationBlock`); ``branch2`` ends in ``norm_c``.
    """

    def __init__(self, *, dim_in: int, dim_out: int, spatial_stride: int, branch2: nn.Module) -> None:
        super().__init__()
        if dim_in != dim_out or spatial_stride != 1:
            self.branch1_conv = nn.Conv3d(
                dim_in, dim_out, kernel_size=1, stride=(1, spatial_stride, spatial_stride), bias=False
            )
            self.branch1_norm = nn.BatchNorm3d(dim_out)
        else:
            self.branch1_conv = None
            self.branch1_norm = None
        self.branch2 = branch2
        self.activation = nn.ReLU(inplace=True)
        self.preact = nn.Identity()

    def residual_norm(self) -> nn.Module:
        return self.branch2.norm_c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.branch1_conv is None else self.branch1_norm(self.branch1_conv(x))
        return self.activation(self.preact(self.branch2(x) + shortcut))


class ResStage(nn.Module):
    """A stage of residual blocks, run in order (PyTorchVideo ``ResStage``: ``res_blocks``)."""

    def __init__(self, blocks: Sequence[nn.Module]) -> None:
        super().__init__()
        self.res_blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.res_blocks:
            x = block(x)
        return x


class BottleneckBlock(nn.Module):
    """PyTorchVideo ``BottleneckBlock``: ``conv_a, norm_a, act_a, conv_b, norm_b, act_b, conv_c, norm_c`` in order."""

    def __init__(
        self,
        *,
        conv_a: nn.Module,
        norm_a: nn.Module,
        act_a: nn.Module,
        conv_b: nn.Module,
        norm_b: nn.Module,
        act_b: nn.Module,
        conv_c: nn.Module,
        norm_c: nn.Module,
    ) -> None:
        super().__init__()
        self.conv_a, self.norm_a, self.act_a = conv_a, norm_a, act_a
        self.conv_b, self.norm_b, self.act_b = conv_b, norm_b, act_b
        self.conv_c, self.norm_c = conv_c, norm_c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act_a(self.norm_a(self.conv_a(x)))
        x = self.act_b(self.norm_b(self.conv_b(x)))
        return self.norm_c(self.conv_c(x))


def init_weights(model: nn.Module) -> None:
    """torchvision-style initialisation with each residual branch's last BN zeroed (PySlowFast's
    ``ZERO_INIT_FINAL_BN``), so every residual branch starts at zero."""
    init_torchvision_style(model)
    for module in model.modules():
        if isinstance(module, ResBlock):
            nn.init.zeros_(module.branch2.norm_c.weight)


class PtvNet(ModelBase):
    """PyTorchVideo's ``Net``: a ``blocks`` list whose last block is the head, holding ``proj``.

    Residual stages are ``blocks.1`` to ``blocks.4`` (``stage_names``); subclasses split the
    blocks between :meth:`forward_features` and :meth:`forward_head` and name the head's
    classifier in ``classifier_name`` (``"blocks.<last>.proj"``).
    """

    stage_names = ("blocks.1", "blocks.2", "blocks.3", "blocks.4")

    def __init__(self, blocks: Sequence[nn.Module]) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)

"""D-STEP's residual blocks: BasicBlock and Bottleneck with a spatial mask and a channel policy.

Both wrap a trained block's own modules (``conv1``, ``bn1``, ..., ``downsample``: the same state
dict keys, plus ``mask.*`` and ``policy.*``) and keep TSM's residual shift. Per block, in order:
the shortcut on the unshifted input, the shift, the spatial mask ``S`` of the block output's
tiles (:class:`~effvid.methods.dstep.mask.SpatialMask`, from the shifted input), the channel
policy on the pooled, masked input of this frame and the previous one, then the convolutions
with the Eq. (1) merge after the first one:

    merged_t = S_t * (y_t * compute_t + y_{t-1} * reuse_t),   y_t = S_t * relu(bn1(conv1(x_t)))

Computed channels come from this frame, reused ones from the previous frame's first-convolution
output (computed there on that frame's active tiles, whatever that frame decided for the
channel, as Eq. (2) and AdaFuse require), skipped ones are zero. The block's last convolution
is masked by ``S`` too, before the residual addition (DGNet's placement), so an inactive tile
passes its shortcut through.

**Where the policy acts.** BasicBlock: on ``conv1``'s outputs, i.e. between the two 3x3
convolutions, as the paper does. Bottleneck (ResNet-50, absent from the authors' code): on the
outputs of the first 1x1 convolution, the inputs of the 3x3 one, as AdaFuse does (its policy
acts on the first convolution of every block). So the 1x1 ``conv1`` computes the needed
channels only, at the input resolution on the tiles of ``S`` scaled by the stride; the 3x3
``conv2`` reads only the non-skipped channels, on the active output tiles; the 1x1 ``conv3``
runs on the active tiles for all channels, straight on ``conv2``'s gathered patches (no scatter
in between).

Training (and ``executor = "masked"``) computes densely and multiplies by the masks, so the
straight-through gradients reach mask and policy. Inference (``executor = "sparse"``, the
default in eval mode) executes only that work, for all frames at once where it can
(:mod:`~effvid.methods.dstep.sparse`): one :class:`~effvid.methods.dstep.sparse.TilePlan` per
block from the mask, one gather of every frame's active tiles per convolution, BatchNorm folded
into the weights, and per frame only its own channels: the needed rows of ``conv1``'s weight,
the non-skipped columns of ``conv2``'s (frames that run densely share one batched convolution
for the channels they all select); one scatter per convolution, and the Eq. (1) merge on the
whole map (reused channels are copied, skipped ones cost nothing downstream). A frame with more than
``dense_above`` (its stage's setting) of its tiles active runs its convolutions densely on the
map. The two paths give the same output for the same decisions. ``last`` holds the forward's
:class:`BlockRecord` (costs and decisions).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from effvid.methods.dstep.cost import ConvTerm, conv_macs, eq2_macs, executed_macs
from effvid.methods.dstep.mask import SpatialMask
from effvid.methods.dstep.policy import ChannelPolicy, next_frame, previous_frame
from effvid.methods.dstep.settings import COMPUTE, REUSE, SKIP, DStepSettings
from effvid.methods.dstep.sparse import TilePlan, assemble, conv_frames, output_size, tiles_to_pixels
from effvid.models.fold import fold_into, kept, tensors_key
from effvid.models.layers import BasicBlock, Bottleneck, TemporalShiftMixin


@dataclass
class BlockRecord:
    """One block's forward, per frame: ``executed`` MACs (float64, what inference runs),
    ``eq2`` MACs (Eq. 2, differentiable; the executed count when gradients are off), the tile
    ``density`` (differentiable), the ``mask`` ``(N, rows, cols)`` and the one-hot ``decisions``
    ``(N, C, 3)`` (both detached)."""

    executed: Tensor
    eq2: Tensor
    density: Tensor
    mask: Tensor
    decisions: Tensor


def fold_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> tuple[Tensor, Tensor]:
    """``conv``'s weight (contiguous: a frame's channels are sliced from it) and a bias with the
    inference BatchNorm ``bn`` folded in."""
    weight, bias = fold_into(conv.weight, conv.bias, bn)
    return weight.contiguous(), bias


def _geometry(conv: nn.Conv2d) -> dict[str, int]:
    return {"stride": conv.stride[0], "padding": conv.padding[0]}


class DStepBlock(TemporalShiftMixin, nn.Module):
    """What both blocks share: shortcut, shift, mask, policy, costs (module docstring)."""

    cost_layer = True
    """Per-layer splits (:func:`effvid.cost.latency.leaf_layers`) count it as one layer: its
    sparse path runs folded weights, not its convolution modules."""
    strided: nn.Conv2d
    terms: tuple[ConvTerm, ...]

    def __init__(self, block: BasicBlock | Bottleneck, *, planes: int, settings: DStepSettings, tile: int,
                 dense_above: float) -> None:
        super().__init__()
        self.shift_div = block.shift_div
        self.out_channels = block.out_channels
        self.downsample = block.downsample
        self.relu = block.relu
        self.tile = tile
        self.dense_above = dense_above
        self.executor = "sparse"
        self.in_channels = block.conv1.in_channels
        self.mask = SpatialMask(self.in_channels, tile, tau=settings.mask_tau, bias=settings.mask_bias,
                                enabled=settings.spatial)
        self.policy = ChannelPolicy(self.in_channels, planes, hidden=settings.hidden, actions=settings.actions,
                                    tau=settings.tau, compute_bias=settings.compute_bias)
        self.last: BlockRecord | None = None
        self._folded: dict[str, tuple[tuple[int, ...], tuple[Tensor, Tensor]]] = {}

    def folded(self, conv_name: str, bn_name: str) -> tuple[Tensor, Tensor]:
        """:func:`fold_bn` of two of this block's modules, kept until any of their tensors
        changes (an optimiser step or a loaded state dict bumps its version)."""
        conv, bn = self.get_submodule(conv_name), self.get_submodule(bn_name)
        key = tensors_key(conv.weight, bn.weight, bn.bias, bn.running_mean, bn.running_var)
        return kept(self._folded, conv_name, key, lambda: fold_bn(conv, bn))

    @property
    def stride(self) -> int:
        return self.strided.stride[0]

    def out_size(self, height: int, width: int) -> tuple[int, int]:
        """The block output's size for a ``height x width`` input."""
        conv = self.strided
        return output_size(height, width, kernel=conv.kernel_size[0], **_geometry(conv))

    def static_macs(self, in_size: tuple[int, int], out_size: tuple[int, int]) -> int:
        """Per frame: shortcut, mask and policy."""
        shortcut = conv_macs(self.downsample[0], out_size) if self.downsample is not None else 0
        return shortcut + self.mask.macs_per_frame(out_size) + self.policy.macs_per_frame()

    def dense_macs(self, in_size: tuple[int, int]) -> tuple[float, float]:
        """Per frame at ``in_size``: the costliest decisions' executed MACs (every tile active,
        every channel computed) and the plain block's MACs (no mask, no policy)."""
        out_size = self.out_size(*in_size)
        rows, cols = self.mask.grid(*out_size)
        onehot = torch.zeros(1, self.policy.channels, 3, dtype=torch.float64)
        onehot[..., COMPUTE] = 1.0
        full = executed_macs(self.terms, torch.ones(1, rows, cols), onehot, tile_pixels=self.tile_pixels(),
                             map_pixels=self.map_pixels(in_size, out_size), dense_above=self.dense_above,
                             num_frames=1, static=self.static_macs(in_size, out_size))
        plain = sum(conv_macs(conv, size) for conv, size in self.plain_convs(in_size, out_size))
        shortcut = conv_macs(self.downsample[0], out_size) if self.downsample is not None else 0
        return float(full[0]), float(plain + shortcut)

    def tile_pixels(self) -> dict[str, int]:
        return {"out": self.tile ** 2, "mid": (self.tile * self.stride) ** 2}

    @staticmethod
    def map_pixels(in_size: tuple[int, int], out_size: tuple[int, int]) -> dict[str, int]:
        return {"out": out_size[0] * out_size[1], "mid": in_size[0] * in_size[1]}

    def plain_convs(self, in_size: tuple[int, int], out_size: tuple[int, int]) -> list[tuple[nn.Conv2d, tuple[int, int]]]:
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        xs = self.shift_input(x)
        in_size = (xs.shape[-2], xs.shape[-1])
        out_size = self.out_size(*in_size)
        mask = self.mask(xs, out_size)
        pooled = (xs * tiles_to_pixels(mask, self.tile * self.stride, *in_size)).mean(dim=(2, 3))
        onehot = self.policy(pooled, self.num_segments)
        self.last = self.record(mask, onehot, in_size, out_size)
        if self.training or self.executor == "masked":
            return self.relu(self.masked(xs, mask, onehot, out_size) + identity)
        return self.sparse(xs, mask, onehot, out_size).add_(identity).relu_()  # its own fresh map

    def record(self, mask: Tensor, onehot: Tensor, in_size: tuple[int, int], out_size: tuple[int, int]) -> BlockRecord:
        static = self.static_macs(in_size, out_size)
        kwargs = {"tile_pixels": self.tile_pixels(), "num_frames": self.num_segments, "static": static}
        executed = executed_macs(self.terms, mask, onehot, map_pixels=self.map_pixels(in_size, out_size),
                                 dense_above=self.dense_above, **kwargs)
        # Eq. (2) only carries the sparsity loss's gradient: without gradients, its value is never read
        eq2 = eq2_macs(self.terms, mask, onehot, **kwargs) if torch.is_grad_enabled() else executed.to(mask.dtype)
        return BlockRecord(executed=executed, eq2=eq2,
                           density=mask.flatten(1).mean(dim=1), mask=mask.detach(), decisions=onehot.detach())

    def masked(self, xs: Tensor, mask: Tensor, onehot: Tensor, out_size: tuple[int, int]) -> Tensor:
        raise NotImplementedError

    def sparse(self, xs: Tensor, mask: Tensor, onehot: Tensor, out_size: tuple[int, int]) -> Tensor:
        raise NotImplementedError

    def merge(self, y: Tensor, onehot: Tensor, pixels: Tensor) -> Tensor:
        """Eq. (1) on first-convolution outputs ``y (N, C, H, W)`` already masked by their own
        frame's ``pixels (N, 1, H, W)``: computed channels from this frame, reused ones from
        the previous frame (masked by this frame's tiles), skipped ones zero."""
        compute = onehot[..., COMPUTE, None, None]
        reuse = onehot[..., REUSE, None, None]
        return y * compute + previous_frame(y, self.num_segments) * reuse * pixels

    def sparse_merge(self, y: Tensor, onehot: Tensor, pixels: Tensor) -> Tensor:
        """:meth:`merge` on the sparse path's ``y``, which holds the needed channels only (the
        others are zero): ``y`` itself when no frame reuses a channel, since then every needed
        channel is a computed one."""
        if not bool(onehot[..., REUSE].any()):
            return y
        return self.merge(y, onehot, pixels)

    def frame_channels(self, onehot: Tensor) -> tuple[Tensor, Tensor]:
        """Hard per-frame ``need`` and ``nonskip`` channel masks ``(N, C)`` (bool)."""
        actions = onehot.argmax(dim=-1)
        need = (actions == COMPUTE) | next_frame(actions == REUSE, self.num_segments)
        return need, actions != SKIP


class DStepBasicBlock(DStepBlock):
    """D-STEP on a :class:`~effvid.models.layers.BasicBlock` (module docstring)."""

    def __init__(self, block: BasicBlock, *, settings: DStepSettings, tile: int, dense_above: float = 1.0) -> None:
        super().__init__(block, planes=block.conv1.out_channels, settings=settings, tile=tile, dense_above=dense_above)
        self.conv1, self.bn1, self.conv2, self.bn2 = block.conv1, block.bn1, block.conv2, block.bn2
        self.strided = self.conv1
        self.terms = (ConvTerm("out", "need", self.in_channels * 9),
                      ConvTerm("out", "nonskip", self.conv2.out_channels * 9))

    def plain_convs(self, in_size: tuple[int, int], out_size: tuple[int, int]) -> list[tuple[nn.Conv2d, tuple[int, int]]]:
        return [(self.conv1, out_size), (self.conv2, out_size)]

    def masked(self, xs: Tensor, mask: Tensor, onehot: Tensor, out_size: tuple[int, int]) -> Tensor:
        pixels = tiles_to_pixels(mask, self.tile, *out_size)
        y = self.relu(self.bn1(self.conv1(xs))) * pixels
        return self.bn2(self.conv2(self.merge(y, onehot, pixels))) * pixels

    def sparse(self, xs: Tensor, mask: Tensor, onehot: Tensor, out_size: tuple[int, int]) -> Tensor:
        need, nonskip = self.frame_channels(onehot)
        plan = TilePlan.from_mask(mask, self.dense_above)
        pixels = tiles_to_pixels(mask, self.tile, *out_size)
        (w1, b1), (w2, b2) = self.folded("conv1", "bn1"), self.folded("conv2", "bn2")
        tiles, dense = conv_frames(plan, xs, w1, b1, tile=self.tile, outputs=need,
                                   **_geometry(self.conv1))
        y = assemble(plan, tiles, dense, channels=w1.shape[0], size=out_size, pixels=pixels).relu_()
        tiles, dense = conv_frames(plan, self.sparse_merge(y, onehot, pixels), w2, b2, tile=self.tile, stride=1, padding=1,
                                   inputs=nonskip)
        return assemble(plan, tiles, dense, channels=w2.shape[0], size=out_size, pixels=pixels)


class DStepBottleneck(DStepBlock):
    """D-STEP on a 2D :class:`~effvid.models.layers.Bottleneck` (module docstring)."""

    def __init__(self, block: Bottleneck, *, settings: DStepSettings, tile: int, dense_above: float = 1.0) -> None:
        super().__init__(block, planes=block.conv1.out_channels, settings=settings, tile=tile, dense_above=dense_above)
        self.conv1, self.bn1, self.conv2, self.bn2 = block.conv1, block.bn1, block.conv2, block.bn2
        self.conv3, self.bn3 = block.conv3, block.bn3
        self.strided = self.conv2
        planes = self.conv2.out_channels
        self.terms = (ConvTerm("mid", "need", self.in_channels), ConvTerm("out", "nonskip", planes * 9),
                      ConvTerm("out", "all", planes * self.conv3.out_channels))

    def plain_convs(self, in_size: tuple[int, int], out_size: tuple[int, int]) -> list[tuple[nn.Conv2d, tuple[int, int]]]:
        return [(self.conv1, in_size), (self.conv2, out_size), (self.conv3, out_size)]

    def masked(self, xs: Tensor, mask: Tensor, onehot: Tensor, out_size: tuple[int, int]) -> Tensor:
        mid = tiles_to_pixels(mask, self.tile * self.stride, xs.shape[-2], xs.shape[-1])
        pixels = tiles_to_pixels(mask, self.tile, *out_size)
        y = self.relu(self.bn1(self.conv1(xs))) * mid
        h = self.relu(self.bn2(self.conv2(self.merge(y, onehot, mid)))) * pixels
        return self.bn3(self.conv3(h)) * pixels

    def sparse(self, xs: Tensor, mask: Tensor, onehot: Tensor, out_size: tuple[int, int]) -> Tensor:
        need, nonskip = self.frame_channels(onehot)
        in_size = (xs.shape[-2], xs.shape[-1])
        plan = TilePlan.from_mask(mask, self.dense_above)
        mid = tiles_to_pixels(mask, self.tile * self.stride, *in_size)
        pixels = tiles_to_pixels(mask, self.tile, *out_size)
        (w1, b1), (w2, b2), (w3, b3) = (self.folded("conv1", "bn1"), self.folded("conv2", "bn2"),
                                        self.folded("conv3", "bn3"))
        tiles, dense = conv_frames(plan, xs, w1, b1, tile=self.tile * self.stride, stride=1, padding=0,
                                   outputs=need)
        y = assemble(plan, tiles, dense, channels=w1.shape[0], size=in_size, pixels=mid).relu_()
        tiles, dense = conv_frames(plan, self.sparse_merge(y, onehot, mid), w2, b2, tile=self.tile,
                                   inputs=nonskip, **_geometry(self.conv2))
        if tiles is not None:
            tiles = F.conv2d(tiles.relu_(), w3, b3)
        if dense is not None:  # a 1x1 convolution: masking its output (assemble) masks its input too
            dense = F.conv2d(dense.relu_(), w3, b3)
        return assemble(plan, tiles, dense, channels=w3.shape[0], size=out_size, pixels=pixels)

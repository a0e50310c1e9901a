"""The D-STEP model: a TSN/TSM ResNet whose residual blocks carry a spatial mask and a channel policy.

:class:`DStep` builds the plain network of its spec (``tsn_r18``, ``tsm_r18``, ``tsn_r50``,
``tsm_r50``, or any :class:`~effvid.models.resnet2d.ResNet2d`), replaces every residual block
by its D-STEP wrapper (:mod:`~effvid.methods.dstep.block`, through
:func:`effvid.models.base.replace_modules`) and holds the network's top-level modules as its
own, so its state-dict keys are the plain network's plus ``*.mask.*`` and ``*.policy.*``: a
trained TSN/TSM checkpoint loads into it by name (``init_from``). Stage ``s``'s blocks use
tiles of ``tile_sizes[s]`` pixels and fall back to dense above ``dense_above[s]``.

``forward_output`` returns the logits, each clip's cost in GMACs from its decisions (every
frame's stem, blocks and classifier, as the inference path executes them; equal to the
executed-op count in eval mode) and the decisions, per clip and block ``(B, L)`` in
:attr:`DStep.block_names` order: ``spatial_density`` (differentiable, for the bound loss),
``skip_rate``, ``reuse_rate``, ``compute_rate``, ``block_gmacs``, ``frame_gmacs`` ``(B, T)``,
and ``flops_ratio`` ``(B,)`` (``F / F_S``, differentiable, for the sparsity loss). Each
block's last tile masks and one-hots stay on the block (``block.last``) for plots.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor, nn

from effvid.errors import ConfigError
from effvid.methods.dstep.block import DStepBasicBlock, DStepBlock, DStepBottleneck
from effvid.methods.dstep.cost import conv_macs
from effvid.methods.dstep.losses import bound_term, sparsity_term
from effvid.methods.dstep.settings import COMPUTE, REUSE, SKIP, DStepSettings, parse_settings
from effvid.methods.dstep.sparse import output_size
from effvid.models import ModelBase, ModelOutput, create_from_spec, replace_modules
from effvid.models.layers import BasicBlock, Bottleneck
from effvid.models.resnet2d import ResNet2d
from effvid.spec import ArchSpec


def _wrap(settings: DStepSettings) -> Any:
    def factory(name: str, block: nn.Module) -> DStepBlock:
        stage = int(name.split(".")[0].removeprefix("layer")) - 1
        kind = DStepBasicBlock if isinstance(block, BasicBlock) else DStepBottleneck
        return kind(block, settings=settings, tile=settings.tile_sizes[stage],  # type: ignore[arg-type]
                    dense_above=settings.dense_above[stage])

    return factory


class DStep(ModelBase):
    """A D-STEP network (module docstring)."""

    dynamic = True

    def __init__(self, spec: ArchSpec) -> None:
        super().__init__()
        assert spec.method is not None
        self.settings = parse_settings(spec.method.settings)
        self.spec = spec
        network = create_from_spec(spec.replace(method=None))
        if not isinstance(network, ResNet2d):
            raise ConfigError(f"model.name: D-STEP runs on 2D ResNets (tsn_r18, tsm_r18, tsn_r50, tsm_r50, ...); "
                              f"{spec.name!r} is a {type(network).__name__}")
        replace_modules(network, lambda name, m: isinstance(m, (BasicBlock, Bottleneck)), _wrap(self.settings))
        object.__setattr__(self, "network", network)
        self.classifier_name = network.classifier_name
        self.stage_names = network.stage_names
        self._adopt()
        self.block_names = tuple(name for name, m in network.named_modules() if isinstance(m, DStepBlock))
        self.set_test_decisions(self.settings.test_decisions)

    def _adopt(self) -> None:
        """Register the network's top-level modules as this model's (one state dict, its names)."""
        for name, child in self.network.named_children():
            setattr(self, name, child)

    def blocks(self) -> list[DStepBlock]:
        """The D-STEP blocks, in :attr:`block_names` order."""
        return [self.network.get_submodule(name) for name in self.block_names]  # type: ignore[misc]

    def train(self, mode: bool = True) -> DStep:
        super().train(mode)
        self.network.training = mode
        return self

    def set_executor(self, executor: Literal["sparse", "masked"]) -> None:
        """How eval mode runs the blocks: ``sparse`` (skips the work; the default) or ``masked``
        (dense, then masked: the training computation, as a reference)."""
        for block in self.blocks():
            block.executor = executor

    def set_test_decisions(self, mode: Literal["argmax", "sample"]) -> None:
        """Channel decisions at test time: argmax, or Gumbel samples (the authors' evaluation)."""
        for block in self.blocks():
            block.policy.sample_at_test = mode == "sample"

    # -- costs ---------------------------------------------------------------------------------

    def _frame_fixed_macs(self, size: tuple[int, int]) -> tuple[int, tuple[int, int]]:
        """Per frame: the stem's and classifier's MACs, and the first block's input size."""
        stem = self.network.conv1
        stem_out = output_size(*size, kernel=stem.kernel_size[0], stride=stem.stride[0], padding=stem.padding[0])
        pooled = output_size(*stem_out, kernel=3, stride=2, padding=1)
        fc = self.network.fc
        return conv_macs(stem, stem_out) + fc.in_features * fc.out_features, pooled

    def frame_macs(self, size: tuple[int, int]) -> tuple[float, float]:
        """Per frame of ``size`` pixels: the costliest decisions' MACs and the plain network's."""
        fixed, in_size = self._frame_fixed_macs(size)
        dense = plain = float(fixed)
        for block in self.blocks():
            full, static = block.dense_macs(in_size)
            dense, plain = dense + full, plain + static
            in_size = block.out_size(*in_size)
        return dense, plain

    def dense_gmacs(self) -> float:
        """GMACs per clip at the spec's test input (``spec.test_crop``) with every tile active and
        every channel computed."""
        size = (self.spec.test_crop, self.spec.test_crop)
        return self.spec.num_frames * self.frame_macs(size)[0] / 1e9

    def static_gmacs(self, size: tuple[int, int], num_frames: int) -> float:
        """F_S: GMACs per clip of the plain TSN/TSM network (no masks, no policies)."""
        return num_frames * self.frame_macs(size)[1] / 1e9

    # -- forward -------------------------------------------------------------------------------

    def forward_features(self, x: Tensor) -> Tensor:
        return self.network.forward_features(x)

    def forward_head(self, features: Tensor) -> Tensor:
        return self.network.forward_head(features)

    def forward_output(self, x: Tensor) -> ModelOutput:
        """Logits, per-clip GMACs from the decisions, and the decisions (module docstring)."""
        b, _, t, h, w = x.shape
        logits = self.forward_head(self.forward_features(x))
        records = [block.last for block in self.blocks()]
        if any(r is None for r in records):
            raise RuntimeError("a D-STEP block did not run in this forward")
        fixed = float(self._frame_fixed_macs((h, w))[0])
        executed = torch.stack([r.executed for r in records], dim=1).view(b, t, -1)  # type: ignore[union-attr]
        eq2 = torch.stack([r.eq2 for r in records], dim=1).view(b, t, -1)  # type: ignore[union-attr]
        flops = eq2 + (executed.to(eq2.dtype) - eq2).detach()
        frame_gmacs = (executed.sum(dim=2) + fixed) / 1e9
        ratio = (flops.sum(dim=(1, 2)) + t * fixed) / 1e9 / self.static_gmacs((h, w), t)
        rates = torch.stack([r.decisions.mean(dim=1) for r in records], dim=1).view(b, t, -1, 3).mean(dim=1)  # type: ignore[union-attr]
        decisions = {
            "spatial_density": torch.stack([r.density for r in records], dim=1).view(b, t, -1).mean(dim=1),  # type: ignore[union-attr]
            "skip_rate": rates[..., SKIP], "reuse_rate": rates[..., REUSE], "compute_rate": rates[..., COMPUTE],
            "block_gmacs": executed.sum(dim=1) / 1e9, "frame_gmacs": frame_gmacs, "flops_ratio": ratio,
        }
        return ModelOutput(logits=logits, cost=frame_gmacs.sum(dim=1), decisions=decisions)

    def reset_classifier(self, num_classes: int) -> None:
        """A fresh classifier for ``num_classes``; ``spec`` follows."""
        self.network.reset_classifier(num_classes)
        self._adopt()
        self.spec = self.spec.replace(num_classes=num_classes)

    def loss_terms(self) -> dict[str, Any]:
        """``sparsity`` (``lambda(e) L_spar``) and ``bound`` (``L_bound``; weight it by gamma)."""
        return {"sparsity": sparsity_term(self.settings.loss), "bound": bound_term(self.settings.loss)}

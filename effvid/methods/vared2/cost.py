"""What a VA-RED2 model costs per clip, computed from its gates' decisions.

Counted in effvid's convention (:mod:`effvid.cost.static`): MACs of convolutions and linear
layers. A clip costs the network's static MACs outside the wrapped convolutions (``rest``,
counted once per input shape on the meta device) plus, for every wrapped convolution, its
gate, and, unless an axis has no non-zero weight (then nothing runs), the convolution of the
largest non-zero choices and the channel rebuild of every non-zero smaller channel choice.
That is exactly what :class:`~effvid.methods.vared2.conv.DynamicConv3d` executes in eval mode,
and what ``effvid.cost.executed.check_reported_cost`` holds it to. Everything here is
indexing and elementwise arithmetic, so computing the cost executes no MACs itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatch

import torch
from torch import Tensor, nn

from effvid.cost.static import count_cost
from effvid.errors import ConfigError
from effvid.methods.vared2.conv import DynamicConv3d
from effvid.methods.vared2.gate import GateOutput
from effvid.models import create_from_spec
from effvid.spec import ArchSpec


@dataclass(frozen=True)
class ConvShape:
    """A wrapped convolution's input ``(C, T, H, W)`` and output ``(T, H, W)`` for one clip."""

    in_shape: tuple[int, int, int, int]
    out_size: tuple[int, int, int]


@dataclass(frozen=True)
class Probe:
    """The plain network at one input: its total MACs and the shapes of the matched convolutions."""

    total_macs: int
    convs: dict[str, ConvShape]


def probe_network(spec: ArchSpec, patterns: Sequence[str], input_shape: Sequence[int]) -> Probe:
    """Count the plain network of ``spec`` (on the meta device) at ``input_shape``
    ``(1, C, T, H, W)`` and record the shapes of its ``nn.Conv3d`` modules whose names match
    ``patterns``; no match, or a match that is not a dense (groups 1) convolution, is a
    :class:`ConfigError`."""
    with torch.device("meta"):
        base = create_from_spec(spec.replace(method=None))
    convs = {name: m for name, m in base.named_modules()
             if isinstance(m, nn.Conv3d) and any(fnmatch(name, p) for p in patterns)}
    if not convs:
        raise ConfigError(f"vared2: no Conv3d of {spec.name} matches wrap patterns {list(patterns)}")
    grouped = [name for name, m in convs.items() if m.groups != 1]
    if grouped:
        raise ConfigError(f"vared2: wrap patterns {list(patterns)} match grouped or depthwise convolutions "
                          f"({', '.join(grouped[:3])}); VA-RED2 wraps dense convolutions only")
    shapes: dict[str, ConvShape] = {}

    def recorder(name: str):
        def hook(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
            shapes[name] = ConvShape(tuple(inputs[0].shape[1:]), tuple(output.shape[2:]))  # type: ignore[arg-type]
        return hook

    handles = [m.register_forward_hook(recorder(name)) for name, m in convs.items()]
    try:
        report = count_cost(base, tuple(input_shape))
    finally:
        for handle in handles:
            handle.remove()
    return Probe(total_macs=round(report.gmacs * 1e9), convs={name: shapes[name] for name in convs})


@dataclass(frozen=True)
class LayerCost:
    """One wrapped convolution's MACs per clip: ``gate``, ``conv[i][j]`` and ``cheap[i][j]``
    (see :meth:`DynamicConv3d.cost_tables`)."""

    gate: int
    conv: list[list[int]]
    cheap: list[list[int]]

    @property
    def dense(self) -> int:
        """The most this layer can cost: gate, full convolution, every channel rebuild."""
        return self.gate + self.conv[0][0] + sum(row[0] for row in self.cheap)


@dataclass(frozen=True)
class ModelCost:
    """A VA-RED2 model's cost tables at one input shape; the layers share one search space, so
    their tables also stack into ``(L, S_c, S_t)`` and ``(L, S_t, S_c)`` float64 tensors and a
    forward prices every layer in a few operations."""

    rest: int
    layers: tuple[LayerCost, ...]
    gate_macs: Tensor = field(init=False, repr=False, compare=False)
    conv_tables: Tensor = field(init=False, repr=False, compare=False)
    cheap_tables: Tensor = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "gate_macs", torch.tensor([layer.gate for layer in self.layers], dtype=torch.float64))
        object.__setattr__(self, "conv_tables", torch.tensor([layer.conv for layer in self.layers], dtype=torch.float64))
        object.__setattr__(self, "cheap_tables", torch.tensor([layer.cheap for layer in self.layers],
                                                              dtype=torch.float64).transpose(1, 2).contiguous())

    @classmethod
    def build(cls, probe: Probe, layers: Sequence[DynamicConv3d]) -> ModelCost:
        """The tables of ``layers`` (in ``probe.convs`` order) at the probed input."""
        costs = []
        for shape, layer in zip(probe.convs.values(), layers):
            conv, cheap = layer.cost_tables(shape.out_size)
            costs.append(LayerCost(gate=layer.gate.macs, conv=conv, cheap=cheap))
        rest = probe.total_macs - sum(c.conv[0][0] for c in costs)
        return cls(rest=rest, layers=tuple(costs))

    @property
    def dense_gmacs(self) -> float:
        """The ceiling per clip: every weight non-zero (full convolutions plus every rebuild)."""
        return (self.rest + sum(layer.dense for layer in self.layers)) / 1e9

    def layer_weights(self) -> list[float]:
        """Each wrapped convolution's share of their summed full cost (Eq. 3.6's ``C(f_l) / sum C(f_k)``)."""
        full = [layer.conv[0][0] for layer in self.layers]
        return [f / sum(full) for f in full]

    def per_sample(self, gates: Sequence[GateOutput]) -> tuple[Tensor, Tensor]:
        """``(total (B,), per_layer (B, L))`` GMACs, float64, from each layer's gate output."""
        device = gates[0].v_c.device
        active_c = torch.stack([gate.v_c > 0 for gate in gates], 1)  # (B, L, S_c)
        active_t = torch.stack([gate.v_t > 0 for gate in gates], 1)  # (B, L, S_t)
        runs = active_c.any(-1) & active_t.any(-1)
        first_c, first_t = active_c.int().argmax(-1), active_t.int().argmax(-1)
        layer = torch.arange(len(self.layers), device=device)
        conv = self.conv_tables.to(device)[layer, first_c, first_t]
        cheap = (self.cheap_tables.to(device)[layer, first_t] * active_c).sum(-1)
        spent = self.gate_macs.to(device) + torch.where(runs, conv + cheap, torch.zeros_like(conv))
        return (self.rest + spent.sum(1)) / 1e9, spent / 1e9

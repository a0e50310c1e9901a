"""Static cost of a model: GMACs per view at an explicit input shape, and parameters.

Convention (DESIGN.md): GMACs of convolution, linear and matmul ops for one view at batch 1
(a spec's view is its test input: ``num_frames`` frames at the test crop),
which is what papers and toolkits print as "GFLOPs" (one multiply-add = one FLOP). BatchNorm
and activations are excluded unless ``with_bn=True``; BatchNorm then counts
:data:`BN_MACS_PER_ELEMENT` (5) per output element, the convention of PyTorchVideo's model zoo
(X3D-M 6.72 at 16x256x256, SlowFast 4x16 36.69 at 256). Bias additions are not counted.

Counting runs :class:`torch.utils.flop_counter.FlopCounterMode` on the meta device: models
named or given as an :class:`~effvid.spec.ArchSpec` are built under
``torch.device("meta")`` and a model instance is run with meta stand-ins for its parameters
and buffers, so nothing is allocated and a 40-GMAC model is counted in well under a second.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.func import functional_call
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from effvid.errors import ConfigError
from effvid.models import create_from_spec, default_spec
from effvid.models.base import is_dynamic
from effvid.spec import ArchSpec, spec_input_shape

BN_MACS_PER_ELEMENT = 5
"""MACs counted per BatchNorm output element when ``with_bn`` (PyTorchVideo's convention)."""

BATCH_NORM_OPS = tuple(
    getattr(torch.ops.aten, name)
    for name in (
        "native_batch_norm",
        "_native_batch_norm_legit",
        "_native_batch_norm_legit_no_training",
    )
    if hasattr(torch.ops.aten, name)
)
"""The aten BatchNorm ops counted (with :func:`batch_norm_flops`) when ``with_bn``."""


@dataclass(frozen=True)
class CostReport:
    """Cost of one view: ``gmacs`` at ``input_shape`` ``(1, C, T, H, W)`` and ``params``.

    ``layers`` (when asked for) holds one row ``{"module", "op", "gmacs"}`` per module and op,
    with the ops a module runs itself (not those of its children); the rows sum to ``gmacs``.
    For a dynamic model (``dynamic``) ``gmacs`` is its dense cost, every decision at its
    largest: what it costs per view depends on the input and is measured by evaluation.
    """

    model: str
    input_shape: tuple[int, ...]
    gmacs: float
    params: int
    with_bn: bool = False
    dynamic: bool = False
    layers: list[dict[str, Any]] | None = field(default=None, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (``layers`` only when it was counted)."""
        out: dict[str, Any] = {
            "model": self.model,
            "input_shape": list(self.input_shape),
            "gmacs": self.gmacs,
            "params": self.params,
            "with_bn": self.with_bn,
            "dynamic": self.dynamic,
        }
        if self.layers is not None:
            out["layers"] = self.layers
        return out


def format_shape(shape: Sequence[int]) -> str:
    """An input shape as people write it: ``1x3x16x112x112``."""
    return "x".join(str(d) for d in shape)


def count_spec(spec: ArchSpec, *, with_bn: bool = False, per_layer: bool = False) -> CostReport:
    """Cost of the model ``spec`` builds, at the spec's own test input (:func:`spec_input_shape`)."""
    return count_cost(spec, with_bn=with_bn, per_layer=per_layer)


def count_cost(
    model_or_name_or_spec: nn.Module | str | ArchSpec,
    input_shape: Sequence[int] | None = None,
    *,
    with_bn: bool = False,
    per_layer: bool = False,
) -> CostReport:
    """GMACs per view and parameters of a model, a registered model name, or an ArchSpec.

    ``input_shape`` is ``(T, H, W)``, ``(C, T, H, W)`` or ``(B, C, T, H, W)``; the count is per
    view, so a batch ``B`` is divided out and the report shows ``B = 1``. Without it the input
    comes from the spec (the model's ``spec`` attribute for an instance); an instance without
    a spec needs an explicit shape. The instance passed in is left untouched (same device,
    same train/eval mode, same weights).
    """
    target = model_or_name_or_spec
    if isinstance(target, str):
        target = default_spec(target)
    if isinstance(target, ArchSpec):
        with torch.device("meta"):
            model = create_from_spec(target)
        spec: ArchSpec | None = target
    elif isinstance(target, nn.Module):
        model = target
        spec = getattr(model, "spec", None)
    else:
        raise TypeError(f"count_cost takes a model, a model name or an ArchSpec, not {type(target).__name__}")
    name = spec.name if spec is not None else type(model).__name__
    shape = _full_shape(input_shape, spec, name)
    if is_dynamic(model):
        return _dense_report(model, name, shape, spec, with_bn=with_bn, per_layer=per_layer)
    flops, layers = _count_meta_flops(model, shape, with_bn=with_bn, per_layer=per_layer)
    batch = shape[0]
    if layers is not None:
        layers = [{**row, "gmacs": row["gmacs"] / batch} for row in layers]
    params = sum(p.numel() for p in model.parameters())
    return CostReport(
        model=name,
        input_shape=(1, *shape[1:]),
        gmacs=flops / 2 / batch / 1e9,
        params=params,
        with_bn=with_bn,
        layers=layers,
    )


def _dense_report(model: nn.Module, name: str, shape: tuple[int, ...], spec: ArchSpec | None, *, with_bn: bool,
                  per_layer: bool) -> CostReport:
    """A dynamic model's report: its own dense cost, which it states at its spec's input only."""
    if spec is None or tuple(shape[1:]) != spec_input_shape(spec)[1:]:
        raise ConfigError(f"{name}: a dynamic model states its dense cost at its spec's input "
                          f"{format_shape(spec_input_shape(spec)) if spec else '(no spec)'}; "
                          f"change the spec to price another input")
    if with_bn or per_layer:
        raise ConfigError(f"{name}: a dynamic model's cost depends on its input; per-layer and BatchNorm "
                          "counts are for static networks (run `effvid eval` for the measured cost)")
    params = sum(p.numel() for p in model.parameters())
    return CostReport(model=name, input_shape=(1, *shape[1:]), gmacs=float(model.dense_gmacs()), params=params,
                      dynamic=True)


def _full_shape(input_shape: Sequence[int] | None, spec: ArchSpec | None, name: str) -> tuple[int, ...]:
    if input_shape is None:
        if spec is None:
            raise ConfigError(f"model {name} carries no spec: give input_shape (C, T, H, W) to count its cost")
        return spec_input_shape(spec)
    shape = tuple(int(d) for d in input_shape)
    if len(shape) == 3:
        shape = (1, 3, *shape)
    elif len(shape) == 4:
        shape = (1, *shape)
    if len(shape) != 5 or min(shape) < 1:
        raise ConfigError(f"input_shape must be (T, H, W), (C, T, H, W) or (B, C, T, H, W) of positive sizes, got {tuple(input_shape)}")
    return shape


def _count_meta_flops(
    model: nn.Module, shape: tuple[int, ...], *, with_bn: bool, per_layer: bool
) -> tuple[int, list[dict[str, Any]] | None]:
    """FLOPs (2 per MAC, FlopCounterMode's unit) of one eval-mode forward on the meta device."""
    custom = {op: batch_norm_flops for op in BATCH_NORM_OPS} if with_bn else {}
    stand_ins = {
        key: torch.empty(value.shape, dtype=value.dtype, device="meta")
        for key, value in (*model.named_parameters(), *model.named_buffers())
    }
    x = torch.empty(shape, device="meta")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), _MetaBatchNormShortcut(), FlopCounterMode(display=False, depth=None, custom_mapping=custom) as counter:
            functional_call(model, stand_ins, (x,), strict=False)
    finally:
        model.train(was_training)
    layers = _own_rows(counter.get_flop_counts()) if per_layer else None
    return counter.get_total_flops(), layers


class _MetaBatchNormShortcut(TorchDispatchMode):
    """Answers BatchNorm ops on the meta device with an output of the input's shape.

    The meta kernel of BatchNorm is a Python decomposition that makes up most of the time of
    a meta forward; only the output's shape matters for counting. Entered outside the
    FlopCounterMode, so the counter still sees every BatchNorm call.
    """

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func._overloadpacket in BATCH_NORM_OPS and args[0].device.type == "meta":
            x = args[0]
            return torch.empty_like(x), x.new_empty((0,)), x.new_empty((0,))
        return func(*args, **(kwargs or {}))


def batch_norm_flops(*args: Any, out_shape: Any = None, **kwargs: Any) -> int:
    """FlopCounterMode formula for a BatchNorm op: :data:`BN_MACS_PER_ELEMENT` MACs per element.

    FlopCounterMode counts 2 FLOPs per MAC and the counters halve every count.
    """
    return 2 * BN_MACS_PER_ELEMENT * math.prod(args[0])


def _own_rows(counts: dict[str, dict[Any, int]]) -> list[dict[str, Any]]:
    """One row per module and op with the FLOPs the module runs itself, in GMACs."""
    names = [key for key in counts if key != "Global"]
    rows = []
    for key in names:
        depth = key.count(".")
        own = dict(counts[key])
        for child in names:
            if child.startswith(key + ".") and child.count(".") == depth + 1:
                for op, value in counts[child].items():
                    own[op] = own.get(op, 0) - value
        module = key.partition(".")[2] or "(model)"
        for op, value in own.items():
            if value > 0:
                rows.append({"module": module, "op": str(op).removeprefix("aten."), "gmacs": value / 2 / 1e9})
    return rows

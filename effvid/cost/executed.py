"""Executed cost: the multiply-accumulates a model actually ran on a real input, per sample.

A dynamic model reports, per sample, the GMACs its decisions cost (``ModelOutput.cost``), and
DESIGN.md promises that it really skips the work it reports as skipped. This module holds it
to that: :func:`count_executed` runs a real eval-mode forward on real tensors and counts the
conv, linear and matmul calls that executed; :func:`check_reported_cost` asserts that the
reported cost equals that count (or, for a static model, that the count equals the static
counter's). A model that computes densely and multiplies a mask onto the result executes the
dense MACs, and the check says so, sample by sample.

Convention: exactly :mod:`effvid.cost.static`'s. GMACs of ``aten`` convolution, mm, addmm, bmm,
baddbmm and attention calls (what :class:`torch.utils.flop_counter.FlopCounterMode` counts,
2 FLOPs per MAC, halved here); BatchNorm excluded unless ``with_bn``, then
:data:`~effvid.cost.static.BN_MACS_PER_ELEMENT` per output element (the same mapping, imported
from the static module); activations, pooling and bias additions not counted. The one
addition: the attention kernel CPU runs for ``scaled_dot_product_attention``, which
FlopCounterMode has no formula for, is counted as the two matmuls the static counter sees on
the meta device. Gathers,
index, ``index_select``/``index_copy``, slicing, concatenation, masking and other data
movement are not MACs and cost nothing here, so a model that gathers tiles, routes frames or
slices weights is charged only for the convolutions it then runs on what it gathered.
FlopCounterMode counts from the shapes of the tensors an op really received, so on a real
forward the count is of what executed, not of what the architecture could run.

Everything that runs inside ``forward_output`` is counted, including gate and policy networks
(part of a dynamic model's cost) and any conv/linear/matmul the model uses to compute its cost
(compute it with sums and elementwise products, or keep it tiny against the tolerance).

One sample at a time: the model runs on ``x[i:i+1]`` for each ``i`` under its own counter,
so each sample's count is exact however the model batches work internally (per-branch
sub-batches, gathered tiles pooled across the batch). This relies on one sample's eval-mode
decisions and outputs not depending on the other samples of its batch, which holds for every
effvid model (BatchNorm uses running statistics in eval mode; gates and policies decide per
sample).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode, conv_flop_count, sdpa_flop_count

from effvid.cost.static import BATCH_NORM_OPS, batch_norm_flops, count_cost
from effvid.models.base import is_dynamic, model_output


def _cpu_attention_flops(query_shape: Any, key_shape: Any, value_shape: Any, *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


# FlopCounterMode has formulas for the CUDA attention kernels but none for the one CPU
# scaled_dot_product_attention runs, which it would count as 0; on the meta device the static
# counter sees that attention as two bmm calls, whose MACs this formula equals.
_CPU_ATTENTION = {
    getattr(torch.ops.aten, name): _cpu_attention_flops
    for name in ("_scaled_dot_product_flash_attention_for_cpu",)
    if hasattr(torch.ops.aten, name)
}


def _onednn_conv_flops(x_shape: Any, w_shape: Any, bias: Any, padding: Any, stride: Any, dilation: Any, groups: Any,
                       *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
    return conv_flop_count(x_shape, w_shape, out_shape, transposed=False)


EXECUTED_FORMULAS = {**_CPU_ATTENTION, torch.ops.aten.mkldnn_convolution: _onednn_conv_flops}
"""FlopCounterMode formulas for the CPU kernels it does not know: the attention above, and the
oneDNN convolution that inference runs 3D convolutions through (:mod:`effvid.models.onednn`),
counted as the convolution it is. Pass them as ``custom_mapping`` to count a real forward."""


@dataclass(frozen=True, eq=False)
class ExecutedCost:
    """What one real forward executed, sample by sample.

    ``per_sample_gmacs`` (float64, ``(B,)``, CPU): GMACs each sample executed, in the static
    counter's convention. ``logits`` (``(B, K)``): the eval-mode logits, one forward per sample,
    concatenated. ``reported`` (float64, ``(B,)``, CPU): the cost the model's ``forward_output``
    reported for each sample, or ``None`` for a model that reports none (a static model).
    ``input_shape`` is one view's input ``(1, C, T, H, W)``.
    """

    per_sample_gmacs: Tensor
    logits: Tensor
    reported: Tensor | None
    input_shape: tuple[int, ...]
    with_bn: bool = False

    @property
    def mean_gmacs(self) -> float:
        return float(self.per_sample_gmacs.mean())

    @property
    def min_gmacs(self) -> float:
        return float(self.per_sample_gmacs.min())

    @property
    def max_gmacs(self) -> float:
        return float(self.per_sample_gmacs.max())

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict of the costs (the logits are left out)."""
        return {
            "input_shape": list(self.input_shape),
            "with_bn": self.with_bn,
            "per_sample_gmacs": self.per_sample_gmacs.tolist(),
            "mean_gmacs": self.mean_gmacs,
            "min_gmacs": self.min_gmacs,
            "max_gmacs": self.max_gmacs,
            "reported_gmacs": None if self.reported is None else self.reported.tolist(),
        }


def count_executed(model: nn.Module, x: Tensor, *, with_bn: bool = False) -> ExecutedCost:
    """GMACs each sample of ``x`` (``(B, C, T, H, W)``, real tensors) executed in ``model``.

    The model runs in eval mode under ``torch.no_grad()``, one sample at a time, through
    :func:`effvid.models.base.model_output`; the train/eval mode of every submodule is restored
    afterwards, and the weights are not touched.
    """
    if not isinstance(x, Tensor) or x.dim() < 1 or x.shape[0] < 1:
        raise ValueError(f"count_executed needs a batch tensor with at least one sample, got {_describe(x)}")
    custom = {**EXECUTED_FORMULAS, **({op: batch_norm_flops for op in BATCH_NORM_OPS} if with_bn else {})}
    modes = [(module, module.training) for module in model.modules()]
    flops: list[int] = []
    logits: list[Tensor] = []
    reported: list[Tensor | None] = []
    model.eval()
    try:
        with torch.no_grad():
            for i in range(x.shape[0]):
                with FlopCounterMode(display=False, depth=None, custom_mapping=custom) as counter:
                    out = model_output(model, x[i : i + 1])
                flops.append(counter.get_total_flops())
                logits.append(out.logits.detach())
                reported.append(_one_cost(out.cost, i))
    finally:
        for module, training in modes:
            module.training = training
    if all(cost is None for cost in reported):
        reported_costs = None
    elif any(cost is None for cost in reported):
        missing = [i for i, cost in enumerate(reported) if cost is None]
        raise ValueError(f"forward_output reported a cost for some samples but not for samples {missing}")
    else:
        reported_costs = torch.cat(reported)  # type: ignore[arg-type]
    return ExecutedCost(
        per_sample_gmacs=torch.tensor(flops, dtype=torch.float64) / 2 / 1e9,
        logits=torch.cat(logits),
        reported=reported_costs,
        input_shape=(1, *x.shape[1:]),
        with_bn=with_bn,
    )


def check_reported_cost(model: nn.Module, x: Tensor, *, rtol: float = 1e-6, atol: float = 1e-9) -> ExecutedCost:
    """Assert that ``model`` costs, per sample of ``x``, what it says it costs; returns the count.

    A dynamic model (``model.dynamic`` true) must report, for every sample, the GMACs that
    sample executed; a static model must execute, for every sample, what
    :func:`~effvid.cost.static.count_cost` counts at ``x.shape[1:]``. Values match when
    ``|executed - expected| <= atol + rtol * |expected|`` (``atol`` in GMACs: 1e-9 is one MAC).
    A mismatch raises :class:`AssertionError` listing each offending sample with its expected
    and executed GMACs.
    """
    executed = count_executed(model, x)
    name = _model_name(model)
    if is_dynamic(model):
        if executed.reported is None:
            raise AssertionError(f"{name} is dynamic but its forward_output reports no per-sample cost (cost=None)")
        expected, what = executed.reported, "reported"
    else:
        static = count_cost(model, tuple(x.shape[1:])).gmacs
        expected, what = torch.full_like(executed.per_sample_gmacs, static), "static"
    ran = executed.per_sample_gmacs
    bad = (~torch.isclose(ran, expected, rtol=rtol, atol=atol)).nonzero().flatten().tolist()
    if bad:
        rows = [
            f"  sample {i}: {what} {expected[i].item():.10g} GMACs, executed {ran[i].item():.10g} GMACs "
            f"(executed - {what} = {(ran[i] - expected[i]).item() * 1e9:+.0f} MACs)"
            for i in bad
        ]
        shape = "x".join(str(d) for d in executed.input_shape)
        raise AssertionError(
            f"{name}: {what} cost differs from the executed count on {len(bad)} of {len(ran)} samples "
            f"(input {shape} per sample, rtol={rtol:g}, atol={atol:g} GMACs):\n" + "\n".join(rows)
        )
    return executed


def _one_cost(cost: Tensor | None, index: int) -> Tensor | None:
    """The one-sample forward's reported cost as a float64 ``(1,)`` CPU tensor."""
    if cost is None:
        return None
    cost = torch.as_tensor(cost).detach()
    if cost.numel() != 1:
        raise ValueError(f"forward_output of sample {index} alone reported a cost of shape {tuple(cost.shape)}, not (1,)")
    return cost.reshape(1).to(device="cpu", dtype=torch.float64)


def _model_name(model: nn.Module) -> str:
    spec = getattr(model, "spec", None)
    return getattr(spec, "name", None) or type(model).__name__


def _describe(x: Any) -> str:
    return f"a tensor of shape {tuple(x.shape)}" if isinstance(x, Tensor) else type(x).__name__

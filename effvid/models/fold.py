"""BatchNorm folded into the convolution before it, for inference.

In eval mode a BatchNorm is a per-channel affine map, so when it reads nothing but a
convolution's output, ``bn(conv(x))`` is one convolution with ``W' = W * s`` per output channel
and ``b' = (b - mean) * s + beta``, where ``s = gamma / sqrt(var + eps)`` (:func:`fold_into`).
That saves a pass over every such output and a module call: measured on this project's 2-core
CPU, one thread, the BatchNorms take about a fifth of R(2+1)D-18's batch-1 time at 16x48x48.
Deployment toolkits fold the same way; effvid's inference preparation
(:func:`~effvid.models.inference.prepare_for_inference`) folds every model alike, static and
dynamic, so a dynamic model and its base are compared prepared the same way.

Which BatchNorm reads which convolution is found by running the model once on its spec's input
(:func:`find_pairs`): a pair is a convolution module (groups any, 2D or 3D) and a BatchNorm whose
every call reads, unchanged (same tensor, same version), the output of that convolution's call
just before it, with no other module called between them, and whose convolution never runs
without it. The folded model's logits on the same input must then match the unfolded ones
(``atol`` 1e-4 relative to their scale), or nothing is folded: that catches a convolution
output read elsewhere as well, which hooks cannot see. A module a method runs functionally
(its own folded or sliced weights) is not seen, so it is not touched; a method's own
convolution module takes part by defining ``absorb_batchnorm(bn)`` (``None`` undoes it), and
then applies ``bn`` itself at inference (:func:`batchnorm_affine`), for example fused with a
per-sample scale it applies anyway.

Folding is an inference view, not a rewrite: both modules keep their parameters, buffers and
state-dict keys. The convolution (:class:`FoldedConv2d`, :class:`FoldedConv3d`) runs the folded
weights, and the BatchNorm (:class:`FoldedBatchNorm`) passes its input through, only in eval
mode with gradients off; in training mode, or with gradients on, both run as they were built.
The folded weights are cached until a tensor they come from changes (an optimiser step or a
loaded state dict bumps its version).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

import torch
from torch import Tensor, nn

from effvid.models.base import model_output
from effvid.models.onednn import OneDnnConv3d
from effvid.spec import spec_input_shape

log = logging.getLogger(__name__)
T = TypeVar("T")


def batchnorm_affine(bn: nn.modules.batchnorm._BatchNorm, bias: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """``(s, t)`` per channel with ``bn(y + bias) = y * s + t`` in eval mode (``bias`` a
    convolution's, or none)."""
    assert bn.running_mean is not None and bn.running_var is not None
    root = torch.sqrt(bn.running_var + bn.eps)
    scale = bn.weight / root if bn.weight is not None else 1.0 / root
    shift = -bn.running_mean if bias is None else bias - bn.running_mean
    return scale, shift * scale + (bn.bias if bn.bias is not None else 0.0)


def fold_into(weight: Tensor, bias: Tensor | None, bn: nn.modules.batchnorm._BatchNorm) -> tuple[Tensor, Tensor]:
    """``(W', b')``: a convolution's ``weight`` and ``bias`` with the eval-mode ``bn`` after it
    folded in (module docstring); ``W'`` keeps ``weight``'s memory format."""
    scale, folded_bias = batchnorm_affine(bn, bias)
    return weight * scale.view(-1, *([1] * (weight.dim() - 1))), folded_bias


def tensors_key(*tensors: Tensor | None) -> tuple[int, ...]:
    """A key that changes when any of ``tensors`` is replaced or changed in place (an optimiser
    step or a loaded state dict bumps a tensor's version): what caches of folded weights use."""
    return tuple(v for t in tensors if t is not None for v in (id(t), t._version, t.data_ptr()))


def kept(store: dict[str, Any], slot: str, key: tuple[Any, ...], compute: Callable[[], T]) -> T:
    """``compute()``, kept in ``store[slot]`` (a module's ``__dict__``, outside its registered
    state) with ``key`` and computed again only when ``key`` changes: the caches of folded
    weights, keyed by :func:`tensors_key` of the tensors they read."""
    entry = store.get(slot)
    if entry is None or entry[0] != key:
        entry = key, compute()
        store[slot] = entry
    return entry[1]


def folding(module: nn.Module) -> bool:
    """Whether ``module`` runs folded now: eval mode with gradients off."""
    return not module.training and not torch.is_grad_enabled()


class _Folded:
    """What the folded convolutions share: the BatchNorm they absorb and the cached weights."""

    def folded(self) -> tuple[Tensor, Tensor]:
        """The folded weight and bias, recomputed when any tensor they come from changed."""
        conv: Any = self
        bn = conv.__dict__["absorbed"]
        key = tensors_key(conv.weight, conv.bias, bn.weight, bn.bias, bn.running_mean, bn.running_var)
        return kept(conv.__dict__, "_folded_cache", key, lambda: fold_into(conv.weight, conv.bias, bn))


def running_weights(conv: nn.Module) -> tuple[Tensor, Tensor | None]:
    """The weight and bias ``conv`` convolves with now: its folded ones where it runs folded (a
    convolution that absorbed a BatchNorm, in eval mode with gradients off), else its own."""
    if isinstance(conv, _Folded) and folding(conv):
        return conv.folded()
    return conv.weight, conv.bias


class FoldedConv2d(_Folded, nn.Conv2d):
    """An ``nn.Conv2d`` running its BatchNorm folded in at inference (module docstring)."""

    def _conv_forward(self, input: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        if folding(self):
            weight, bias = self.folded()
        return super()._conv_forward(input, weight, bias)


class FoldedConv3d(_Folded, OneDnnConv3d):
    """A 3D convolution (run in oneDNN) with its BatchNorm folded in at inference."""

    def _conv_forward(self, input: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        if folding(self):
            weight, bias = self.folded()
        return super()._conv_forward(input, weight, bias)


class FoldedBatchNorm(nn.modules.batchnorm._BatchNorm):
    """A BatchNorm folded into the convolution before it: the identity at inference."""

    def forward(self, input: Tensor) -> Tensor:
        if folding(self):
            return input
        return super().forward(input)


class FoldedBatchNorm2d(FoldedBatchNorm, nn.BatchNorm2d):
    """:class:`FoldedBatchNorm` for 2D maps."""


class FoldedBatchNorm3d(FoldedBatchNorm, nn.BatchNorm3d):
    """:class:`FoldedBatchNorm` for 3D maps."""


_CONV_CLASSES: dict[type, type] = {nn.Conv2d: FoldedConv2d, nn.Conv3d: FoldedConv3d, OneDnnConv3d: FoldedConv3d}
_BN_CLASSES: dict[type, type] = {nn.BatchNorm2d: FoldedBatchNorm2d, nn.BatchNorm3d: FoldedBatchNorm3d}


def _foldable(module: nn.Module) -> bool:
    return type(module) in _CONV_CLASSES or callable(getattr(module, "absorb_batchnorm", None))


def _fold(conv: nn.Module, bn: nn.Module) -> None:
    if type(conv) in _CONV_CLASSES:
        conv.__dict__["absorbed"] = bn
        conv.__class__ = _CONV_CLASSES[type(conv)]
    else:
        conv.absorb_batchnorm(bn)  # type: ignore[operator]
    bn.__class__ = _BN_CLASSES[type(bn)]


def _unfold(conv: nn.Module, conv_class: type, bn: nn.Module, bn_class: type) -> None:
    if conv_class is type(conv):  # the module absorbed the BatchNorm itself
        conv.absorb_batchnorm(None)  # type: ignore[operator]
    else:
        conv.__class__ = conv_class
        del conv.__dict__["absorbed"]
        conv.__dict__.pop("_folded_cache", None)
    bn.__class__ = bn_class


def find_pairs(model: nn.Module, x: Tensor) -> tuple[list[tuple[nn.Module, nn.Module]], Any]:
    """The (convolution, BatchNorm) pairs of ``model`` (module docstring) and its output on ``x``
    (eval mode, no gradients; the model runs once)."""
    last: list[Any] = [None]  # (conv, output, output version) when the last call was a conv's
    sources: dict[nn.Module, set[nn.Module | None]] = {}
    reads: dict[nn.Module, int] = {}
    runs: dict[nn.Module, int] = {}

    def any_call(module: nn.Module, args: Any) -> None:
        source = last[0]
        fresh = source is not None and bool(args) and args[0] is source[1] and args[0]._version == source[2]
        if isinstance(module, nn.Sequential) and fresh:
            return  # it hands the convolution's output to its first module
        if type(module) in _BN_CLASSES:
            sources.setdefault(module, set()).add(source[0] if fresh else None)
            reads[module] = reads.get(module, 0) + 1
        last[0] = None

    def conv_done(module: nn.Module, args: Any, output: Any) -> None:
        runs[module] = runs.get(module, 0) + 1
        last[0] = (module, output, output._version) if isinstance(output, Tensor) else None

    handles = [nn.modules.module.register_module_forward_pre_hook(any_call)]
    handles += [m.register_forward_hook(conv_done) for m in model.modules() if _foldable(m)]
    try:
        with torch.no_grad():
            out = model_output(model, x)
    finally:
        for handle in handles:
            handle.remove()
    candidates = [(next(iter(s)), bn) for bn, s in sources.items() if len(s) == 1 and None not in s]
    per_conv: dict[nn.Module, int] = {}
    for conv, _ in candidates:
        per_conv[conv] = per_conv.get(conv, 0) + 1
    # a convolution read by two BatchNorms, or run once without its BatchNorm, keeps its weights
    return [(conv, bn) for conv, bn in candidates if per_conv[conv] == 1 and reads[bn] == runs[conv]], out


def fold_batchnorms(model: nn.Module) -> int:
    """Fold every BatchNorm of ``model`` (in eval mode) into the convolution before it, as an
    inference view (module docstring); returns how many were folded. A model without a
    ``spec`` (no input to find the pairs with) is left as it is."""
    spec = getattr(model, "spec", None)
    if spec is None:
        return 0
    param = next(model.parameters(), None)
    x = torch.randn(spec_input_shape(spec), generator=torch.Generator().manual_seed(0))
    if param is not None:
        x = x.to(device=param.device, dtype=param.dtype if param.is_floating_point() else x.dtype)
    pairs, before = find_pairs(model, x)
    if not pairs:
        return 0
    swapped = [(conv, type(conv), bn, type(bn)) for conv, bn in pairs]
    for conv, _, bn, _ in swapped:
        _fold(conv, bn)
    with torch.no_grad():
        after = model_output(model, x)
    scale = before.logits.abs().max().clamp_min(1.0)
    if not torch.allclose(after.logits, before.logits, rtol=0.0, atol=1e-4 * float(scale)):
        for conv, conv_class, bn, bn_class in swapped:
            _unfold(conv, conv_class, bn, bn_class)
        log.warning("%s: folding its BatchNorms changed its outputs on a probe input; left unfolded",
                    type(model).__name__)
        return 0
    return len(pairs)

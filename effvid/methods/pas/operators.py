"""PAS reduction operators (paper section 3.1, Table 9): pure functions ``ArchSpec -> ArchSpec``.

* ``s`` :func:`epsilon_s`: train crop and test crop ``/ gamma_s`` (Table 9's ``224 / gamma-bar_s``;
  SlowFast's 256 test crop goes 256 -> 183 -> 131 beside 224 -> 160 -> 114); the train
  scale-jitter range and the test resize are scaled by the ratio of their crop. Each crop is
  rounded to the nearest integer the network accepts: :func:`apply_operator` asks the family's
  network itself (:func:`runs_at_crop`, a forward on the meta device), and every registered
  family runs at any integer crop of at least its total spatial stride (strided convolutions
  pad, heads pool adaptively), so in practice that is the nearest integer; a network that needs
  divisible crops gets the nearest crop it runs at. Coarser rounding distorts the step: multiples
  of 8 took a 48-pixel crop to 32 (0.44 of the pixels, not 1/1.96) and SlowFast's 256 to 184 ->
  128. Even exact pixels do not halve the cost of a crop only a few feature-map cells wide, as
  every strided stage rounds its map up: R(2+1)D at 48 -> 34 -> 24 -> 17 costs x0.56, x0.46, x0.68.
* ``t`` :func:`epsilon_t`: keep the first ``T / gamma_t`` frames: same stride, shorter span.
* ``f`` :func:`epsilon_f`: ``T / gamma_f`` frames over the same span: stride ``* gamma_f``.
* ``c`` :func:`epsilon_c`: ``width_mult / gamma_c`` (channels rounded by the family's rule).
* ``l`` :func:`epsilon_l`: ``depth_mult / gamma_l`` (blocks per stage by ``round_depth``).

Frame counts are rounded down (a clip keeps whole frames), to a multiple of ``frame_multiple``:
SlowFast passes its ``alpha`` so the slow pathway always gets whole frames. For SlowFast,
``num_frames`` is the fast pathway's frames and the raw clip is ``num_frames * frame_stride``
source frames; ``t`` and ``f`` reduce that raw clip and each pathway samples from it, which is
Table 9 (slow ``4 / (gt gf)``, fast ``32 / (gt gf)``, raw clip ``64 / (gt gf)`` at the base
stride). With segment sampling (TSN/TSM) ``f`` takes fewer segments and ``t`` does not exist.

:func:`apply_operator` adds the checks that need the model registry and records the
cumulative factors (the paper's gamma-bar, nominal gammas multiplied) in a :class:`Reduced`;
a hypothesis that cannot exist comes back as :class:`Pruned` with the reason.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import torch

from effvid.cost.static import count_cost
from effvid.errors import ConfigError, EffvidError
from effvid.models import create_from_spec, get_entry
from effvid.spec import ArchSpec

OPERATORS: tuple[str, ...] = ("s", "t", "f", "c", "l")
DEFAULT_GAMMAS: Mapping[str, float] = MappingProxyType({"s": 1.4, "t": 2.0, "f": 2.0, "c": 1.4, "l": 2.0})


class InfeasibleReduction(EffvidError):
    """An operator cannot be applied to a spec; ``reason`` says why."""

    def __init__(self, operator: str, reason: str) -> None:
        super().__init__(f"epsilon_{operator}: {reason}")
        self.operator = operator
        self.reason = reason

    def __reduce__(self):  # keeps operator and reason across Ray pickling
        return (type(self), (self.operator, self.reason))


def epsilon_s(spec: ArchSpec, gamma: float = DEFAULT_GAMMAS["s"], *,
              accepts: Callable[[int], bool] = lambda crop: True) -> ArchSpec:
    """``spec`` with its train crop and (when set) its test crop divided by ``gamma``, each rounded
    to the nearest integer crop that ``accepts`` (every integer by default), and the train and
    test resizes scaled by the ratio of their crop."""
    _check_gamma("s", gamma)
    crop = _reduced_crop(spec.crop_size, gamma, accepts)
    changes: dict[str, Any] = {"crop_size": crop}
    if spec.train_resize is not None:
        lo, hi = spec.train_resize
        ratio = crop / spec.crop_size
        changes["train_resize"] = (max(crop, round(lo * ratio)), max(crop, round(hi * ratio)))
    test_crop = crop
    if spec.test_crop_size is not None:
        test_crop = changes["test_crop_size"] = _reduced_crop(spec.test_crop_size, gamma, accepts)
    if spec.test_resize is not None:
        changes["test_resize"] = max(test_crop, round(spec.test_resize * test_crop / spec.test_crop))
    return spec.replace(**changes)


def nearest_accepted(target: float, below: int, accepts: Callable[[int], bool]) -> int | None:
    """The integer in ``[1, below)`` nearest to ``target`` for which ``accepts`` is true (ties go to
    the larger), or ``None`` when there is none; ``accepts`` is asked nearest first."""
    candidates = sorted(range(1, below), key=lambda size: (abs(size - target), -size))
    return next((size for size in candidates if accepts(size)), None)


def epsilon_t(spec: ArchSpec, gamma: float = DEFAULT_GAMMAS["t"], *, frame_multiple: int = 1) -> ArchSpec:
    """``spec`` keeping the first ``num_frames / gamma`` frames at the same stride."""
    _check_gamma("t", gamma)
    if spec.sampling == "segments":
        raise InfeasibleReduction("t", "segment sampling spans the whole video: there is no clip length to cut")
    return spec.replace(num_frames=_fewer_frames("t", spec.num_frames, gamma, frame_multiple))


def epsilon_f(spec: ArchSpec, gamma: float = DEFAULT_GAMMAS["f"], *, frame_multiple: int = 1) -> ArchSpec:
    """``spec`` with ``num_frames / gamma`` frames over the same span (stride times ``gamma``)."""
    _check_gamma("f", gamma)
    frames = _fewer_frames("f", spec.num_frames, gamma, frame_multiple)
    if spec.sampling == "segments":
        return spec.replace(num_frames=frames)
    stride = max(1, round(spec.clip_span / frames))
    return spec.replace(num_frames=frames, frame_stride=stride)


def epsilon_c(spec: ArchSpec, gamma: float = DEFAULT_GAMMAS["c"]) -> ArchSpec:
    """``spec`` with every convolution width divided by ``gamma`` (``width_mult / gamma``)."""
    _check_gamma("c", gamma)
    return spec.replace(width_mult=spec.width_mult / gamma)


def epsilon_l(spec: ArchSpec, gamma: float = DEFAULT_GAMMAS["l"]) -> ArchSpec:
    """``spec`` with the blocks of every stage divided by ``gamma`` (``depth_mult / gamma``)."""
    _check_gamma("l", gamma)
    return spec.replace(depth_mult=spec.depth_mult / gamma)


EPSILONS: Mapping[str, Callable[..., ArchSpec]] = MappingProxyType(
    {"s": epsilon_s, "t": epsilon_t, "f": epsilon_f, "c": epsilon_c, "l": epsilon_l}
)


@dataclass(frozen=True)
class Reduced:
    """A spec reached by a sequence of operators, with the cumulative factor of each operator."""

    spec: ArchSpec
    factors: Mapping[str, float] = field(default_factory=lambda: MappingProxyType(dict.fromkeys(OPERATORS, 1.0)))
    operators: tuple[str, ...] = ()

    @classmethod
    def base(cls, spec: ArchSpec) -> Reduced:
        """The base network: every factor 1, no operator applied."""
        return cls(spec)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable: the spec, the cumulative factors and the operators applied."""
        return {"spec": self.spec.to_dict(), "factors": dict(self.factors), "operators": list(self.operators)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Reduced:
        """Inverse of :meth:`to_dict`."""
        return cls(ArchSpec.from_dict(dict(data["spec"])), MappingProxyType(dict(data["factors"])), tuple(data["operators"]))


@dataclass(frozen=True)
class Pruned:
    """A hypothesis that cannot exist: ``operator`` applied to ``parent`` fails for ``reason``."""

    operator: str
    reason: str
    parent: Reduced


def parse_operators(text: str | Iterable[str], allowed: Iterable[str] = OPERATORS) -> tuple[str, ...]:
    """``"s,t,c"`` (or a list) as a tuple of operator names; an unknown name is a ConfigError."""
    names = [part.strip() for part in (text.split(",") if isinstance(text, str) else text)]
    names = [name for name in names if name]
    allowed = tuple(allowed)
    unknown = [name for name in names if name not in allowed]
    if unknown:
        raise ConfigError(f"unknown reduction operator(s) {', '.join(unknown)}; choose from {','.join(allowed)}")
    return tuple(names)


def apply_operator(state: Reduced, operator: str, gamma: float | None = None) -> Reduced | Pruned:
    """``operator`` applied to ``state``, or :class:`Pruned` when the result cannot exist.

    ``epsilon_s`` rounds each crop to the nearest one the network runs at (:func:`runs_at_crop`).
    Beyond the arithmetic of the epsilons, a result is pruned when its train or test crop is
    smaller than the network's total spatial stride, it has fewer frames than the model accepts
    (registry ``min_frames``), or a width or depth reduction leaves the parameter count unchanged
    (already at the narrowest channels or at one block per stage).
    """

    (operator,) = parse_operators([operator])
    gamma = DEFAULT_GAMMAS[operator] if gamma is None else gamma
    spec = state.spec
    entry = get_entry(spec.name)
    kwargs: dict[str, Any] = {}
    if operator in "tf" and entry.kind == "slowfast":
        kwargs["frame_multiple"] = spec.family["alpha"]
    if operator == "s":
        kwargs["accepts"] = lambda crop: runs_at_crop(spec, crop)
    try:
        reduced = EPSILONS[operator](spec, gamma, **kwargs)
        _check_feasible(operator, spec, reduced, entry)
    except InfeasibleReduction as err:
        return Pruned(operator, err.reason, state)
    factors = dict(state.factors)
    factors[operator] = factors.get(operator, 1.0) * gamma
    return Reduced(reduced, MappingProxyType(factors), (*state.operators, operator))


def apply_sequence(
    spec: ArchSpec, operators: str | Iterable[str], gammas: Mapping[str, float] | None = None
) -> list[Reduced | Pruned]:
    """One result per operator, in order; a pruned step is skipped and the next starts from the last valid state."""
    gammas = {**DEFAULT_GAMMAS, **(gammas or {})}
    state = Reduced.base(spec)
    results: list[Reduced | Pruned] = []
    for operator in parse_operators(operators):
        result = apply_operator(state, operator, gammas[operator])
        results.append(result)
        if isinstance(result, Reduced):
            state = result
    return results


def _check_gamma(operator: str, gamma: float) -> None:
    if not isinstance(gamma, (int, float)) or not gamma > 1:
        raise ConfigError(f"gamma_{operator} must be a number greater than 1, got {gamma!r}")


def _reduced_crop(crop: int, gamma: float, accepts: Callable[[int], bool]) -> int:
    target = crop / gamma
    if math.floor(target + 0.5) >= crop:
        raise InfeasibleReduction("s", f"crop {crop}/{gamma:g} rounds to {crop}: no reduction")
    reduced = nearest_accepted(target, crop, accepts)
    if reduced is None:
        raise InfeasibleReduction("s", f"the network runs at no crop smaller than {crop}")
    return reduced


def _fewer_frames(operator: str, frames: int, gamma: float, multiple: int) -> int:
    kept = math.floor(frames / gamma / multiple + 1e-9) * multiple
    if kept < max(1, multiple):
        unit = "one frame" if multiple == 1 else f"{multiple} frames (one slow-pathway frame)"
        raise InfeasibleReduction(operator, f"{frames}/{gamma:g} frames is fewer than {unit}")
    if kept >= frames:
        raise InfeasibleReduction(operator, f"{frames}/{gamma:g} frames rounds to {kept}: no reduction")
    return kept


def runs_at_crop(spec: ArchSpec, crop: int) -> bool:
    """Whether the family network of ``spec`` runs a forward on ``crop x crop`` frames (tried on
    the meta device: nothing is allocated). A shape error is a no; other errors propagate."""
    try:
        count_cost(spec.replace(method=None, crop_size=crop, test_crop_size=None))
    except RuntimeError:
        return False
    return True


def _check_feasible(operator: str, before: ArchSpec, after: ArchSpec, entry: Any) -> None:
    crop = min(after.crop_size, after.test_crop)
    if crop < entry.spatial_stride:
        raise InfeasibleReduction(
            operator, f"crop {crop} is smaller than the network's total spatial stride {entry.spatial_stride}"
        )
    if after.num_frames < entry.min_frames:
        raise InfeasibleReduction(operator, f"{after.num_frames} frames is fewer than {entry.name}'s minimum of {entry.min_frames}")
    if operator in "cl" and _meta_params(after) == _meta_params(before):
        what = "width is already at its narrowest" if operator == "c" else "no layer left to remove (one block per stage)"
        raise InfeasibleReduction(operator, f"the parameter count does not change: {what}")


def _meta_params(spec: ArchSpec) -> int:
    with torch.device("meta"):
        model = create_from_spec(spec)
    return sum(p.numel() for p in model.parameters())

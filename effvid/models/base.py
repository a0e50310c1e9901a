"""The model contract: what every effvid model offers the engine, static or dynamic.

Every model takes a clip batch ``(B, C, T, H, W)`` and meets :class:`VideoModel`:

* ``forward(x) -> logits (B, classes)``; ``forward_features(x)`` and ``forward_head(features)``
  split it (features are whatever the head takes: a map, or SlowFast's ``[slow, fast]``);
* ``forward_output(x) -> ModelOutput``: logits plus, for a dynamic model, the per-sample cost
  in GMACs computed from its decisions and the decisions themselves (for losses, reports and
  plots). A static model returns ``cost=None``;
* ``dense_gmacs()``: GMACs per view at the spec's input with every decision at its largest
  (a dynamic model's ceiling; a static model's only cost, so ``None`` means "count it
  statically");
* ``reset_classifier(num_classes)``: a fresh classifier, and ``spec.num_classes`` updated;
* ``set_epoch(epoch, num_epochs)``: called by the trainer before every epoch (Gumbel
  temperatures, schedules); a no-op for static models;
* ``spec``: the :class:`~effvid.spec.ArchSpec` that built it.

:class:`ModelBase` implements the shared half once (classifier lookup and reset, the static
``forward_output``, the no-op ``set_epoch``); a family names its classifier in
``classifier_name`` and writes ``forward_features``/``forward_head``. A dynamic model sets
``dynamic = True`` and overrides ``forward_output`` and ``dense_gmacs``. At inference it must
skip the work it reports as skipped; :mod:`effvid.cost.executed` is how tests hold it to that.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from torch import Tensor, nn

from effvid.spec import ArchSpec


@dataclass
class ModelOutput:
    """One forward's result: ``logits (B, K)``, per-sample ``cost (B,)`` in GMACs per view
    (``None`` for a static network) and named ``decisions`` (tensors with batch first)."""

    logits: Tensor
    cost: Tensor | None = None
    decisions: dict[str, Tensor] = field(default_factory=dict)


@runtime_checkable
class VideoModel(Protocol):
    """The interface every effvid model meets (see the module docstring)."""

    spec: ArchSpec
    dynamic: bool

    def forward(self, x: Tensor) -> Tensor: ...

    def forward_features(self, x: Tensor) -> Any: ...

    def forward_head(self, features: Any) -> Tensor: ...

    def forward_output(self, x: Tensor) -> ModelOutput: ...

    def dense_gmacs(self) -> float | None: ...

    def reset_classifier(self, num_classes: int) -> None: ...

    def set_epoch(self, epoch: int, num_epochs: int) -> None: ...


class ModelBase(nn.Module):
    """The shared half of :class:`VideoModel`; ``classifier_name`` is the dotted path of the
    classifier ``nn.Linear`` (``"fc"``, ``"classifier.1"``, ``"blocks.6.proj"``)."""

    spec: ArchSpec
    classifier_name: str = "fc"
    dynamic: bool = False

    def forward_features(self, x: Tensor) -> Any:
        raise NotImplementedError

    def forward_head(self, features: Any) -> Tensor:
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))

    def forward_output(self, x: Tensor) -> ModelOutput:
        """The logits of ``forward``; a static network reports no per-sample cost."""
        return ModelOutput(logits=self(x))

    def dense_gmacs(self) -> float | None:
        """``None``: a static network's cost is what the static counter counts."""
        return None

    def set_epoch(self, epoch: int, num_epochs: int) -> None:
        """Nothing to schedule in a static network."""

    def get_classifier(self) -> nn.Linear:
        """The final ``nn.Linear``."""
        return self.get_submodule(self.classifier_name)

    def reset_classifier(self, num_classes: int) -> None:
        """A freshly initialised classifier (N(0, 0.01) weights, zero bias) to ``num_classes``;
        ``spec.num_classes`` follows."""
        old = self.get_classifier()
        new = nn.Linear(old.in_features, num_classes, device=old.weight.device, dtype=old.weight.dtype)
        nn.init.normal_(new.weight, 0.0, 0.01)
        nn.init.zeros_(new.bias)
        parent, _, leaf = self.classifier_name.rpartition(".")
        setattr(self.get_submodule(parent) if parent else self, leaf, new)
        if getattr(self, "spec", None) is not None:
            self.spec = self.spec.replace(num_classes=num_classes)


def model_output(model: nn.Module, x: Tensor) -> ModelOutput:
    """``model.forward_output(x)`` for a contract model, a plain module's logits otherwise."""
    forward_output = getattr(model, "forward_output", None)
    if forward_output is not None:
        return forward_output(x)
    return ModelOutput(logits=model(x))


def is_dynamic(model: nn.Module) -> bool:
    """Whether ``model`` decides per input how much to compute."""
    return bool(getattr(model, "dynamic", False))


def replace_modules(model: nn.Module, predicate: Callable[[str, nn.Module], bool],
                    factory: Callable[[str, nn.Module], nn.Module]) -> int:
    """Replace, in place, every submodule ``m`` (named ``name``) with ``predicate(name, m)``
    true by ``factory(name, m)``; returns how many were replaced.

    The matches are found before anything is replaced, so a replacement is never searched
    (a wrapper holding the original is not wrapped again), and a match inside another match is
    left to the outer one's factory. ``model`` itself is never replaced.
    """
    targets: list[tuple[str, nn.Module]] = []
    for name, module in model.named_modules():
        inside = any(name.startswith(outer + ".") for outer, _ in targets)
        if name and not inside and predicate(name, module):
            targets.append((name, module))
    for name, module in targets:
        parent, _, leaf = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, leaf, factory(name, module))
    return len(targets)

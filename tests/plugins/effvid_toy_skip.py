"""A toy dynamic method, shipped as a plugin outside effvid: the model contract's test subject.

Method ``toy_skip`` wraps the family's network (the ``backbone``) with a cheap linear head on
the clip's mean colour. A gate runs the backbone only for the clips whose mean normalised
intensity is above ``settings["threshold"]``; the others get the cheap head's logits alone.
The skipped clips are left out of the backbone's batch (index_select, then index_add), so the
work they skip is never executed, and the cost each clip reports is the cheap head's MACs plus,
when it ran, the backbone's static count at the spec's input.

It also exercises the rest of the contract a dynamic method relies on: ``set_epoch`` calls
are recorded in :data:`SET_EPOCH_CALLS`, and ``loss_terms`` offers a ``"cost"`` term that reads
the per-sample cost the trainer passes to the loss terms (the mean cost over the dense cost).

effvid finds this module through its ``effvid.methods`` entry point: nothing in effvid imports
it by name.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from effvid.cost.static import count_cost, spec_input_shape
from effvid.models import ModelBase, ModelOutput, create_from_spec, register_method
from effvid.spec import ArchSpec

SET_EPOCH_CALLS: list[tuple[int, int]] = []
"""Every ``(epoch, num_epochs)`` the trainer passed to a toy model's ``set_epoch``, in order."""


class ToySkip(ModelBase):
    """Cheap head always, backbone only where the gate opens (module docstring)."""

    dynamic = True
    classifier_name = "cheap"

    def __init__(self, spec: ArchSpec) -> None:
        super().__init__()
        self.threshold = float(spec.method.settings.get("threshold", 0.0))
        self.backbone = create_from_spec(spec.replace(method=None))
        self.cheap = nn.Linear(3, spec.num_classes)
        self.backbone_gmacs = count_cost(self.backbone, spec_input_shape(spec)).gmacs
        self.cheap_gmacs = 3 * spec.num_classes / 1e9

    def gate(self, x: Tensor) -> Tensor:
        """``(B,)`` booleans: which clips run the backbone."""
        return x.mean(dim=(1, 2, 3, 4)) > self.threshold

    def forward_features(self, x: Tensor) -> Any:
        return x

    def forward_head(self, features: Tensor) -> Tensor:
        return self.forward_output(features).logits

    def forward_output(self, x: Tensor) -> ModelOutput:
        run = self.gate(x)
        logits = self.cheap(x.mean(dim=(2, 3, 4)))
        chosen = run.nonzero().flatten()
        if chosen.numel():
            logits = logits.index_add(0, chosen, self.backbone(x.index_select(0, chosen)))
        cost = self.cheap_gmacs + run.double() * self.backbone_gmacs
        return ModelOutput(logits=logits, cost=cost, decisions={"backbone": run})

    def dense_gmacs(self) -> float:
        return self.cheap_gmacs + self.backbone_gmacs

    def set_epoch(self, epoch: int, num_epochs: int) -> None:
        SET_EPOCH_CALLS.append((epoch, num_epochs))

    def loss_terms(self) -> dict[str, Any]:
        """``"cost"``: the batch's mean cost as a fraction of the dense cost."""
        return {"cost": lambda ctx: ctx.cost.float().mean() / self.dense_gmacs()}


@register_method("toy_skip")
def toy_skip(spec: ArchSpec) -> ToySkip:
    """The toy dynamic model of ``spec`` (its family's network as the backbone)."""
    return ToySkip(spec)

"""The VA-RED2 model: a family's network with its chosen convolutions made dynamic.

:class:`VARed2` builds the plain network of its spec, replaces the convolutions the settings'
``wrap`` patterns name by :class:`~effvid.methods.vared2.conv.DynamicConv3d` (through
:func:`effvid.models.base.replace_modules`) and holds the network's top-level modules as its
own. So its state-dict keys are the plain network's, plus ``<conv>.gate.*`` and
``<conv>.cheap.*``: a trained base checkpoint loads into it by name (``init_from`` in a training
config, :func:`effvid.engine.optim.load_matching`), every tensor of the base included. A (2+1)D
unit whose spatial convolution is dynamic becomes a
:class:`~effvid.methods.vared2.deferred.DeferredRepeat` (same modules and keys), which at
inference runs the frames a strided choice skipped through the temporal convolution without
copying them.

``forward_output`` returns the logits, the per-clip GMACs its decisions cost
(:mod:`effvid.methods.vared2.cost`; in training mode, what the clip would execute at inference)
and its decisions, each ``(B, L)`` over the wrapped layers in :attr:`VARed2.layer_names` order:
``channel_ratio`` (``r`` of the largest computed choice), ``temporal_ratio`` (``1 / R``),
``ratio`` (their product, with the efficiency loss's gradient path) and ``layer_gmacs``.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from effvid.cost.static import spec_input_shape
from effvid.methods.vared2.conv import DynamicConv3d
from effvid.methods.vared2.cost import ModelCost, probe_network
from effvid.methods.vared2.deferred import DeferredRepeat
from effvid.methods.vared2.losses import efficiency_term, layer_ratios
from effvid.methods.vared2.settings import VARed2Settings
from effvid.models import ModelBase, ModelOutput, create_from_spec, register_method, replace_modules
from effvid.spec import ArchSpec


class VARed2(ModelBase):
    """A dynamic network (module docstring); ``settings`` are its validated method settings."""

    dynamic = True

    def __init__(self, spec: ArchSpec, settings: VARed2Settings) -> None:
        super().__init__()
        self.spec = spec
        self.settings = settings
        network = create_from_spec(spec.replace(method=None))
        probe = probe_network(spec, settings.wrap, spec_input_shape(spec))
        options = {"temporal_choices": settings.temporal_choices, "channel_choices": settings.channel_choices,
                   "hidden": settings.hidden, "cheap_kernel": settings.cheap_kernel, "full_bias": settings.full_bias,
                   "reduced_bias": settings.reduced_bias, "revive": settings.revive}
        replace_modules(network, lambda name, _: name in probe.convs,
                        lambda name, conv: DynamicConv3d.from_conv(conv, in_frames=probe.convs[name].in_shape[1],
                                                                   **options))
        DeferredRepeat.adopt(network)
        self.classifier_name = network.classifier_name
        if hasattr(network, "stage_names"):
            self.stage_names = network.stage_names
        object.__setattr__(self, "network", network)
        self._adopt()
        self.layer_names = tuple(probe.convs)
        self._costs = {tuple(spec_input_shape(spec)[1:]): ModelCost.build(probe, self.dynamic_layers())}

    def _adopt(self) -> None:
        """Register the network's top-level modules as this model's (one state dict, its names)."""
        for name, child in self.network.named_children():
            setattr(self, name, child)

    def dynamic_layers(self) -> list[DynamicConv3d]:
        """The dynamic convolutions, in :attr:`layer_names` order."""
        return [self.get_submodule(name) for name in self.layer_names]  # type: ignore[misc]

    def train(self, mode: bool = True) -> VARed2:
        super().train(mode)
        self.network.training = mode
        return self

    def cost_tables(self, clip_shape: tuple[int, ...]) -> ModelCost:
        """The cost tables for one clip of shape ``(C, T, H, W)``, counted once per shape on the
        meta device. The spec's shape is counted when the model is built; price another shape
        with this method before counting executed ops, or its first forward counts the pricing."""
        if clip_shape not in self._costs:
            probe = probe_network(self.spec, self.settings.wrap, (1, *clip_shape))
            self._costs[clip_shape] = ModelCost.build(probe, self.dynamic_layers())
        return self._costs[clip_shape]

    def forward_features(self, x: Tensor) -> Any:
        return self.network.forward_features(x)

    def forward_head(self, features: Any) -> Tensor:
        return self.network.forward_head(features)

    def forward_output(self, x: Tensor) -> ModelOutput:
        """Logits, per-clip GMACs from the decisions, and the decisions (module docstring)."""
        logits = self.forward_head(self.forward_features(x))
        gates = [layer.last for layer in self.dynamic_layers()]
        if any(gate is None for gate in gates):
            raise RuntimeError("a dynamic convolution did not run in this forward")
        cost, layer_gmacs = self.cost_tables(tuple(x.shape[1:])).per_sample(gates)  # type: ignore[arg-type]
        channel, temporal, ratio = layer_ratios(gates)  # type: ignore[arg-type]
        decisions = {"channel_ratio": channel.detach(), "temporal_ratio": temporal.detach(), "ratio": ratio,
                     "layer_gmacs": layer_gmacs}
        return ModelOutput(logits=logits, cost=cost, decisions=decisions)

    def dense_gmacs(self) -> float:
        """GMACs per clip at the spec's input with every gate weight non-zero (the ceiling)."""
        return self.cost_tables(tuple(spec_input_shape(self.spec)[1:])).dense_gmacs

    def layer_weights(self) -> list[float]:
        """Each wrapped layer's share of the wrapped full cost at the spec's input (Eq. 3.6)."""
        return self.cost_tables(tuple(spec_input_shape(self.spec)[1:])).layer_weights()

    def reset_classifier(self, num_classes: int) -> None:
        """A fresh classifier for ``num_classes``; ``spec`` and the cost tables follow."""
        self.network.reset_classifier(num_classes)
        self._adopt()
        self.spec = self.spec.replace(num_classes=num_classes)
        self._costs.clear()
        self.cost_tables(tuple(spec_input_shape(self.spec)[1:]))

    def loss_terms(self) -> dict[str, Any]:
        """``"efficiency"``: Eq. 3.6 (:func:`~effvid.methods.vared2.losses.efficiency_loss`)."""
        return {"efficiency": efficiency_term(self.layer_weights)}


@register_method("vared2")
def vared2(spec: ArchSpec) -> nn.Module:
    """The VA-RED2 model of ``spec`` (its family's network, ``spec.method.settings`` validated)."""
    assert spec.method is not None
    return VARed2(spec, VARed2Settings.from_dict(spec.method.settings, family=spec.name))

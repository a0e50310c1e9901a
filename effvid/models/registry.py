"""Model registry: every family registers its named variants here with a default ArchSpec.

``create("r2plus1d_18", num_classes=101, crop_size=96)`` builds a model from the entry's
default spec with the given overrides; ``create_from_spec(spec)`` builds exactly ``spec``.
Every built model carries its spec as ``model.spec``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from torch import nn

from effvid.errors import ConfigError
from effvid.spec import ArchSpec

ModelKind = Literal["3d", "2d", "slowfast"]
Builder = Callable[[ArchSpec], nn.Module]


@dataclass(frozen=True)
class ModelEntry:
    """A registered model: its builder, default spec and the geometry limits of its input.

    ``spatial_stride`` is the network's total spatial downsampling (a crop smaller than this
    cannot be fed); ``min_frames`` is the fewest input frames it accepts; ``kind`` tells
    3D clip models, 2D frame models (T folded into the batch) and two-pathway SlowFast apart.
    """

    name: str
    builder: Builder
    default_spec: ArchSpec
    kind: ModelKind
    spatial_stride: int
    min_frames: int = 1


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(
    name: str,
    *,
    default_spec: ArchSpec,
    kind: ModelKind,
    spatial_stride: int,
    min_frames: int = 1,
) -> Callable[[Builder], Builder]:
    """Decorator registering ``builder(spec) -> nn.Module`` under ``name``."""

    def decorate(builder: Builder) -> Builder:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        if default_spec.name != name:
            raise ValueError(f"default spec of {name!r} is named {default_spec.name!r}")
        _REGISTRY[name] = ModelEntry(name, builder, default_spec, kind, spatial_stride, min_frames)
        return builder

    return decorate


def get_entry(name: str) -> ModelEntry:
    """The registry entry for ``name``; an unknown name is a :class:`ConfigError` listing the known ones."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ConfigError(f"unknown model {name!r}; known models: {', '.join(list_models())}") from None


def list_models() -> list[str]:
    """Registered model names, sorted."""
    return sorted(_REGISTRY)


def default_spec(name: str, **overrides: Any) -> ArchSpec:
    """The default spec of ``name`` with ``overrides`` applied."""
    return get_entry(name).default_spec.replace(**overrides)


def create_from_spec(spec: ArchSpec) -> nn.Module:
    """Build exactly ``spec``; the model's ``spec`` attribute is set to it."""
    model = get_entry(spec.name).builder(spec)
    model.spec = spec
    return model


def create(name: str, num_classes: int | None = None, **spec_overrides: Any) -> nn.Module:
    """Build model ``name`` from its default spec with ``num_classes`` and other overrides."""
    if num_classes is not None:
        spec_overrides["num_classes"] = num_classes
    return create_from_spec(default_spec(name, **spec_overrides))

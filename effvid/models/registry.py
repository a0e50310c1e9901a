"""Model registry: every family registers its named variants here with a default ArchSpec,
and every dynamic method registers the builder that wraps a family's network.

``create("r2plus1d_18", num_classes=101, crop_size=96)`` builds a model from the entry's
default spec with the given overrides; ``create_from_spec(spec)`` builds exactly ``spec``:
the family's network, or, when ``spec.method`` names a method, that method's model. Every
built model carries its spec as ``model.spec``.

Methods are found without the engine (or anyone) importing them: the first time a method
name is asked for, :func:`get_method` imports ``effvid.methods.<name>`` if that folder exists
(effvid's own methods register themselves on import), else loads the ``effvid.methods`` entry
point of that name (a plugin: ``[project.entry-points."effvid.methods"] name = "module"``).
So a checkpoint of any family or method rebuilds in ``effvid eval``, ``predict`` and ``flops``.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
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


METHOD_ENTRY_POINTS = "effvid.methods"
"""The entry-point group through which a package outside effvid adds a method."""

_METHODS: dict[str, Builder] = {}


def register_method(name: str) -> Callable[[Builder], Builder]:
    """Decorator registering ``builder(spec) -> nn.Module`` as method ``name``.

    The builder receives the whole spec (``spec.method.settings`` holds its settings) and
    usually builds the family's network with ``create_from_spec(spec.replace(method=None))``.
    """

    def decorate(builder: Builder) -> Builder:
        if name in _METHODS:
            raise ValueError(f"method {name!r} is registered twice")
        _METHODS[name] = builder
        return builder

    return decorate


def get_method(name: str) -> Builder:
    """The builder of method ``name``, discovered on first use (module docstring); an unknown
    method is a :class:`ConfigError` listing the known ones."""
    if name not in _METHODS:
        _discover_method(name)
    try:
        return _METHODS[name]
    except KeyError:
        known = ", ".join(list_methods()) or "none"
        raise ConfigError(f"unknown method {name!r}; known methods: {known}") from None


def list_methods() -> list[str]:
    """Methods registered so far plus the plugins that entry points announce, sorted."""
    announced = {ep.name for ep in importlib.metadata.entry_points(group=METHOD_ENTRY_POINTS)}
    return sorted(set(_METHODS) | announced)


def _discover_method(name: str) -> None:
    module = f"effvid.methods.{name}"
    if name.isidentifier() and importlib.util.find_spec(module) is not None:
        importlib.import_module(module)
        return
    for entry_point in importlib.metadata.entry_points(group=METHOD_ENTRY_POINTS):
        if entry_point.name == name:
            entry_point.load()
            return


def create_from_spec(spec: ArchSpec) -> nn.Module:
    """Build exactly ``spec`` (the family's network, or its method's model); ``model.spec`` is ``spec``."""
    entry = get_entry(spec.name)
    model = get_method(spec.method.name)(spec) if spec.method is not None else entry.builder(spec)
    model.spec = spec
    return model


def create(name: str, num_classes: int | None = None, **spec_overrides: Any) -> nn.Module:
    """Build model ``name`` from its default spec with ``num_classes`` and other overrides."""
    if num_classes is not None:
        spec_overrides["num_classes"] = num_classes
    return create_from_spec(default_spec(name, **spec_overrides))

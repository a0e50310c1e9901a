"""ArchSpec: the one source of truth for a model's architecture and its input geometry.

The data pipeline reads clip frames, sampling stride, crop, resize and normalisation from the
same spec that builds the model, so a reduced model can never be fed the wrong input. PAS
reduction operators are pure functions ``ArchSpec -> ArchSpec``.

Rounding rules (used by every family, documented once here):

* channels: :func:`round_channels` — ``c * width_mult`` rounded to the nearest multiple of
  ``divisor`` (1 for plain ResNets and SlowFast's slow pathway, whose fast pathway takes
  ``slow // beta_inv`` and at least one channel; 8 for X3D/MobileNet/EfficientNet),
  never below ``divisor``, and bumped up by one ``divisor`` when rounding lost more than 10%.
  At ``width_mult == 1`` the published width is returned unchanged.
* blocks per stage: :func:`round_depth` — ``ceil(blocks * depth_mult)``, at least one.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any, Literal

from effvid.errors import ConfigError

Sampling = Literal["dense", "segments"]

KINETICS_MEAN = (0.45, 0.45, 0.45)
KINETICS_STD = (0.225, 0.225, 0.225)


@dataclass(frozen=True)
class MethodSpec:
    """A dynamic method (``name``: its folder under ``effvid.methods``) and its ``settings``,
    a JSON-ready mapping the method validates into its own typed settings when it builds."""

    name: str
    settings: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(f"ArchSpec.method.name must be a method name, got {self.name!r}")
        if not isinstance(self.settings, dict):
            raise ConfigError(f"ArchSpec.method.settings must be a mapping, got {self.settings!r}")

    def __hash__(self) -> int:
        return hash(json.dumps(dataclasses.asdict(self), sort_keys=True))

    @classmethod
    def from_dict(cls, data: Any) -> MethodSpec:
        """``{"name": ..., "settings": {...}}`` as a MethodSpec; anything else is a :class:`ConfigError`."""
        if not isinstance(data, dict) or set(data) - {"name", "settings"} or "name" not in data:
            raise ConfigError(f"ArchSpec.method must be a mapping with 'name' and optional 'settings', got {data!r}")
        return cls(name=data["name"], settings=dict(data.get("settings") or {}))


LEGACY_FAMILY_KEYS = ("alpha", "beta_inv", "fusion_kernel")
"""Top-level keys of specs saved before the ``family`` slot (every family listed SlowFast's settings)."""


def _migrate_legacy(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` with :data:`LEGACY_FAMILY_KEYS` moved into ``family`` for SlowFast and dropped
    for every other family, where they never applied."""
    legacy = {k: data[k] for k in LEGACY_FAMILY_KEYS if k in data}
    if not legacy:
        return data
    rest = {k: v for k, v in data.items() if k not in legacy}
    if str(data.get("name", "")).startswith("slowfast"):
        rest["family"] = {**legacy, **(data.get("family") or {})}
    return rest


@dataclass(frozen=True)
class ArchSpec:
    """A model family plus every hyperparameter PAS can reduce, and the input it expects.

    ``num_frames`` is the number of frames the network sees (the fast pathway's frames for
    SlowFast, the number of segments for TSN/TSM); ``frame_stride`` is the sampling stride
    in source frames for dense clips (ignored when ``sampling == "segments"``).
    ``crop_size`` is the side of the square training crop and ``test_crop_size`` that of the
    test views (``None``: the training crop); models are evaluated and priced at the test crop
    (:attr:`test_crop`), as papers report them (SlowFast trains at 224 and tests at 256).
    ``train_resize`` is the short-side scale-jitter range for training and ``test_resize``
    the short side before the test crop; ``None`` derives them with the usual ratios (train
    ``[8/7, 10/7] * crop_size``, test ``8/7 * test_crop``).

    ``family`` holds the settings only one family has (SlowFast's ``alpha``, ``beta_inv``,
    ``fusion_kernel``), validated by that family's builder. ``method`` names the dynamic
    method that wraps the family's network and its settings (``None``: the plain network), so
    a dynamic model is described, saved and reduced like any other.
    """

    name: str
    num_classes: int = 400
    num_frames: int = 16
    frame_stride: int = 1
    crop_size: int = 112
    test_crop_size: int | None = None
    width_mult: float = 1.0
    depth_mult: float = 1.0
    sampling: Sampling = "dense"
    train_resize: tuple[int, int] | None = None
    test_resize: int | None = None
    mean: tuple[float, float, float] = KINETICS_MEAN
    std: tuple[float, float, float] = KINETICS_STD
    dropout: float = 0.0
    family: dict[str, Any] = field(default_factory=dict)
    method: MethodSpec | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.family, dict) or not all(isinstance(k, str) for k in self.family):
            raise ConfigError(f"ArchSpec.family must be a mapping of setting names to values, got {self.family!r}")
        if self.method is not None and not isinstance(self.method, MethodSpec):
            raise ConfigError(f"ArchSpec.method must be a MethodSpec (name and settings), got {self.method!r}")
        for key in ("num_classes", "num_frames", "frame_stride", "crop_size"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"ArchSpec.{key} must be a positive integer, got {value!r}")
        test_crop = self.test_crop_size
        if test_crop is not None and (not isinstance(test_crop, int) or isinstance(test_crop, bool) or test_crop < 1):
            raise ConfigError(f"ArchSpec.test_crop_size must be a positive integer or null, got {test_crop!r}")
        for key in ("width_mult", "depth_mult"):
            value = getattr(self, key)
            if not isinstance(value, (int, float)) or not value > 0:
                raise ConfigError(f"ArchSpec.{key} must be a positive number, got {value!r}")
        if self.sampling not in ("dense", "segments"):
            raise ConfigError(f"ArchSpec.sampling must be 'dense' or 'segments', got {self.sampling!r}")
        if self.train_resize is not None:
            lo, hi = self.train_resize
            if not 0 < lo <= hi:
                raise ConfigError(f"ArchSpec.train_resize must be (min, max) with 0 < min <= max, got {self.train_resize!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"ArchSpec.dropout must be in [0, 1), got {self.dropout!r}")

    @property
    def train_resize_range(self) -> tuple[int, int]:
        """Short-side range for training scale jitter, in pixels."""
        if self.train_resize is not None:
            return self.train_resize
        return (round(self.crop_size * 8 / 7), round(self.crop_size * 10 / 7))

    @property
    def test_crop(self) -> int:
        """Side of the square test views, in pixels: the input the model is evaluated and priced at."""
        return self.test_crop_size if self.test_crop_size is not None else self.crop_size

    @property
    def test_short_side(self) -> int:
        """Short side the test transform resizes to before cropping, in pixels."""
        return self.test_resize if self.test_resize is not None else round(self.test_crop * 8 / 7)

    @property
    def clip_span(self) -> int:
        """Source frames a dense clip covers (``num_frames * frame_stride``)."""
        return self.num_frames * self.frame_stride

    def replace(self, **changes: Any) -> ArchSpec:
        """A copy with ``changes`` applied; unknown field names are a :class:`ConfigError`."""
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise ConfigError(f"unknown ArchSpec field(s): {', '.join(unknown)}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict; tuples become lists, ``method`` a ``{name, settings}`` dict."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ArchSpec:
        """Inverse of :meth:`to_dict`; unknown keys are a :class:`ConfigError` naming them."""
        if not isinstance(data, dict):
            raise ConfigError(f"an ArchSpec must be a mapping, got {type(data).__name__}")
        data = _migrate_legacy(data)
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(f"unknown ArchSpec field(s): {', '.join(unknown)}")
        if "name" not in data:
            raise ConfigError("an ArchSpec needs a 'name' (the registered model family)")
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        if values.get("method") is not None:
            values["method"] = MethodSpec.from_dict(values["method"])
        if values.get("family") is None:
            values.pop("family", None)
        return cls(**values)

    def __hash__(self) -> int:
        return hash(json.dumps(self.to_dict(), sort_keys=True))


def round_channels(channels: int, width_mult: float = 1.0, divisor: int = 1) -> int:
    """Channels after the width multiplier, by the module's rounding rule (see module doc)."""
    if width_mult == 1.0:
        return channels
    scaled = channels * width_mult
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * scaled:
        rounded += divisor
    return rounded


def round_depth(blocks: float, depth_mult: float = 1.0) -> int:
    """Blocks in a stage after the depth multiplier: ``ceil(blocks * depth_mult)``, at least 1."""
    return max(1, math.ceil(blocks * depth_mult - 1e-9))


def spec_input_shape(spec: ArchSpec) -> tuple[int, int, int, int, int]:
    """The input one test view of ``spec`` feeds its model: ``(1, 3, num_frames, test_crop, test_crop)``.

    Cost, latency and exports are stated at the test crop, the input the model is evaluated on
    (papers report SlowFast's cost at its 256 test crop, not its 224 training crop).
    """
    return (1, 3, spec.num_frames, spec.test_crop, spec.test_crop)

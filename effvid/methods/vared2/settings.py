"""VA-RED2's settings: what ``spec.method.settings`` may hold, validated into one typed object.

Keys (all optional):

* ``wrap``: ``fnmatch`` patterns over module names choosing the convolutions made dynamic
  (default per family, :data:`DEFAULT_WRAP`: the spatial 2D convolutions of R(2+1)D's blocks,
  as the thesis does (appendix A.2), the pointwise convolutions of X3D's bottlenecks, every
  block convolution of R3D and the inflated ResNet-50, and every convolution of
  I3D-InceptionV2, its stem and all four branches of every Inception module: all of them are
  3D, and none is depthwise);
* ``temporal_choices`` (S_t) and ``channel_choices`` (S_c): the search space of each axis,
  2 (all, 1/2) or 3 (all, 1/2, 1/4); 1 switches the axis off (the temporal-only and
  channel-only ablations, thesis Tables 4.11-4.12);
* ``hidden`` (D_h): the gate's hidden width;
* ``cheap_kernel``: the spatial kernel of the channel path's depthwise rebuild (3 as in
  GhostNet, or 1);
* ``full_bias`` and ``reduced_bias``: the initial output bias of the gate for the "compute
  everything" choice of each axis and for the cheaper choices
  (:mod:`~effvid.methods.vared2.gate`);
* ``revive``: pass the gradient through the gate's clamp at 0 (straight-through; default
  ``false``, the plain clamp, whose choices below 0 get no gradient).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from effvid.errors import ConfigError

DEFAULT_WRAP: dict[str, tuple[str, ...]] = {
    "r2plus1d": ("layer*.conv*.0.0",),
    "r3d": ("layer*.conv*.0",),
    "i3d_inception": ("conv*.conv", "mixed*.conv"),
    "i3d": ("layer*.conv*",),
    "x3d": ("blocks.*.branch2.conv_a", "blocks.*.branch2.conv_c"),
}
"""Default ``wrap`` patterns, by the prefix of the family's registered name (the first prefix
that matches wins, so a longer prefix comes before a shorter one it extends)."""


@dataclass(frozen=True)
class VARed2Settings:
    """The validated settings of one VA-RED2 model (see the module docstring)."""

    wrap: tuple[str, ...]
    temporal_choices: int = 2
    channel_choices: int = 2
    hidden: int = 32
    cheap_kernel: int = 3
    full_bias: float = 1.0
    reduced_bias: float = 0.0
    revive: bool = False

    def __post_init__(self) -> None:
        if not self.wrap or not all(isinstance(p, str) and p for p in self.wrap):
            raise ConfigError(f"vared2 settings: wrap must be a non-empty list of module-name patterns, got {self.wrap!r}")
        for key in ("temporal_choices", "channel_choices"):
            if getattr(self, key) not in (1, 2, 3):
                raise ConfigError(f"vared2 settings: {key} must be 1 (off), 2 or 3, got {getattr(self, key)!r}")
        if self.temporal_choices == 1 and self.channel_choices == 1:
            raise ConfigError("vared2 settings: temporal_choices and channel_choices are both 1; nothing is dynamic")
        if not isinstance(self.hidden, int) or self.hidden < 1:
            raise ConfigError(f"vared2 settings: hidden must be a positive integer, got {self.hidden!r}")
        if not isinstance(self.revive, bool):
            raise ConfigError(f"vared2 settings: revive must be true or false, got {self.revive!r}")
        if self.cheap_kernel not in (1, 3):
            raise ConfigError(f"vared2 settings: cheap_kernel must be 1 or 3, got {self.cheap_kernel!r}")

    @classmethod
    def from_dict(cls, settings: dict[str, Any], *, family: str) -> VARed2Settings:
        """``settings`` (a spec's ``method.settings``) for the registered model ``family``;
        an unknown key, or no ``wrap`` for a family without a default, is a :class:`ConfigError`."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(settings) - known)
        if unknown:
            raise ConfigError(f"vared2 settings: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        values = dict(settings)
        if values.get("wrap") is None:
            default = next((p for prefix, p in DEFAULT_WRAP.items() if family.startswith(prefix)), None)
            if default is None:
                raise ConfigError(f"vared2 settings: no default 'wrap' patterns for {family!r}; give the convolutions "
                                  "to make dynamic as module-name patterns")
            values["wrap"] = default
        elif isinstance(values["wrap"], str):
            values["wrap"] = (values["wrap"],)
        else:
            values["wrap"] = tuple(values["wrap"])
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """The settings as a JSON-ready mapping (``wrap`` as a list)."""
        return {**dataclasses.asdict(self), "wrap": list(self.wrap)}

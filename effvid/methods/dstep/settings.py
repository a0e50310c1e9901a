"""D-STEP's settings: what ``spec.method.settings`` may hold, validated into typed dataclasses.

They travel with the spec (so a checkpoint rebuilds the same model); an unknown key or a wrong
type is a :class:`~effvid.errors.ConfigError` naming it. Defaults are the paper's and the
authors' code's (section 3, ``implementations.md`` section 4) unless a field says otherwise:

* ``tile_sizes``: the spatial mask's tile side in feature pixels of each stage's block output,
  8/4/2/1 (32x32 input pixels everywhere, a 7x7 grid at 224); ``[1, 1, 1, 1]`` is a per-pixel
  mask.
* ``spatial``: spatial masks on (``false``: every tile active, the AdaFuse-like baseline).
* ``reuse``: the policy may reuse a channel from the previous frame (the dynamic temporal
  shift); ``false`` leaves skip / compute (plain dynamic channel pruning). TSM's static shift
  comes from the base network's name (``tsm_r18``, ``tsm_r50``), TSN has none.
* ``hidden``: the policy MLP's hidden width (AdaFuse's scripts: 1024).
* ``tau``: the channel policy's Gumbel-softmax temperature (0.67, constant); ``mask_tau`` the
  spatial Gumbel-sigmoid's (2/3).
* ``mask_bias``: the initial bias of the mask convolution. DGNet's 2 (not the authors' 0), so
  a network initialised from a trained TSN/TSM starts with its tiles on and the bound loss
  closes them; ``compute_bias``: the initial logit bias of the *compute* action (AdaFuse's 0
  makes a third of all channels skipped from the first step; a positive value starts closer to
  the trained base network).
* ``test_decisions``: ``argmax`` (deterministic, the default) or ``sample`` (Gumbel noise at
  test time, as the authors' code does for the channel policy).
* ``dense_above``: per stage, inference runs a block's convolutions for one frame densely (then
  masks) when more than this fraction of its tiles is active, since gathering many tiles with
  their halos costs more time than it saves; the reported cost then counts the dense map, as it
  executes. ``1.0`` never falls back. The defaults are the break-even fractions measured on
  this project's 2-core CPU (one thread, a full-width ResNet-18 at 224, gather + conv + scatter
  against one dense conv, 3x3 convolution of each stage): about 0.75 at 56x56 with tiles of 8,
  0.4 at 28x28 with tiles of 4, and below 0.25 at 14x14 (tiles of 2) and 7x7 (tiles of 1),
  where tile gathering hardly pays. They were measured with the frame-by-frame executor that
  padded each map before gathering; the executor since gathers windows without a padded copy,
  so the break-even fractions are likely higher now and have not been re-measured. Re-measure
  on the target machine (``benchmarks/``).
* ``loss``: the targets and schedules of Eq. (3) (:class:`LossSettings`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from effvid.config import from_dict
from effvid.errors import ConfigError

#: Slot of each action in the one-hot decisions, whatever subset the policy may choose from.
SKIP, REUSE, COMPUTE = 0, 1, 2
ACTION_NAMES = ("skip", "reuse", "compute")


@dataclass(frozen=True)
class LossSettings:
    """Eq. (3)'s sparsity and bound terms (see :mod:`effvid.methods.dstep.losses`).

    ``target`` is D = F_D / F_S. ``lambda(e) = 0`` for ``e < warmup_epochs`` (K), then
    ``alpha * exp(beta * e)``. The bound loss's relaxation ``p(e) = exp(-bound_rate * e)``
    bounds each block's spatial density within ``[p t, 1 - p + p t]``, with ``t = sqrt(D)``
    (``bound_target: sqrt``, DGNet's and the authors' choice, since spatial and channel
    densities multiply) or ``t = D`` (``linear``).
    """

    target: float = 0.6
    alpha: float = 1.0
    beta: float = 0.05
    warmup_epochs: float = 10.0
    bound_rate: float = 0.05
    bound_target: Literal["sqrt", "linear"] = "sqrt"

    def __post_init__(self) -> None:
        where = "model.method.settings.loss"
        if not 0.0 < self.target <= 1.0:
            raise ConfigError(f"{where}.target must be in (0, 1], got {self.target}")
        if self.alpha < 0 or self.warmup_epochs < 0 or self.bound_rate < 0:
            raise ConfigError(f"{where}: alpha, warmup_epochs and bound_rate must be >= 0")


@dataclass(frozen=True)
class DStepSettings:
    """Everything D-STEP adds to its spec (module docstring)."""

    tile_sizes: list[int] = field(default_factory=lambda: [8, 4, 2, 1])
    spatial: bool = True
    reuse: bool = True
    hidden: int = 1024
    tau: float = 0.67
    mask_tau: float = 2.0 / 3.0
    mask_bias: float = 2.0
    compute_bias: float = 0.0
    test_decisions: Literal["argmax", "sample"] = "argmax"
    dense_above: list[float] = field(default_factory=lambda: [0.75, 0.4, 0.15, 0.1])
    loss: LossSettings = field(default_factory=LossSettings)

    def __post_init__(self) -> None:
        where = "model.method.settings"
        if len(self.tile_sizes) != 4 or any(t < 1 for t in self.tile_sizes):
            raise ConfigError(f"{where}.tile_sizes: four positive tile sides (one per stage) expected, "
                              f"got {self.tile_sizes}")
        if self.hidden < 1:
            raise ConfigError(f"{where}.hidden must be a positive integer, got {self.hidden}")
        if not (self.tau > 0 and self.mask_tau > 0):
            raise ConfigError(f"{where}: tau and mask_tau must be positive")
        if len(self.dense_above) != 4 or not all(0.0 <= d <= 1.0 for d in self.dense_above):
            raise ConfigError(f"{where}.dense_above: four fractions in [0, 1] (one per stage) expected, "
                              f"got {self.dense_above}")

    @property
    def actions(self) -> tuple[int, ...]:
        """The slots the policy chooses from: skip, reuse, compute (or skip, compute)."""
        return (SKIP, REUSE, COMPUTE) if self.reuse else (SKIP, COMPUTE)


def parse_settings(settings: dict[str, Any]) -> DStepSettings:
    """``spec.method.settings`` validated (module docstring)."""
    return from_dict(DStepSettings, settings, source="model.method.settings")

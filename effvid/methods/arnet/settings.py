"""AR-Net's settings: the branches, the policy, the action space and how decisions are made.

They live in ``spec.method.settings`` (so a checkpoint rebuilds the same model) and are validated
here into typed dataclasses; an unknown key or a wrong type is a :class:`~effvid.errors.ConfigError`
naming it. The defaults are the paper's (section 4.1): ResNet-50 at 224, ResNet-34 at 168,
ResNet-18 at 112, the policy's MobileNetV2 at 84 as the lowest branch, skips of 1, 2 and 4 frames,
an LSTM of 512 units, temperature 5 annealed by ``exp(-0.045)`` per epoch, argmax at test time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from effvid.config import from_dict
from effvid.errors import ConfigError

Mode = Literal["learned", "random", "multiscale", "lstm"]


@dataclass(frozen=True)
class BranchSettings:
    """One resolution's backbone: a registered 2D frame model at ``resolution`` pixels."""

    name: str
    resolution: int
    width_mult: float = 1.0
    depth_mult: float = 1.0


@dataclass(frozen=True)
class PolicySettings:
    """The policy: a 2D feature extractor at the lowest ``resolution``, an LSTM cell of ``hidden``
    units and a linear layer to the action logits. ``as_branch``: the extractor's own classifier
    is the lowest resolution's branch (the paper's Psi_{L-1} = Phi)."""

    name: str = "mobilenet_v2"
    resolution: int = 84
    width_mult: float = 1.0
    depth_mult: float = 1.0
    hidden: int = 512
    as_branch: bool = True


def _paper_branches() -> list[BranchSettings]:
    return [BranchSettings("resnet50", 224), BranchSettings("resnet34", 168), BranchSettings("resnet18", 112)]


@dataclass(frozen=True)
class ARNetSettings:
    """Everything AR-Net adds to its spec (module docstring).

    ``mode``: ``learned`` (the policy decides), ``random`` (actions drawn at every decision with
    ``random_probs``, uniform if unset: the paper's Random Policy baseline), ``multiscale``
    (every branch on every frame, predictions averaged: the Multi-Scale baseline) or ``lstm``
    (the first branch on every frame, its pooled features through an LSTM of ``policy.hidden``
    units and a classifier at every step, the steps' logits averaged: the LSTM baseline).
    ``test_decisions``: ``argmax`` (deterministic, the default) or ``sample`` (Gumbel-max draws
    at the current temperature, the authors' evaluation protocol). ``skip_state``: ``hold``
    keeps the LSTM's hidden and cell state through a skip (the skipped frames are not seen by
    the policy; the default) or ``integrate`` (the cell state keeps taking in the skipped frames'
    features while the hidden state is held, as the authors' code does). ``interpolation``
    makes the lower resolutions from the full-resolution frame. ``flops_normalized``: the
    efficiency loss divides by the costliest action (so ``alpha`` does not depend on the
    backbones' scale) instead of using raw GMACs as the paper does.
    """

    branches: list[BranchSettings] = field(default_factory=_paper_branches)
    policy: PolicySettings = field(default_factory=PolicySettings)
    skips: list[int] = field(default_factory=lambda: [1, 2, 4])
    mode: Mode = "learned"
    random_probs: list[float] | None = None
    interpolation: Literal["nearest", "bilinear"] = "nearest"
    initial_tau: float = 5.0
    tau_decay: float = -0.045
    test_decisions: Literal["argmax", "sample"] = "argmax"
    skip_state: Literal["hold", "integrate"] = "hold"
    flops_normalized: bool = True

    def __post_init__(self) -> None:
        where = "model.method.settings"
        if not self.branches and not self.policy.as_branch:
            raise ConfigError(f"{where}: AR-Net needs at least one branch (branches, or policy.as_branch)")
        resolutions = [b.resolution for b in self.branches] + ([self.policy.resolution] if self.policy.as_branch else [])
        if any(r < 1 for r in resolutions) or resolutions != sorted(resolutions, reverse=True):
            raise ConfigError(f"{where}: branch resolutions must be positive and descending, got {resolutions}")
        if any(k < 1 for k in self.skips) or len(set(self.skips)) != len(self.skips):
            raise ConfigError(f"{where}.skips: distinct frame counts >= 1 expected, got {self.skips}")
        if not self.initial_tau > 0:
            raise ConfigError(f"{where}.initial_tau must be positive, got {self.initial_tau}")
        if self.random_probs is not None:
            if len(self.random_probs) != self.num_actions or any(p < 0 for p in self.random_probs) \
                    or not sum(self.random_probs) > 0:
                raise ConfigError(f"{where}.random_probs: {self.num_actions} non-negative weights expected "
                                  f"(one per action), got {self.random_probs}")

    @property
    def num_resolutions(self) -> int:
        """L: the branches, plus the policy's own when it serves as one."""
        return len(self.branches) + int(self.policy.as_branch)

    @property
    def num_actions(self) -> int:
        """L + M."""
        return self.num_resolutions + len(self.skips)

    @property
    def action_names(self) -> list[str]:
        """One label per action, e.g. ``resnet50@224``, ``mobilenet_v2@84``, ``skip1``."""
        names = [f"{b.name}@{b.resolution}" for b in self.branches]
        if self.policy.as_branch:
            names.append(f"{self.policy.name}@{self.policy.resolution}")
        return names + [f"skip{k}" for k in self.skips]


def parse_settings(settings: dict[str, Any]) -> ARNetSettings:
    """``spec.method.settings`` validated (module docstring)."""
    return from_dict(ARNetSettings, settings, source="model.method.settings")

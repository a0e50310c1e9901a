"""The AR-Net model: a policy that picks, frame by frame, a resolution (and its backbone) or a skip.

Input is the usual clip ``(B, C, T, H, W)`` at the spec's crop (the highest resolution); the
lower resolutions are made inside the model from each full-resolution frame (nearest, as the
authors do, or bilinear), not by the data layer. The video's logits are the mean of the
processed frames' logits, each from the backbone its frame was routed to (a video whose every
frame is skipped gets zero logits, a uniform prediction, as in the authors' code).

Training (``model.train()``) uses the dense formulation: every backbone runs on every frame and
the straight-through one-hot decisions weight the logits, so the gradient reaches the policy;
each branch's own video logits (its frames' mean) go to the ``branch_ce`` warm-up term as
``decisions["branch_logits"] (B, L, K)``.
Inference (``model.eval()``) routes: the policy's extractor runs on all frames at the lowest
resolution in one batch, the LSTM steps through the frames, then the frames are grouped by
their chosen backbone and each group runs as one batch at its resolution; skipped frames are
neither resized nor run. The per-video cost in ``ModelOutput`` comes from the decisions and the
:mod:`~effvid.methods.arnet.cost` table, and equals what the routed forward executes.

Baselines as settings (``mode``): ``random`` draws actions (the policy is not run; the lowest
branch then pays its extractor), ``multiscale`` runs every branch on every frame, ``lstm`` runs
the first branch on every frame and an LSTM over its features (``temporal``, ``temporal_head``).
The Uniform baseline is the plain frame model of the first branch, trained and run on its own.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from effvid.errors import ConfigError
from effvid.methods.arnet.actions import SkipCounter
from effvid.methods.arnet.cost import CostTable, decision_cost, frame_gmacs, linear_gmacs, lstm_gmacs
from effvid.methods.arnet.losses import branch_ce_term, flops_term, uniform_term
from effvid.methods.arnet.policy import Decisions, Policy, lstm_input_gates, lstm_step, random_decisions
from effvid.methods.arnet.settings import ARNetSettings, parse_settings
from effvid.methods.common.grouping import group_rows
from effvid.methods.common.gumbel import exp_decay_temperature
from effvid.models import ModelBase, ModelOutput, create_from_spec, default_spec, get_entry
from effvid.models.layers import FrameModel
from effvid.spec import ArchSpec


def frame_model(spec: ArchSpec, name: str, resolution: int, *, width_mult: float, depth_mult: float) -> FrameModel:
    """The registered 2D frame model ``name`` for ``spec``'s classes at ``resolution``."""
    if get_entry(name).kind != "2d":
        raise ConfigError(f"model.method.settings: AR-Net branches are 2D frame models; {name!r} is "
                          f"a {get_entry(name).kind} model")
    branch = default_spec(name, num_classes=spec.num_classes, crop_size=resolution, num_frames=spec.num_frames,
                          width_mult=width_mult, depth_mult=depth_mult, dropout=spec.dropout)
    return create_from_spec(branch)


class ARNet(ModelBase):
    """Policy plus one backbone per resolution (module docstring)."""

    dynamic = True

    def __init__(self, spec: ArchSpec) -> None:
        super().__init__()
        settings = parse_settings(spec.method.settings)
        top = max([b.resolution for b in settings.branches] + [settings.policy.resolution])
        if top > spec.crop_size:
            raise ConfigError(f"model.method.settings: a branch resolution of {top} exceeds the input crop "
                              f"{spec.crop_size} (model.crop_size)")
        self.settings: ARNetSettings = settings
        self.spec = spec
        self.branches = nn.ModuleList([frame_model(spec, b.name, b.resolution, width_mult=b.width_mult,
                                                   depth_mult=b.depth_mult) for b in settings.branches])
        p = settings.policy
        extractor = frame_model(spec, p.name, p.resolution, width_mult=p.width_mult, depth_mult=p.depth_mult)
        self.policy = Policy(extractor, hidden=p.hidden, num_actions=settings.num_actions)
        self.resolutions = [b.resolution for b in settings.branches]
        first = f"branches.0.{self.branches[0].classifier_name}" if len(self.branches) else None
        self.classifier_name = first or f"policy.extractor.{extractor.classifier_name}"
        if settings.mode == "lstm":
            if not len(self.branches):
                raise ConfigError("model.method.settings: the LSTM baseline needs a branch (branches)")
            self.temporal = nn.LSTMCell(self.branches[0].num_features, p.hidden)
            self.temporal_head = nn.Linear(p.hidden, spec.num_classes)
        self.tau = settings.initial_tau
        self._count_costs()

    # -- geometry and costs ------------------------------------------------------------------

    @property
    def num_resolutions(self) -> int:
        return self.settings.num_resolutions

    @property
    def policy_runs(self) -> bool:
        return self.settings.mode == "learned"

    def _count_costs(self) -> None:
        p = self.settings.policy
        extractor = self.policy.extractor
        lite = linear_gmacs(extractor.get_classifier())
        lstm_input, lstm_step = lstm_gmacs(self.policy.lstm)
        self.costs = CostTable(
            branches=tuple(frame_gmacs(b, r) for b, r in zip(self.branches, self.resolutions)),
            extractor=frame_gmacs(extractor, p.resolution) - lite, lite_head=lite, lstm_input=lstm_input,
            lstm_step=lstm_step, action_layer=linear_gmacs(self.policy.actions))
        costs = self.costs.action_costs(num_skips=len(self.settings.skips), as_branch=p.as_branch,
                                        policy_runs=self.policy_runs)
        self.register_buffer("action_costs", torch.tensor(costs, dtype=torch.float64), persistent=False)

    def dense_gmacs(self) -> float:
        """GMACs per video with every decision at its largest: every frame through the costliest
        action and the policy stepping on every frame (``multiscale``: every branch on every frame)."""
        t = self.spec.num_frames
        c = self.costs
        if self.settings.mode == "multiscale":
            return t * (sum(c.branches) + (c.extractor + c.lite_head if self.settings.policy.as_branch else 0.0))
        if self.settings.mode == "lstm":
            trunk = c.branches[0] - linear_gmacs(self.branches[0].get_classifier())
            return t * (trunk + sum(lstm_gmacs(self.temporal)) + linear_gmacs(self.temporal_head))
        frames = t * float(self.action_costs.max())
        return frames + (t * (c.extractor + c.lstm_input + c.lstm_step + c.action_layer) if self.policy_runs else 0.0)

    def reset_classifier(self, num_classes: int) -> None:
        """Fresh classifiers on every branch and on the policy's extractor (and the LSTM baseline's
        head); costs recounted."""
        for branch in self.branches:
            branch.reset_classifier(num_classes)
        self.policy.extractor.reset_classifier(num_classes)
        if self.settings.mode == "lstm":
            self.temporal_head = nn.Linear(self.temporal_head.in_features, num_classes)
        self.spec = self.spec.replace(num_classes=num_classes)
        self._count_costs()

    def set_epoch(self, epoch: int, num_epochs: int) -> None:
        """The Gumbel temperature of ``epoch``: ``initial_tau * exp(tau_decay * epoch)``."""
        self.tau = exp_decay_temperature(epoch, initial=self.settings.initial_tau, rate=self.settings.tau_decay)

    def loss_terms(self) -> dict[str, Any]:
        """``flops`` (Eq. 10) and ``uniform`` (Eq. 11), weighted alpha and beta in a config's
        ``losses``, and ``branch_ce`` (every branch trained alone on every frame: warm-up)."""
        return {"flops": flops_term(self), "uniform": uniform_term(self), "branch_ce": branch_ce_term()}

    # -- forward -----------------------------------------------------------------------------

    def forward_features(self, x: Tensor) -> Tensor:
        return x

    def forward_head(self, features: Tensor) -> Tensor:
        return self.forward_output(features).logits

    def forward_output(self, x: Tensor) -> ModelOutput:
        b, c, t, h, w = x.shape
        frames = x.transpose(1, 2).reshape(b * t, c, h, w)
        if self.settings.mode == "multiscale":
            return self._multiscale(frames, b, t)
        if self.settings.mode == "lstm":
            return self._lstm_baseline(frames, b, t)
        features = None
        if self.policy_runs:
            features = self.policy.features(self.resize(frames, self.settings.policy.resolution))
        decisions = self.decide(features, b, t)
        named = {"actions": decisions.actions, "decided": decisions.decided, "onehot": decisions.onehot}
        if self.training:
            per_frame = self.frame_logits(frames, features).view(b, t, self.num_resolutions, -1)
            logits = self.dense_logits(per_frame, decisions.onehot)
            named["branch_logits"] = per_frame.mean(dim=1)
        else:
            logits = self.routed_logits(frames, features, decisions.actions)
        cost = decision_cost(decisions, self.action_costs, table=self.costs, policy_runs=self.policy_runs)
        return ModelOutput(logits=logits, cost=cost.detach(), decisions=named)

    def resize(self, frames: Tensor, resolution: int) -> Tensor:
        """``frames (N, C, H, W)`` at ``resolution`` pixels (unchanged when already there)."""
        if frames.shape[-1] == resolution and frames.shape[-2] == resolution:
            return frames
        mode = self.settings.interpolation
        kwargs = {"align_corners": False} if mode == "bilinear" else {}
        return F.interpolate(frames, size=(resolution, resolution), mode=mode, **kwargs)

    def decide(self, features: Tensor | None, batch: int, num_frames: int) -> Decisions:
        """The decisions for a batch: the policy's (``learned``) or random draws (``random``)."""
        s = self.settings
        device = self.action_costs.device
        counter = SkipCounter(batch, s.skips, self.num_resolutions, device)
        if s.mode == "random":
            weights = s.random_probs or [1.0] * s.num_actions
            probs = torch.tensor(weights, dtype=torch.float32, device=device)
            return random_decisions(batch, num_frames, probs / probs.sum(), counter=counter)
        sample = self.training or s.test_decisions == "sample"
        return self.policy.decide(features.view(batch, num_frames, -1), tau=self.tau, sample=sample, counter=counter,
                                  integrate_skipped=s.skip_state == "integrate")

    def _branch_logits(self, index: int, frames: Tensor, features: Tensor | None) -> Tensor:
        """Per-frame logits of resolution ``index`` for full-resolution ``frames`` (``features``:
        their pooled extractor features, which the lowest branch reuses when given)."""
        if index < len(self.branches):
            branch = self.branches[index]
            pooled = branch.forward_frames(self.resize(frames, self.resolutions[index])).mean(dim=(2, 3))
            return branch.classify(pooled)
        if features is None:
            features = self.policy.features(self.resize(frames, self.settings.policy.resolution))
        return self.policy.extractor.classify(features)

    def frame_logits(self, frames: Tensor, features: Tensor | None) -> Tensor:
        """Every resolution's logits on every frame, ``(B*T, L, K)`` (the dense formulation's input)."""
        return torch.stack([self._branch_logits(i, frames, features) for i in range(self.num_resolutions)], dim=1)

    def dense_logits(self, per_frame: Tensor, onehot: Tensor) -> Tensor:
        """The training formulation: every resolution's logits on every frame (``per_frame (B, T, L, K)``)
        weighted by the decisions ``onehot (B, T, A)`` and averaged over the processed frames."""
        weights = onehot[..., : self.num_resolutions]
        total = (weights.unsqueeze(-1) * per_frame).sum(dim=(1, 2))
        return total / weights.sum(dim=(1, 2)).clamp(min=1.0).unsqueeze(-1)

    def routed_logits(self, frames: Tensor, features: Tensor | None, actions: Tensor) -> Tensor:
        """Inference: each frame through the backbone ``actions (B, T)`` chose, one batch per
        backbone; skipped frames are not touched. Averaged over the processed frames."""
        b, t = actions.shape
        flat = actions.reshape(-1)
        logits = frames.new_zeros(b * t, self.spec.num_classes)
        for index, rows in group_rows(flat):
            if index >= self.num_resolutions:
                continue
            chosen = features.index_select(0, rows) if features is not None and index == len(self.branches) else None
            logits.index_copy_(0, rows, self._branch_logits(index, frames.index_select(0, rows), chosen))
        processed = (actions < self.num_resolutions).sum(dim=1).clamp(min=1).to(logits.dtype)
        return logits.view(b, t, -1).sum(dim=1) / processed.unsqueeze(-1)

    def _multiscale(self, frames: Tensor, batch: int, num_frames: int) -> ModelOutput:
        per_frame = self.frame_logits(frames, None).view(batch, num_frames, self.num_resolutions, -1)
        cost = torch.full((batch,), self.dense_gmacs(), dtype=torch.float64)
        named = {"branch_logits": per_frame.mean(dim=1)} if self.training else {}
        return ModelOutput(logits=per_frame.mean(dim=(1, 2)), cost=cost, decisions=named)

    def _lstm_baseline(self, frames: Tensor, batch: int, num_frames: int) -> ModelOutput:
        branch = self.branches[0]
        pooled = branch.forward_frames(self.resize(frames, self.resolutions[0])).mean(dim=(2, 3))
        inputs = lstm_input_gates(self.temporal, pooled.view(batch, num_frames, -1))
        h = c = pooled.new_zeros(batch, self.temporal.hidden_size)
        steps = []
        for i in range(num_frames):
            h, c = lstm_step(self.temporal, inputs[:, i], h, c)
            steps.append(self.temporal_head(h))
        cost = torch.full((batch,), self.dense_gmacs(), dtype=torch.float64)
        return ModelOutput(logits=torch.stack(steps, dim=1).mean(dim=1), cost=cost)

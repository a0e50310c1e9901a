"""AR-Net's cost table (the paper's offline lookup, Eq. 10) and the per-video cost of decisions.

Every entry is counted by effvid's own static counter (:func:`effvid.cost.static.count_cost`) on
one frame at the module's resolution, in GMACs, so the table agrees with ``effvid flops`` of each
backbone and with the executed-op counter. The policy is charged for what runs at inference:
its extractor and the LSTM's input projection on every frame of the video (one batch, before the
decisions), the LSTM's hidden projection per step taken and one action layer per decision; the lowest branch, served by the extractor's own
classifier, then costs only that classifier. Skips cost nothing. Resizing is not a MAC.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from effvid.cost.static import count_cost
from effvid.methods.arnet.policy import Decisions


def frame_gmacs(model: nn.Module, resolution: int) -> float:
    """GMACs of a 2D frame model on one frame of ``resolution`` pixels."""
    return count_cost(model, (1, 3, 1, resolution, resolution)).gmacs


@dataclass(frozen=True)
class CostTable:
    """GMACs per frame of each branch at its resolution (``branches``), of the policy's extractor
    trunk (``extractor``), its classifier (``lite_head``) and the LSTM's input projection
    (``lstm_input``); per step of the LSTM's hidden projection (``lstm_step``) and the action layer."""

    branches: tuple[float, ...]
    extractor: float
    lite_head: float
    lstm_input: float
    lstm_step: float
    action_layer: float

    def action_costs(self, *, num_skips: int, as_branch: bool, policy_runs: bool) -> list[float]:
        """GMACs per frame of each action. With ``policy_runs`` the extractor's pass is paid by
        the policy on every frame, so the lowest branch adds only its classifier."""
        lowest = [self.lite_head + (0.0 if policy_runs else self.extractor)] if as_branch else []
        return [*self.branches, *lowest, *[0.0] * num_skips]


def lstm_gmacs(cell: nn.LSTMCell) -> tuple[float, float]:
    """``cell``'s four gates: the input projection of one frame and the hidden projection of one step."""
    return 4 * cell.hidden_size * cell.input_size / 1e9, 4 * cell.hidden_size * cell.hidden_size / 1e9


def linear_gmacs(layer: nn.Linear) -> float:
    return layer.in_features * layer.out_features / 1e9


def decision_cost(decisions: Decisions, action_costs: Tensor, *, table: CostTable, policy_runs: bool) -> Tensor:
    """``(B,)`` float64 GMACs per video that ``decisions`` cost at inference (module docstring)."""
    actions = decisions.actions
    frames = action_costs.to(torch.float64)[actions].sum(dim=1)
    if not policy_runs:
        return frames
    t = actions.shape[1]
    policy = (t * (table.extractor + table.lstm_input) + decisions.lstm_steps.to(torch.float64) * table.lstm_step
              + decisions.decided.sum(dim=1).to(torch.float64) * table.action_layer)
    return frames + policy

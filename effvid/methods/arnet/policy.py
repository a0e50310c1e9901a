"""AR-Net's policy network (Eq. 1-3): a light 2D extractor, an LSTM cell, a linear layer to actions.

Each frame is resized to the lowest resolution and pooled to a feature vector by the extractor
(MobileNetV2 by default; its classifier serves as the lowest resolution's branch, Psi_{L-1} =
Phi). An LSTM cell integrates the features of the frames the policy decides on, and a linear
layer on its hidden state gives the action logits, initialised N(0, 0.001) with zero bias as the
authors do, so an untrained policy draws near-uniform actions.

:meth:`Policy.decide` walks the frames in order. Training draws straight-through Gumbel-softmax
one-hots at temperature ``tau`` (forward one-hot, gradient of the relaxed sample); inference
takes the argmax (or a Gumbel-max draw with ``sample=True``); without gradients an argmax
decision builds no relaxed sample (the one-hots are made from the actions at the end). While a skip runs, the LSTM is not
stepped and its state is held (``skip_state="hold"``): the paper says the skipped frames are
skipped by the policy too, so the policy neither pays for nor remembers them. ``"integrate"``
is the authors' code: the cell state keeps integrating every frame, the hidden state is held.
The LSTM's input projection runs for all frames at once before the loop (one matrix product
instead of one per step; the parameters are ``nn.LSTMCell``'s, so its checkpoints load); each
step then adds the hidden projection. Only the videos deciding at a frame run the step and the
action layer (rows gathered), so at inference a skipped frame costs the policy nothing but its
extractor pass and input projection, which run on all frames of the video in one batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from effvid.methods.arnet.actions import SkipCounter
from effvid.methods.common.gumbel import gumbel_softmax_st
from effvid.models.layers import FrameModel


@dataclass
class Decisions:
    """A batch's decisions over ``T`` frames: ``onehot (B, T, A)`` (straight-through in training),
    ``actions (B, T)`` the action in force at each frame, ``decided (B, T)`` where a fresh decision
    was made, ``lstm_steps (B,)`` how many LSTM steps (hidden projections) each video ran."""

    onehot: Tensor
    actions: Tensor
    decided: Tensor
    lstm_steps: Tensor


def lstm_input_gates(cell: nn.LSTMCell, x: Tensor) -> Tensor:
    """``cell``'s input projection of ``x (..., F)`` for every step at once, both biases folded in."""
    return F.linear(x, cell.weight_ih, cell.bias_ih + cell.bias_hh)


def lstm_step(cell: nn.LSTMCell, input_gates: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
    """One step of ``cell`` from precomputed input gates: ``nn.LSTMCell``'s arithmetic (gates i, f, g, o)."""
    gates = input_gates + F.linear(h, cell.weight_hh)
    i, f, g, o = gates.chunk(4, dim=1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


class Policy(nn.Module):
    """Extractor, LSTM cell and action layer (module docstring)."""

    def __init__(self, extractor: FrameModel, *, hidden: int, num_actions: int) -> None:
        super().__init__()
        self.extractor = extractor
        self.lstm = nn.LSTMCell(extractor.num_features, hidden)
        self.actions = nn.Linear(hidden, num_actions)
        nn.init.normal_(self.actions.weight, 0.0, 0.001)
        nn.init.zeros_(self.actions.bias)

    @property
    def hidden(self) -> int:
        return self.lstm.hidden_size

    def features(self, frames: Tensor) -> Tensor:
        """Pooled extractor features ``(N, F)`` of low-resolution frames ``(N, C, h, w)``."""
        return self.extractor.forward_frames(frames).mean(dim=(2, 3))

    def input_gates(self, features: Tensor) -> Tensor:
        """The LSTM's input projection of every frame at once, ``(B, T, 4H)``."""
        return lstm_input_gates(self.lstm, features)

    def step(self, input_gates: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
        """One LSTM step from precomputed input gates."""
        return lstm_step(self.lstm, input_gates, h, c)

    def decide(self, features: Tensor, *, tau: float, sample: bool, counter: SkipCounter,
               integrate_skipped: bool) -> Decisions:
        """Decisions for the frames whose pooled features are ``features (B, T, F)`` (module docstring)."""
        b, t, _ = features.shape
        inputs = self.input_gates(features)
        h = features.new_zeros(b, self.hidden)
        c = features.new_zeros(b, self.hidden)
        onehot = features.new_zeros(b, self.actions.out_features)
        action = torch.zeros(b, dtype=torch.long, device=features.device)
        argmax_only = not sample and not torch.is_grad_enabled()
        onehots, actions, decided = [], [], []
        steps = torch.zeros(b, dtype=torch.long, device=features.device)
        for i in range(t):
            deciding = counter.deciding()
            rows = deciding.nonzero().flatten()
            every = rows.numel() == b  # all videos decide (always so at batch 1): no gathers
            if integrate_skipped:
                h_all, c = self.step(inputs[:, i], h, c)
                h = h_all if every else h.index_copy(0, rows, h_all.index_select(0, rows))
                steps = steps + 1
            elif every:
                h, c = self.step(inputs[:, i], h, c)
                steps = steps + 1
            elif rows.numel():
                h_rows, c_rows = self.step(inputs[rows, i], h.index_select(0, rows), c.index_select(0, rows))
                h, c = h.index_copy(0, rows, h_rows), c.index_copy(0, rows, c_rows)
                steps = steps + deciding.long()
            if argmax_only:  # inference decisions: no relaxed sample to build
                if every:
                    action = self.actions(h).argmax(dim=-1)
                elif rows.numel():
                    action = action.index_copy(0, rows, self.actions(h.index_select(0, rows)).argmax(dim=-1))
            else:
                if every:
                    onehot = gumbel_softmax_st(self.actions(h), tau, noise=sample)
                elif rows.numel():
                    logits = self.actions(h.index_select(0, rows))
                    onehot = onehot.index_copy(0, rows, gumbel_softmax_st(logits, tau, noise=sample))
                action = onehot.argmax(dim=-1)
                onehots.append(onehot)
            counter.advance(action)
            actions.append(action)
            decided.append(deciding)
        chosen = torch.stack(actions, 1)
        onehot_all = (torch.nn.functional.one_hot(chosen, self.actions.out_features).to(features.dtype)
                      if argmax_only else torch.stack(onehots, 1))
        return Decisions(onehot_all, chosen, torch.stack(decided, 1), steps)


def random_decisions(batch: int, num_frames: int, probs: Tensor, *, counter: SkipCounter) -> Decisions:
    """The Random Policy baseline: at every decision point an action drawn from ``probs (A,)``."""
    onehot = probs.new_zeros(batch, probs.numel())
    onehots, actions, decided = [], [], []
    for _ in range(num_frames):
        deciding = counter.deciding()
        draw = torch.multinomial(probs, batch, replacement=True)
        fresh = torch.zeros_like(onehot).scatter_(1, draw[:, None], 1.0)
        onehot = torch.where(deciding[:, None], fresh, onehot)
        action = onehot.argmax(dim=-1)
        counter.advance(action)
        onehots.append(onehot)
        actions.append(action)
        decided.append(deciding)
    steps = torch.zeros(batch, dtype=torch.long, device=probs.device)
    return Decisions(torch.stack(onehots, 1), torch.stack(actions, 1), torch.stack(decided, 1), steps)

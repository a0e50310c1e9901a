"""The efficiency loss (Eq. 3.6) on hand-made gate values, and its gradient path."""

from __future__ import annotations

import pytest
import torch

from effvid.methods.vared2 import GateOutput, efficiency_loss
from effvid.methods.vared2.losses import correct_predictions, layer_ratios


def test_efficiency_loss_on_hand_made_values():
    ratio = torch.tensor([[1.0, 0.5, 0.25], [0.5, 0.5, 0.125]])
    weights = torch.tensor([0.5, 0.25, 0.25])
    both = efficiency_loss(ratio, weights, torch.tensor([True, True]))
    first = 0.5 * 1.0 + 0.25 * 0.5 + 0.25 * 0.25
    second = 0.5 * 0.5 + 0.25 * 0.5 + 0.25 * 0.125
    assert both.item() == pytest.approx((first**2 + second**2) / 2)
    assert efficiency_loss(ratio, weights, torch.tensor([False, True])).item() == pytest.approx(second**2 / 2)
    assert efficiency_loss(ratio, weights, torch.tensor([False, False])).item() == 0.0


def test_layer_ratios_are_the_largest_non_zero_choices():
    v_c = torch.tensor([[0.7, 0.2, 0.0], [0.0, 0.0, 0.4], [0.0, 0.0, 0.0]])
    v_t = torch.tensor([[0.0, 0.3], [0.5, 0.5], [0.9, 0.0]])
    gate = GateOutput(v_t=v_t, v_c=v_c, a_t=torch.zeros(3, 2), a_c=torch.zeros(3, 3))
    channel, temporal, ratio = layer_ratios([gate, gate])
    assert channel[:, 0].tolist() == [1.0, 0.25, 0.0]
    assert temporal[:, 0].tolist() == [0.5, 1.0, 1.0]
    assert ratio[:, 1].tolist() == [0.5, 0.25, 0.0]


def test_the_gradient_lowers_the_expensive_choices_even_when_only_they_are_active():
    a_c = torch.tensor([[2.0, -3.0]], requires_grad=True)  # V_c = (0.96, 0): only the full choice
    a_t = torch.tensor([[2.0, -3.0]], requires_grad=True)
    gate = GateOutput(v_t=torch.tanh(a_t).clamp_min(0), v_c=torch.tanh(a_c).clamp_min(0), a_t=a_t, a_c=a_c)
    _, _, ratio = layer_ratios([gate])
    assert ratio.item() == 1.0
    loss = efficiency_loss(ratio, torch.tensor([1.0]), torch.tensor([True]))
    loss.backward()
    assert a_c.grad[0, 0] > 0 > a_c.grad[0, 1] and a_t.grad[0, 0] > 0 > a_t.grad[0, 1]


def test_correct_predictions_single_and_multi_label():
    logits = torch.tensor([[0.1, 2.0], [3.0, 0.0]])
    assert correct_predictions(logits, torch.tensor([1, 1])).tolist() == [True, False]
    assert correct_predictions(logits, torch.tensor([[0.0, 1.0], [1.0, 1.0]])).tolist() == [True, True]

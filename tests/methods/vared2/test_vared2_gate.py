"""The soft modulation gate (Eq. 3.4): shapes, range, switched-off axes, cost."""

from __future__ import annotations

import pytest
import torch

from effvid.methods.vared2 import SoftModulationGate


@pytest.mark.parametrize(("s_t", "s_c"), [(2, 2), (3, 3), (2, 3), (1, 3), (3, 1)])
def test_gate_gives_one_weight_per_choice_in_zero_to_one(s_t, s_c):
    gate = SoftModulationGate(in_channels=6, in_frames=4, hidden=5, temporal_choices=s_t, channel_choices=s_c)
    with torch.no_grad():
        gate.fc2.weight.normal_(0, 3.0)
    out = gate(torch.randn(7, 6, 4, 5, 5))
    assert out.v_t.shape == (7, s_t) and out.v_c.shape == (7, s_c)
    for v in (out.v_t, out.v_c):
        assert (v >= 0).all() and (v <= 1).all()  # [0, 1) in exact arithmetic; float32 tanh saturates
    present = [v for v, s in ((out.v_t, s_t), (out.v_c, s_c)) if s > 1]
    weights = torch.cat(present, 1)
    assert (weights == 0).any() and (weights > 0).any()  # max(tanh, 0): exact zeros do occur


def test_an_axis_switched_off_has_weight_one_and_no_output():
    gate = SoftModulationGate(in_channels=3, in_frames=2, hidden=4, temporal_choices=1, channel_choices=2)
    out = gate(torch.randn(2, 3, 2, 4, 4))
    assert torch.equal(out.v_t, torch.ones(2, 1)) and out.a_t is None and out.a_c.shape == (2, 2)
    assert gate.fc2.out_features == 2


def test_gate_pools_space_keeps_time_and_counts_its_macs():
    gate = SoftModulationGate(in_channels=3, in_frames=2, hidden=4, temporal_choices=2, channel_choices=3).eval()
    x = torch.randn(1, 3, 2, 4, 4)
    shuffled = x[..., torch.randperm(4), :]  # spatial order does not matter, frame order does
    assert torch.allclose(gate(x).v_c, gate(shuffled).v_c, atol=1e-6)
    channels_last = x.contiguous(memory_format=torch.channels_last_3d)  # pooled in its own layout
    assert torch.allclose(gate(x).v_c, gate(channels_last).v_c, atol=1e-6)
    assert gate.fc1.in_features == 3 * 2 and gate.macs == 3 * 2 * 4 + 4 * 5
    with pytest.raises(ValueError, match="fix the clip length"):
        gate(torch.randn(1, 3, 3, 4, 4))


def test_full_choice_starts_preferred():
    gate = SoftModulationGate(in_channels=3, in_frames=2, hidden=4, temporal_choices=2, channel_choices=2,
                              full_bias=1.0)
    assert gate.fc2.bias.tolist() == [1.0, 0.0, 1.0, 0.0]
    both = SoftModulationGate(in_channels=3, in_frames=2, hidden=4, temporal_choices=3, channel_choices=2,
                              full_bias=0.5, reduced_bias=0.25)
    assert both.fc2.bias.tolist() == [0.5, 0.25, 0.25, 0.5, 0.25]


@pytest.mark.parametrize("revive", [True, False])
def test_a_choice_below_zero_still_learns_only_when_revived(revive):
    gate = SoftModulationGate(in_channels=3, in_frames=2, hidden=4, temporal_choices=2, channel_choices=2,
                              full_bias=-2.0, reduced_bias=1.0, revive=revive).train()
    with torch.no_grad():
        gate.fc2.weight.zero_()
    out = gate(torch.randn(4, 3, 2, 4, 4))
    assert (out.v_t[:, 0] == 0).all() and (out.v_c[:, 0] == 0).all()  # the forward value is the clamp's
    (out.v_t.sum() + out.v_c.sum()).backward()
    grad = gate.fc2.bias.grad
    assert (grad[[1, 3]] > 0).all()
    if revive:  # d tanh(a) / da at a = -2, per clip
        assert torch.allclose(grad[[0, 2]], torch.full((2,), 4 * (1 - torch.tanh(torch.tensor(-2.0)) ** 2)))
    else:
        assert (grad[[0, 2]] == 0).all()


def test_inference_on_channels_last_folds_pooling_and_batchnorm_into_the_first_layer():
    gate = SoftModulationGate(in_channels=6, in_frames=3, hidden=5, temporal_choices=3, channel_choices=2)
    with torch.no_grad():
        gate.bn.running_mean.normal_()
        gate.bn.running_var.uniform_(0.5, 2.0)
        gate.bn.weight.normal_()
        gate.fc2.weight.normal_(0, 2.0)
    gate.eval()
    x = torch.randn(4, 6, 3, 5, 7).contiguous(memory_format=torch.channels_last_3d)
    plain = gate(x)  # gradients on: the formula as written
    with torch.no_grad():
        folded = gate(x)
        assert "_folded_cache" in gate.__dict__  # the folded path ran
        assert torch.allclose(folded.a_t, plain.a_t, atol=1e-5) and torch.allclose(folded.a_c, plain.a_c, atol=1e-5)
        assert torch.equal(folded.v_t > 0, plain.v_t > 0)
        gate.bn.running_mean.add_(1.0)  # new statistics: the folded weights follow
        assert torch.allclose(gate(x).a_t, gate(x.contiguous()).a_t, atol=1e-5)
        assert not torch.allclose(gate(x).a_t, folded.a_t, atol=1e-3)

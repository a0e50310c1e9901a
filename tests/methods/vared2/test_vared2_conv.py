"""The dynamic convolution: shared-weight training is Eq. 3.5's per-choice sum, and inference
runs only the largest non-zero choice, gives the training path's output, and groups batches."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from vared2_helpers import ConvRecorder, fix_gate

from effvid.cost.executed import count_executed
from effvid.methods.vared2 import DynamicConv3d


def _layer(s_t: int = 3, s_c: int = 3, *, kernel=(1, 3, 3), stride=(1, 1, 1), padding=(0, 1, 1), out=8):
    conv = nn.Conv3d(4, out, kernel, stride=stride, padding=padding, bias=True)
    layer = DynamicConv3d.from_conv(conv, in_frames=8, temporal_choices=s_t, channel_choices=s_c, hidden=6)
    with torch.no_grad():
        for cheap in layer.cheap:
            cheap.weight.normal_()  # not the identity: the rebuilt channels must be checked
    return layer


def _explicit(layer: DynamicConv3d, x, v_t, v_c):
    """Eq. 3.5 written out: every (channel, temporal) choice run on its own and weighed."""
    total = 0
    t_out = layer.out_size(x.shape[2:])[0]
    for i, k in enumerate(layer.keep):
        for j, r in enumerate(layer.strides):
            stride = (layer.stride[0] * r, *layer.stride[1:])
            y = F.conv3d(x, layer.weight[:k], layer.bias[:k], stride, layer.padding)
            if i:
                y = torch.cat([y, layer.cheap[i - 1](y)], 1)
            y = y.repeat_interleave(r, dim=2)[:, :, :t_out]
            total = total + (v_c[:, i] * v_t[:, j]).view(-1, 1, 1, 1, 1) * y
    return total


@pytest.mark.parametrize("kernel", [(1, 3, 3), (3, 3, 3)])
def test_shared_weight_training_equals_the_explicit_per_choice_sum(kernel):
    layer = _layer(kernel=kernel, padding=tuple(k // 2 for k in kernel)).train()
    x = torch.randn(3, 4, 8, 6, 6)
    v_t, v_c = torch.rand(3, 3), torch.rand(3, 3)
    v_c[1, 0] = 0.0
    fix_gate(layer, v_t, v_c)
    recorder = ConvRecorder()
    with recorder:
        out = layer(x)
    assert torch.allclose(out, _explicit(layer, x, v_t, v_c), atol=1e-5)
    main = [call for call in recorder.calls if call[1][1] == 4]
    assert main == [((3, 4, 8, 6, 6), (8, 4, *kernel))]  # the big kernel runs once for all 9 choices


def test_training_output_has_gradients_for_weights_gate_weights_and_cheap_ops():
    layer = _layer().train()
    out = layer(torch.randn(2, 4, 8, 6, 6))
    out.square().mean().backward()
    assert layer.weight.grad is not None and layer.gate.fc1.weight.grad is not None
    assert all(c.weight.grad is not None for c in layer.cheap)


def test_a_clip_whose_gate_picks_half_runs_half_the_filters_and_matches_training():
    layer = _layer(s_t=2, s_c=2)
    x = torch.randn(1, 4, 8, 6, 6)
    v_t, v_c = torch.tensor([[0.6, 0.0]]), torch.tensor([[0.0, 0.8]])
    fix_gate(layer, v_t, v_c)
    recorder = ConvRecorder()
    with torch.no_grad():
        expected = layer.train()(x)
        with recorder:
            got = layer.eval()(x)
    assert torch.allclose(got, expected, atol=1e-6)
    assert recorder.calls[0] == ((1, 4, 8, 6, 6), (4, 4, 1, 3, 3))  # 4 of the 8 filters
    assert recorder.calls[1:] == [((1, 4, 8, 6, 6), (4, 1, 1, 3, 3))]  # the depthwise rebuild, nothing else
    executed = count_executed(layer, x).per_sample_gmacs.item() * 1e9
    conv, cheap = layer.cost_tables((8, 6, 6))
    assert executed == conv[1][0] + cheap[1][0]  # the gate is fixed here, so it runs no MACs
    assert conv[1][0] * 2 == conv[0][0]


def test_a_half_temporal_choice_strides_the_input_frames():
    layer = _layer(s_t=2, s_c=2).eval()
    x = torch.randn(1, 4, 8, 6, 6)
    v_t, v_c = torch.tensor([[0.0, 0.9]]), torch.tensor([[0.5, 0.0]])
    fix_gate(layer, v_t, v_c)
    recorder = ConvRecorder()
    with torch.no_grad(), recorder:
        got = layer(x)
    assert recorder.calls == [((1, 4, 4, 6, 6), (8, 4, 1, 3, 3))]  # every other input frame, all filters
    with torch.no_grad():
        assert torch.allclose(got, layer.train()(x), atol=1e-6)
    assert torch.equal(got[:, :, 0::2], got[:, :, 1::2])  # each missing frame copies the one before


@pytest.mark.parametrize("frames", [7, 8])
def test_one_choice_per_axis_is_written_straight_into_the_output(frames):
    layer = _layer(s_t=3, s_c=3).eval()  # half the channels rebuilt, every 4th frame computed
    x = torch.randn(3, 4, frames, 6, 6)
    v_t = torch.tensor([[0.0, 0.0, 0.7]]).repeat(3, 1)
    v_c = torch.tensor([[0.0, 0.4, 0.0]]).repeat(3, 1) * torch.tensor([[1.0], [0.5], [2.0]])
    fix_gate(layer, v_t, v_c)
    with torch.no_grad():
        got = layer(x)
        assert torch.allclose(got, layer.train()(x), atol=1e-6)
        assert torch.allclose(got, _explicit(layer, x, v_t, v_c), atol=1e-6)
        alone = []
        for i in range(3):
            fix_gate(layer, v_t[i : i + 1], v_c[i : i + 1])
            alone.append(layer.eval()(x[i : i + 1]))
    assert torch.allclose(got, torch.cat(alone), atol=1e-6)  # one clip and a group: the same arithmetic
    assert torch.equal(got[:, :, 4:], got[:, :, 4:5].expand_as(got[:, :, 4:]))  # the short last group


@pytest.mark.parametrize(("s_t", "v_t"), [(2, [0.4, 0.7]), (3, [0.4, 0.0, 0.7])])
def test_every_frame_and_a_strided_choice_are_mixed_in_the_computed_frames(s_t, v_t):
    layer = _layer(s_t=s_t, s_c=2).eval()
    x = torch.randn(2, 4, 7, 6, 6)
    v_t, v_c = torch.tensor([v_t, v_t]) * torch.tensor([[1.0], [0.5]]), torch.tensor([[0.5, 0.3], [0.9, 0.0]])
    fix_gate(layer, v_t, v_c)
    with torch.no_grad():
        got = layer(x)
        assert torch.allclose(got, _explicit(layer, x, v_t, v_c), atol=1e-6)
        assert torch.allclose(got, layer.train()(x), atol=1e-6)


def test_a_strided_temporal_kernel_takes_the_stride_times_r():
    layer = _layer(s_t=3, s_c=2, kernel=(3, 1, 1), stride=(2, 1, 1), padding=(1, 0, 0)).eval()
    x = torch.randn(1, 4, 8, 5, 5)
    fix_gate(layer, torch.tensor([[0.0, 0.0, 0.7]]), torch.tensor([[0.3, 0.2]]))
    recorder = ConvRecorder()
    with torch.no_grad(), recorder:
        got = layer(x)
    assert recorder.calls[0] == ((1, 4, 8, 5, 5), (8, 4, 3, 1, 1))
    assert got.shape == (1, 8, 4, 5, 5)  # 4 output frames, 1 computed (stride 2 x 4), 3 copied
    with torch.no_grad():
        assert torch.allclose(got, layer.train()(x), atol=1e-6)


def test_an_axis_with_no_non_zero_weight_computes_nothing():
    layer = _layer(s_t=2, s_c=2).eval()
    x = torch.randn(1, 4, 8, 6, 6)
    fix_gate(layer, torch.tensor([[0.0, 0.0]]), torch.tensor([[0.5, 0.5]]))
    recorder = ConvRecorder()
    with torch.no_grad(), recorder:
        got = layer(x)
    assert recorder.calls == [] and torch.equal(got, torch.zeros(1, 8, 8, 6, 6))


def test_batch_grouping_gives_the_outputs_of_one_by_one():
    layer = _layer(s_t=3, s_c=3).eval()
    x = torch.randn(7, 4, 8, 6, 6)
    v_t = torch.tensor([[0.5, 0.0, 0.0], [0.0, 0.4, 0.0], [0.0, 0.0, 0.3], [0.2, 0.3, 0.0],
                        [0.0, 0.0, 0.0], [0.5, 0.0, 0.0], [0.0, 0.6, 0.6]])
    v_c = torch.tensor([[0.0, 0.5, 0.0], [0.9, 0.0, 0.0], [0.0, 0.0, 0.7], [0.1, 0.2, 0.3],
                        [0.5, 0.0, 0.0], [0.0, 0.8, 0.0], [0.0, 0.0, 0.0]])
    fix_gate(layer, v_t, v_c)
    with torch.no_grad():
        batched = layer(x)
        singles = []
        for i in range(7):
            fix_gate(layer, v_t[i : i + 1], v_c[i : i + 1])
            singles.append(layer(x[i : i + 1]))
        fix_gate(layer, v_t, v_c)
        trained = layer.train()(x)
    assert torch.allclose(batched, torch.cat(singles), atol=1e-6)
    assert torch.allclose(batched, trained, atol=1e-5)
    assert torch.equal(batched[4], torch.zeros_like(batched[4])) and torch.equal(batched[6], batched[4])


@pytest.mark.parametrize(("frames", "size"), [(8, 6), (7, 6), (8, 1)])  # at size 1 the filters outsize the output
def test_an_absorbed_batchnorm_is_applied_in_every_pattern_batched_and_alone(frames, size):
    layer = _layer(s_t=3, s_c=3)
    bn = nn.BatchNorm3d(8).eval()
    with torch.no_grad():
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.normal_()
        bn.bias.normal_()
    x = torch.randn(9, 4, frames, size, size)
    v_t = torch.tensor([[0.5, 0.0, 0.0], [0.0, 0.4, 0.0], [0.0, 0.0, 0.3], [0.2, 0.3, 0.0],
                        [0.0, 0.0, 0.0], [0.5, 0.0, 0.0], [0.0, 0.6, 0.6], [0.7, 0.0, 0.0], [0.3, 0.0, 0.0]])
    v_c = torch.tensor([[0.0, 0.5, 0.0], [0.9, 0.0, 0.0], [0.0, 0.0, 0.7], [0.1, 0.2, 0.3],
                        [0.5, 0.0, 0.0], [0.0, 0.8, 0.0], [0.0, 0.0, 0.0], [0.6, 0.0, 0.0], [0.2, 0.0, 0.0]])
    fix_gate(layer, v_t, v_c)
    layer.eval()
    with torch.no_grad():
        expected = bn(layer(x))
        layer.absorb_batchnorm(bn)
        batched = layer(x)
        alone = []
        for i in range(9):
            fix_gate(layer, v_t[i : i + 1], v_c[i : i + 1])
            alone.append(layer(x[i : i + 1]))
    assert torch.allclose(batched, expected, atol=1e-5)
    assert torch.equal(torch.cat(alone), batched)  # a clip's result does not depend on its batch
    fix_gate(layer, v_t, v_c)
    assert torch.allclose(bn(layer(x)), expected, atol=1e-5)  # gradients on: the BatchNorm runs on its own
    layer.absorb_batchnorm(None)
    with torch.no_grad():
        assert torch.allclose(bn(layer(x)), expected, atol=1e-6)


def test_channels_last_inputs_give_the_same_output():
    layer = _layer(s_t=2, s_c=3).eval()
    x = torch.randn(3, 4, 8, 6, 6)
    fix_gate(layer, torch.tensor([[0.0, 0.5], [0.3, 0.0], [0.2, 0.2]]),
             torch.tensor([[0.0, 0.0, 0.4], [0.5, 0.1, 0.0], [0.0, 0.6, 0.0]]))
    with torch.no_grad():
        plain = layer(x)
        layer.weight.data = layer.weight.data.contiguous(memory_format=torch.channels_last_3d)
        fast = layer(x.contiguous(memory_format=torch.channels_last_3d))
    assert torch.allclose(plain, fast, atol=1e-5)


def test_channel_rebuild_of_a_width_that_does_not_divide_gathers_and_counts_its_macs():
    layer = _layer(s_t=2, s_c=3, out=10)
    assert layer.keep == (10, 5, 2) and [c.gathers for c in layer.cheap] == [False, False]
    odd = _layer(s_t=2, s_c=3, out=12)
    assert odd.keep == (12, 6, 3)
    weird = _layer(s_t=2, s_c=2, out=7)
    assert weird.keep == (7, 4) and weird.cheap[0].gathers and weird.cheap[0].rebuilt == 3
    x = torch.randn(1, 4, 8, 6, 6)
    fix_gate(weird, torch.tensor([[0.4, 0.0]]), torch.tensor([[0.0, 0.5]]))
    executed = count_executed(weird, x).per_sample_gmacs.item() * 1e9
    conv, cheap = weird.cost_tables((8, 6, 6))
    assert executed == conv[1][0] + cheap[1][0]
    assert cheap[1][0] == 3 * 9 * 8 * 36 and conv[1][0] == 4 * 4 * 9 * 8 * 36
    assert math.isclose(conv[0][0] / conv[1][0], 7 / 4)

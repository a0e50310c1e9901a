"""Eq. (3): lambda(e) warm-up and growth, the sparsity loss, the bound loss and its relaxation."""

from __future__ import annotations

import math

import pytest
import torch
from dstep_helpers import dstep_model

from effvid.engine.losses import LossContext
from effvid.methods.dstep.losses import bound_loss, bound_relaxation, sparsity_lambda, sparsity_loss
from effvid.methods.dstep.settings import LossSettings


def test_lambda_is_zero_for_the_warm_up_epochs_then_grows_exponentially():
    kw = {"alpha": 0.5, "beta": 0.1, "warmup_epochs": 10}
    assert [sparsity_lambda(e, **kw) for e in (0, 5, 9.99)] == [0.0, 0.0, 0.0]
    assert sparsity_lambda(10, **kw) == pytest.approx(0.5 * math.exp(1.0))
    assert sparsity_lambda(20, **kw) / sparsity_lambda(10, **kw) == pytest.approx(math.exp(1.0))
    assert sparsity_lambda(0, alpha=2.0, beta=0.0, warmup_epochs=0) == 2.0  # no warm-up: a constant coefficient


def test_sparsity_loss_is_the_squared_gap_of_the_batch_mean_ratio_to_the_target():
    ratio = torch.tensor([0.5, 0.9], requires_grad=True)
    loss = sparsity_loss(ratio, 0.6)
    assert float(loss.detach()) == pytest.approx(0.01)
    loss.backward()
    assert ratio.grad.tolist() == pytest.approx([0.1, 0.1])


def test_bound_loss_pins_densities_to_the_target_then_relaxes():
    density = torch.tensor([[0.5, 0.9, 0.775]])
    t = math.sqrt(0.6)
    assert float(bound_loss(density, target=t, relaxation=1.0)) == pytest.approx(((t - 0.5) ** 2 + (0.9 - t) ** 2) / 3, rel=1e-5)
    assert float(bound_loss(density, target=t, relaxation=0.0)) == 0.0
    assert bound_relaxation(0, 0.05) == 1.0 and bound_relaxation(20, 0.05) == pytest.approx(math.exp(-1.0))


def test_the_models_terms_read_the_epoch_and_its_decisions():
    settings = LossSettings(target=0.6, alpha=1.0, beta=0.1, warmup_epochs=2)
    model = dstep_model("tsm_r18", loss={"target": 0.6, "alpha": 1.0, "beta": 0.1, "warmup_epochs": 2}).train()
    out = model.forward_output(torch.randn(2, 3, 4, 32, 32))
    terms = model.loss_terms()
    ctx = LossContext(logits=out.logits, targets=torch.tensor([0, 1]), decisions=out.decisions, epoch=1.5)
    assert float(terms["sparsity"](ctx).detach()) == 0.0
    ctx.epoch = 3.0
    expected = math.exp(0.3) * (float(out.decisions["flops_ratio"].detach().mean()) - settings.target) ** 2
    value = terms["sparsity"](ctx)
    assert float(value.detach()) == pytest.approx(expected, rel=1e-5)
    (value + terms["bound"](ctx)).backward()
    assert model.blocks()[0].mask.conv.weight.grad.abs().sum() > 0

"""D-STEP models on TSN/TSM ResNet-18 and ResNet-50: the reported cost is what executed on real
clips, sparse inference gives the masked computation's logits, costs against the static counter,
base checkpoints load by name, and gradients reach every part in training."""

from __future__ import annotations

import pytest
import torch
from dstep_helpers import dstep_model

from effvid.cost.executed import check_reported_cost
from effvid.cost.static import count_cost
from effvid.models import create_from_spec


def _clips(spec, root, count: int = 4):
    from effvid.data.annotations import load_annotations
    from effvid.data.dataset import VideoDataset

    dataset = VideoDataset(load_annotations(root), spec=spec, train=False)
    return torch.stack([dataset[i]["clip"] for i in range(count)])


@pytest.mark.parametrize(("name", "settings"), [("tsm_r18", {}), ("tsn_r18", {"reuse": False}),
                                                ("tsm_r18", {"spatial": False}), ("tsn_r50", {}),
                                                ("tsm_r50", {"dense_above": [0.3, 0.5, 0.2, 0.1]})])
def test_reported_cost_is_what_executed_on_real_clips(name, settings, synth_micro):
    model = dstep_model(name, **settings).eval()
    clips = _clips(model.spec, synth_micro.annotations["val"])
    executed = check_reported_cost(model, clips)
    assert float(executed.per_sample_gmacs.max()) <= model.dense_gmacs() * (1 + 1e-9)
    assert float(executed.per_sample_gmacs.min()) < model.dense_gmacs()


@pytest.mark.parametrize("name", ["tsm_r18", "tsm_r50"])
def test_sparse_inference_gives_the_masked_computations_logits_and_cost(name):
    model = dstep_model(name).double().eval()
    x = torch.randn(2, 3, 4, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        sparse = model.forward_output(x)
        model.set_executor("masked")
        masked = model.forward_output(x)
    assert torch.allclose(sparse.logits, masked.logits, atol=1e-9)
    assert torch.equal(sparse.cost, masked.cost)
    for key in ("spatial_density", "skip_rate", "reuse_rate"):
        assert torch.equal(sparse.decisions[key], masked.decisions[key])


@pytest.mark.parametrize("name", ["tsm_r18", "tsn_r50"])
def test_static_cost_is_the_plain_networks_and_base_checkpoints_load_by_name(name):
    model = dstep_model(name)
    base = create_from_spec(model.spec.replace(method=None))
    assert model.static_gmacs((32, 32), 4) == pytest.approx(count_cost(base, (3, 4, 32, 32)).gmacs, rel=1e-12)
    own = model.state_dict()
    assert set(base.state_dict()) <= set(own)
    assert all(key.split(".")[-2] in ("conv", "fc1", "fc2", "bn") for key in set(own) - set(base.state_dict())
               if ".mask." in key or ".policy." in key)


def test_every_tile_and_channel_on_costs_the_dense_ceiling_plus_the_policies():
    model = dstep_model("tsm_r18", mask_bias=10.0, compute_bias=100.0,
                        dense_above=[1.0, 1.0, 1.0, 1.0])
    with torch.no_grad():
        for block in model.blocks():
            block.mask.conv.weight.zero_()
            block.policy.fc2.weight.zero_()
        out = model.eval().forward_output(torch.randn(1, 3, 4, 32, 32))
    assert float(out.cost[0]) == pytest.approx(model.dense_gmacs(), rel=1e-12)
    assert torch.equal(out.decisions["compute_rate"], torch.ones_like(out.decisions["compute_rate"]))


@pytest.mark.parametrize("name", ["tsm_r50", "tsm_r18"])
def test_training_forward_and_backward_reach_mask_policy_and_convolutions(name):
    model = dstep_model(name).train()
    out = model.forward_output(torch.randn(2, 3, 4, 32, 32))
    assert out.cost.shape == (2,) and out.decisions["spatial_density"].shape == (2, len(model.block_names))
    assert out.decisions["frame_gmacs"].shape == (2, 4)
    loss = out.logits.logsumexp(-1).sum() + out.decisions["flops_ratio"].mean() + out.decisions["spatial_density"].sum()
    loss.backward()
    block = model.blocks()[-1]
    for param in (block.mask.conv.weight, block.policy.fc2.weight, block.policy.fc1.weight, block.conv1.weight,
                  block.conv2.weight):
        assert param.grad is not None and param.grad.abs().sum() > 0

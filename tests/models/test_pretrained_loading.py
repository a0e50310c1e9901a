"""load_pretrained: foreign layouts reproduce outputs exactly; mismatches and bad files fail clearly."""

from __future__ import annotations

import re

import pytest
import torch
from safetensors.torch import save_file

from effvid.engine.checkpoint import save_checkpoint
from effvid.errors import CheckpointError, ConfigError
from effvid.models import create, load_pretrained

TINY = {"width_mult": 0.25, "depth_mult": 0.25}
FRAMES = {"slowfast_4x16_r50": 8, "x3d_xs": 4}

# Our (PyTorchVideo) names -> PySlowFast's, written from toolkits.md 3.2-3.3 independently of
# the loader's tables; stage numbers shift by one (blocks.1 = s2 = res2).
RES_LEAVES = {
    "branch1_conv": "branch1",
    "branch1_norm": "branch1_bn",
    "branch2.conv_a": "branch2.a",
    "branch2.norm_a": "branch2.a_bn",
    "branch2.conv_b": "branch2.b",
    "branch2.norm_b": "branch2.b_bn",
    "branch2.norm_b.0": "branch2.b_bn",
    "branch2.norm_b.1.block.0": "branch2.se.fc1",
    "branch2.norm_b.1.block.2": "branch2.se.fc2",
    "branch2.conv_c": "branch2.c",
    "branch2.norm_c": "branch2.c_bn",
}


def to_pyslowfast(key: str) -> str:
    module, tensor = key.rsplit(".", 1)
    fixed = {
        "blocks.0.conv.conv_t": "s1.pathway0_stem.conv_xy",
        "blocks.0.conv.conv_xy": "s1.pathway0_stem.conv",
        "blocks.0.norm": "s1.pathway0_stem.bn",
        "blocks.5.pool.pre_conv": "head.conv_5",
        "blocks.5.pool.pre_norm": "head.conv_5_bn",
        "blocks.5.pool.post_conv": "head.lin_5",
        "blocks.5.proj": "head.projection",
        "blocks.6.proj": "head.projection",
    }
    if module in fixed:
        return f"{fixed[module]}.{tensor}"
    if m := re.fullmatch(r"blocks\.0\.multipathway_blocks\.(\d)\.(conv|norm)", module):
        return f"s1.pathway{m[1]}_stem.{'conv' if m[2] == 'conv' else 'bn'}.{tensor}"
    if m := re.fullmatch(r"blocks\.(\d)\.multipathway_fusion\.(conv_fast_to_slow|norm)", module):
        return f"s{int(m[1]) + 1}_fuse.{'conv_f2s' if m[2] == 'conv_fast_to_slow' else 'bn'}.{tensor}"
    if m := re.fullmatch(r"blocks\.(\d)\.(?:multipathway_blocks\.(\d)\.)?res_blocks\.(\d+)\.(.+)", module):
        return f"s{int(m[1]) + 1}.pathway{m[2] or 0}_res{m[3]}.{RES_LEAVES[m[4]]}.{tensor}"
    raise AssertionError(f"no PySlowFast name for {key}")


def trained(name: str, seed: int = 0, **overrides) -> torch.nn.Module:
    """A tiny model whose every weight and BN statistic is random (as if trained), in eval mode."""
    torch.manual_seed(seed)
    model = create(name, **(TINY | overrides))
    with torch.no_grad():
        for key, tensor in model.state_dict().items():
            if tensor.is_floating_point():
                tensor.copy_(torch.rand_like(tensor) + 0.5 if key.endswith("running_var") else torch.randn_like(tensor) * 0.2)
    return model.eval()


def clip(name: str) -> torch.Tensor:
    return torch.randn(2, 3, FRAMES[name], 32, 32, generator=torch.Generator().manual_seed(1))


def assert_loads_exactly(name, path, source, **overrides):
    reference = trained(name)
    fresh = trained(name, seed=1, **overrides)
    report = load_pretrained(fresh, path, source)
    assert report.loaded == len(reference.state_dict()) and not report.head_replaced
    with torch.no_grad():
        assert torch.equal(fresh(clip(name)), reference(clip(name)))


@pytest.mark.parametrize(
    ("name", "wrap"),
    [
        ("slowfast_4x16_r50", "model_state"),
        ("slowfast_4x16_r50", "module."),
        ("x3d_xs", "model_state+model."),
        ("x3d_xs", "plain"),
    ],
)
def test_pyslowfast_layout_reproduces_outputs(tmp_path, name, wrap):
    state = {to_pyslowfast(k): v for k, v in trained(name).state_dict().items()}
    if wrap.endswith("model."):  # PySlowFast's ptv_model_builder wrapper
        state = {f"model.{k}": v for k, v in state.items()}
    if wrap == "module.":
        state = {f"module.{k}": v for k, v in state.items()}
    obj = {"model_state": state, "epoch": 196, "cfg": "MODEL:\n  ARCH: slowfast\n"} if wrap.startswith("model_state") else state
    torch.save(obj, tmp_path / "checkpoint_epoch_00196.pyth")
    assert_loads_exactly(name, tmp_path / "checkpoint_epoch_00196.pyth", "pyslowfast")


@pytest.mark.parametrize("name", ["slowfast_4x16_r50", "x3d_xs"])
def test_pytorchvideo_model_state_reproduces_outputs(tmp_path, name):
    torch.save({"model_state": trained(name).state_dict()}, tmp_path / "X3D.pyth")
    assert_loads_exactly(name, tmp_path / "X3D.pyth", "pytorchvideo")


def test_effvid_checkpoints_and_bare_safetensors_reproduce_outputs(tmp_path):
    state = {k: v.contiguous() for k, v in trained("x3d_xs").state_dict().items()}
    save_file(state, tmp_path / "x3d_xs.safetensors")
    assert_loads_exactly("x3d_xs", tmp_path / "x3d_xs.safetensors", "effvid")
    save_checkpoint(tmp_path / "run" / "best", model=trained("x3d_xs"))
    assert_loads_exactly("x3d_xs", tmp_path / "run" / "best", "effvid")
    assert_loads_exactly("x3d_xs", tmp_path / "run" / "best.safetensors", "effvid")


def test_a_corrupt_or_foreign_effvid_checkpoint_is_a_checkpoint_error(tmp_path):
    sidecar = save_checkpoint(tmp_path / "best", model=trained("x3d_xs"))
    weights = tmp_path / "best.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"best\.safetensors: corrupt checkpoint"):
        load_pretrained(trained("x3d_xs"), tmp_path / "best", "effvid")
    sidecar.write_text('{"format": "someone-else"}')
    with pytest.raises(CheckpointError, match=r"best\.json: not an effvid checkpoint sidecar"):
        load_pretrained(trained("x3d_xs"), tmp_path / "best.json", "effvid")
    sidecar.write_text("{not json")
    with pytest.raises(CheckpointError, match=r"best\.json: unreadable checkpoint sidecar"):
        load_pretrained(trained("x3d_xs"), tmp_path / "best.state.pt", "effvid")


def test_torchvision_state_dict_loads_a_frame_model(tmp_path):
    torch.manual_seed(0)
    reference = create("resnet18", num_classes=10).eval()
    torch.save(reference.state_dict(), tmp_path / "resnet18.pth")
    torch.manual_seed(1)
    fresh = create("resnet18", num_classes=10).eval()
    load_pretrained(fresh, tmp_path / "resnet18.pth", "torchvision")
    x = torch.randn(1, 3, 2, 32, 32)
    with torch.no_grad():
        assert torch.equal(fresh(x), reference(x))


def test_missing_and_extra_keys_are_listed(tmp_path):
    state = {to_pyslowfast(k): v for k, v in trained("slowfast_4x16_r50").state_dict().items()}
    del state["s3.pathway1_res0.branch2.b_bn.running_mean"]
    state["s6.pathway0_res0.branch2.a.weight"] = torch.zeros(1)
    torch.save({"model_state": state}, tmp_path / "bad.pyth")
    with pytest.raises(CheckpointError) as info:
        load_pretrained(trained("slowfast_4x16_r50"), tmp_path / "bad.pyth", "pyslowfast")
    message = str(info.value)
    assert str(tmp_path / "bad.pyth") in message
    assert "missing (1): blocks.2.multipathway_blocks.1.res_blocks.0.branch2.norm_b.running_mean" in message
    assert "unexpected (1): s6.pathway0_res0.branch2.a.weight" in message


def test_shape_mismatch_is_listed(tmp_path):
    state = trained("x3d_xs").state_dict()
    state["blocks.0.conv.conv_t.weight"] = torch.zeros(5, 3, 1, 3, 3)
    torch.save(state, tmp_path / "x3d.pth")
    with pytest.raises(CheckpointError) as info:
        load_pretrained(trained("x3d_xs"), tmp_path / "x3d.pth", "pytorchvideo")
    assert "shape mismatch (1): blocks.0.conv.conv_t.weight (checkpoint (5, 3, 1, 3, 3), model (8, 3, 1, 3, 3))" in str(info.value)
    assert "replace_head" not in str(info.value)  # the hint is only for a classifier misfit


def test_missing_batchnorm_counters_are_tolerated(tmp_path):
    state = {k: v for k, v in trained("x3d_xs").state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save(state, tmp_path / "old.pth")
    report = load_pretrained(trained("x3d_xs", seed=1), tmp_path / "old.pth", "pytorchvideo")
    assert report.kept and all(k.endswith("num_batches_tracked") for k in report.kept)


def test_head_for_another_class_count_needs_replace_head(tmp_path):
    torch.save({"model_state": trained("x3d_xs").state_dict()}, tmp_path / "k400.pyth")
    target = trained("x3d_xs", seed=1, num_classes=10)
    head_before = target.blocks[5].proj.weight.clone()
    with pytest.raises(CheckpointError, match=r"blocks\.5\.proj\.weight \(checkpoint \(400, .*replace_head=True"):
        load_pretrained(target, tmp_path / "k400.pyth", "pytorchvideo")
    report = load_pretrained(target, tmp_path / "k400.pyth", "pytorchvideo", replace_head=True)
    assert report.head_replaced and set(report.kept) >= {"blocks.5.proj.weight", "blocks.5.proj.bias"}
    assert torch.equal(target.blocks[5].proj.weight, head_before)
    x = clip("x3d_xs")
    with torch.no_grad():
        assert torch.equal(target.forward_features(x), trained("x3d_xs").forward_features(x))


def test_garbage_and_unsafe_files_raise_checkpoint_error(tmp_path):
    model = trained("x3d_xs")
    (tmp_path / "garbage.pth").write_bytes(b"this is not a checkpoint\n" * 10)
    (tmp_path / "garbage.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    torch.save({"model_state": model.state_dict()}, tmp_path / "full.pyth")
    (tmp_path / "truncated.pyth").write_bytes((tmp_path / "full.pyth").read_bytes()[:5000])
    torch.save({"epoch": 3, "note": "no weights"}, tmp_path / "meta.pth")
    torch.save({"weights": model.state_dict(), "opts": torch.nn.ReLU()}, tmp_path / "pickled_module.pth")
    for name in ("garbage.pth", "garbage.safetensors", "truncated.pyth", "meta.pth", "pickled_module.pth", "absent.pth"):
        with pytest.raises(CheckpointError, match=re.escape(str(tmp_path / name))):
            load_pretrained(model, tmp_path / name, "pytorchvideo")


def test_source_must_be_known_and_pyslowfast_needs_a_mapped_family(tmp_path):
    model = create("resnet18", num_classes=10)
    torch.save(model.state_dict(), tmp_path / "r18.pth")
    with pytest.raises(CheckpointError, match="no PySlowFast key mapping"):
        load_pretrained(model, tmp_path / "r18.pth", "pyslowfast")
    with pytest.raises(ConfigError, match="'mmaction2'"):
        load_pretrained(model, tmp_path / "r18.pth", "mmaction2")

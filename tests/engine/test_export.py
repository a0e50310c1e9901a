"""``effvid export``: TorchScript, torch.export and ONNX files that reload and match the eager
model at the spec's input; dynamic models refused in one line; ONNX optional."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from effvid.engine import export as export_module
from effvid.engine.checkpoint import load_model, save_checkpoint
from effvid.engine.export import ExportError, default_export_path, export_checkpoint
from effvid.models import create_from_spec, default_spec
from effvid.spec import MethodSpec

TINY = {"num_frames": 4, "crop_size": 32, "width_mult": 0.25, "depth_mult": 0.5}
HAS_ONNX = all(importlib.util.find_spec(name) is not None for name in ("onnx", "onnxscript"))


def effvid(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "effvid", *args], capture_output=True, text=True, timeout=300,
                          env=env, cwd=cwd)


@pytest.fixture
def tiny_checkpoint(tmp_path: Path) -> Path:
    spec = default_spec("r2plus1d_18", num_classes=3, **TINY)
    save_checkpoint(tmp_path / "ckpt" / "best", model=create_from_spec(spec), class_names=["a", "b", "c"])
    return tmp_path / "ckpt" / "best"


def _clip(stem: Path) -> torch.Tensor:
    return torch.randn(1, 3, 4, 32, 32, generator=torch.Generator().manual_seed(7))


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
def test_torchscript_round_trip_equals_eager(tiny_checkpoint: Path):
    result = export_checkpoint(tiny_checkpoint, "torchscript")
    out = default_export_path(tiny_checkpoint, "torchscript")
    assert result["out"] == str(out) and out.name == "best.torchscript.pt" and result["bytes"] == out.stat().st_size
    assert result["input_shape"] == [1, 3, 4, 32, 32] and result["matches"] and result["max_rel_diff"] <= 1e-4
    clip = _clip(tiny_checkpoint)
    with torch.no_grad():
        eager = load_model(tiny_checkpoint)(clip)
        scripted = torch.jit.load(str(out))(clip)
    torch.testing.assert_close(scripted, eager, rtol=1e-4, atol=1e-6)


def test_torch_export_round_trip_equals_eager_through_the_cli(tiny_checkpoint: Path, tmp_path: Path):
    out = tmp_path / "deploy" / "tiny.pt2"
    run = effvid("export", str(tiny_checkpoint) + ".safetensors", "--format", "exported", "--out", str(out), "--json")
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert result["format"] == "exported" and result["out"] == str(out) and out.is_file()
    assert result["max_abs_diff"] >= 0 and result["max_rel_diff"] <= result["tolerance"] == 1e-4
    clip = _clip(tiny_checkpoint)
    with torch.no_grad():
        eager = load_model(tiny_checkpoint)(clip)
        exported = torch.export.load(str(out)).module()(clip)
    torch.testing.assert_close(exported, eager, rtol=1e-4, atol=1e-6)


@pytest.mark.skipif(not HAS_ONNX, reason="onnx and onnxscript are optional and not installed")
def test_onnx_round_trip_equals_eager(tiny_checkpoint: Path):
    result = export_checkpoint(tiny_checkpoint, "onnx")
    assert result["out"].endswith("best.onnx") and result["matches"] and result["max_rel_diff"] <= 1e-4
    assert any("checked with" in note for note in result["notes"])


@pytest.mark.skipif(HAS_ONNX, reason="onnx is installed: the round trip is tested instead")
def test_onnx_without_the_onnx_package_is_one_line_saying_pip_install(tiny_checkpoint: Path):
    run = effvid("export", str(tiny_checkpoint), "--format", "onnx")
    assert run.returncode == 2 and run.stderr.count("\n") == 1
    assert "pip install onnx" in run.stderr and "Traceback" not in run.stderr
    assert not default_export_path(tiny_checkpoint, "onnx").exists()


def test_an_export_that_does_not_match_eager_is_an_error(tiny_checkpoint: Path, monkeypatch):
    real_load = torch.jit.load

    def tampered(*args, **kwargs):
        module = real_load(*args, **kwargs)
        return lambda x: module(x) + 1.0

    monkeypatch.setattr(export_module.torch.jit, "load", tampered)
    with pytest.raises(ExportError, match="does not match the eager model"):
        export_checkpoint(tiny_checkpoint, "torchscript")


def test_a_dynamic_model_is_refused_in_one_line(discoverable: Path, tmp_path: Path):
    spec = default_spec("r2plus1d_18", num_classes=3, method=MethodSpec("toy_skip", {"threshold": 0.0}), **TINY)
    stem = tmp_path / "toy"
    save_checkpoint(stem, model=create_from_spec(spec), class_names=["a", "b", "c"])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(discoverable), os.environ.get("PYTHONPATH", "")])}
    run = effvid("export", str(stem), "--format", "torchscript", env=env, cwd=tmp_path)
    assert run.returncode == 2 and run.stderr.count("\n") == 1, run.stderr
    assert "dynamic" in run.stderr and "data-dependent control flow" in run.stderr
    assert not default_export_path(stem, "torchscript").exists()

    tried = effvid("export", str(stem), "--format", "exported", env=env, cwd=tmp_path)  # torch.export is tried
    assert tried.returncode == 2 and tried.stderr.count("\n") == 1, tried.stderr  # its partial graph held back
    assert "torch.export cannot capture" in tried.stderr and "data-dependent" in tried.stderr
    assert not default_export_path(stem, "exported").exists()

"""Evaluation's device, autocast and progress settings (CPU only here), and a distributed request
without a process group."""

from __future__ import annotations

import logging
import sys

import pytest
import torch

from effvid.data.annotations import Annotation, load_annotations
from effvid.engine import checkpoint as ckpt
from effvid.engine.evaluate import evaluate, resolve_amp
from effvid.errors import ConfigError
from effvid.models import create_from_spec
from effvid.models.inference import resolve_device


@pytest.fixture
def model(tiny_spec):
    torch.manual_seed(2)
    return create_from_spec(tiny_spec(16))


@pytest.fixture
def few(synth_micro) -> Annotation:
    annotation = load_annotations(synth_micro.annotations["val"])
    return Annotation(records=annotation.records[:4], class_names=annotation.class_names, multilabel=False,
                      format=annotation.format, source=annotation.source)


def test_cpu_device_evaluates_in_float32_and_restores_the_model(model, few, tmp_path):
    model.train()
    auto = evaluate(model, few, views=(2, 1), num_workers=0, count_cost=False)
    cpu = evaluate(model, few, views=(2, 1), num_workers=0, count_cost=False, device="cpu", amp="off")
    assert (auto.device, auto.amp, auto.world_size) == ("cpu", "off", 1) and cpu.device == "cpu"
    assert torch.equal(auto.video_probs, cpu.video_probs)
    assert model.training and next(model.parameters()).device.type == "cpu"
    stem = tmp_path / "tiny"
    ckpt.save_checkpoint(stem, model=model)
    loaded = evaluate(stem, few, views=(2, 1), num_workers=0, count_cost=False, device="cpu")
    assert loaded.device == "cpu" and torch.allclose(loaded.video_probs, cpu.video_probs, atol=1e-6)


def test_amp_asked_for_on_the_cpu_evaluates_in_float32(model, few, caplog):
    off = evaluate(model, few, views=(1, 1), num_workers=0, count_cost=False, amp="off")
    with caplog.at_level(logging.INFO, logger="effvid.engine.evaluate"):
        bf16 = evaluate(model, few, views=(1, 1), num_workers=0, count_cost=False, device="cpu", amp="bf16")
    assert bf16.amp == "off" and torch.equal(bf16.video_probs, off.video_probs)
    assert any("mixed precision runs on CUDA only" in r.getMessage() for r in caplog.records)
    assert resolve_amp(None, torch.device("cpu")) is None


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a machine without CUDA")
def test_cuda_without_cuda_is_a_one_line_config_error(model, few):
    for device in ("cuda", "cuda:0"):
        with pytest.raises(ConfigError) as info:
            evaluate(model, few, num_workers=0, device=device)
        assert len(str(info.value).splitlines()) == 1 and "CUDA is not available" in str(info.value)


def test_bad_device_and_amp_are_config_errors(model, few):
    with pytest.raises(ConfigError, match="device 'gpu0': expected 'auto', 'cpu', 'cuda' or 'cuda:N'"):
        resolve_device("gpu0")
    with pytest.raises(ConfigError, match="amp must be 'off', 'bf16' or 'fp16'"):
        evaluate(model, few, num_workers=0, amp="fp8")
    assert resolve_device("auto", model) == torch.device("cpu")
    if not torch.cuda.is_available():
        assert resolve_device("auto") == torch.device("cpu")


def test_distributed_without_a_process_group_is_a_config_error(model, few):
    with pytest.raises(ConfigError, match="needs an initialised process group"):
        evaluate(model, few, num_workers=0, distributed=True)
    assert evaluate(model, few, num_workers=0, count_cost=False, distributed=None).world_size == 1


def test_progress_bar_when_asked_or_on_a_terminal(model, few, capsys, monkeypatch):
    evaluate(model, few, num_workers=0, count_cost=False)
    evaluate(model, few, num_workers=0, count_cost=False, progress=None)  # stderr is not a terminal here
    assert capsys.readouterr().err == ""
    evaluate(model, few, num_workers=0, count_cost=False, progress=True)
    assert "eval:" in capsys.readouterr().err
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    evaluate(model, few, num_workers=0, count_cost=False, progress=None)
    assert "/4 [" in capsys.readouterr().err


def test_batch_size_must_be_a_positive_number_of_views(model, few):
    with pytest.raises(ConfigError, match="batch_size must be a positive number of views"):
        evaluate(model, few, num_workers=0, batch_size=0)

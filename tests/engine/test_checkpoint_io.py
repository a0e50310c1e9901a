"""Checkpoints: round trip, training state with RNG under weights_only, atomic saves, clear errors."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from effvid.engine.checkpoint import (
    epoch_stem,
    find_last_complete,
    load_checkpoint,
    load_model,
    load_training_state,
    save_checkpoint,
    set_rng_state,
    training_state,
)
from effvid.engine.schedules import ScheduleConfig, build_lr_scheduler
from effvid.errors import CheckpointError
from effvid.models.base import ModelBase
from effvid.models.registry import create_from_spec, register_model
from effvid.spec import ArchSpec


class TinyClassifier(ModelBase):
    def __init__(self, spec: ArchSpec) -> None:
        super().__init__()
        self.conv = nn.Conv3d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm3d(4)
        self.fc = nn.Linear(4, spec.num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.bn(self.conv(x)))

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc(features.mean(dim=(2, 3, 4)))


SPEC = ArchSpec(name="engine_checkpoint_tiny", num_classes=3, num_frames=2, crop_size=8)
register_model(SPEC.name, default_spec=SPEC, kind="3d", spatial_stride=1)(TinyClassifier)
CLASSES = ["walk", "run", "jump"]


def _trained(steps: int = 2):
    model = create_from_spec(SPEC)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sched = build_lr_scheduler(opt, ScheduleConfig(warmup_epochs=1), total_epochs=3, iters_per_epoch=2)
    for _ in range(steps):
        loss = model(torch.randn(2, 3, 2, 8, 8)).logsumexp(1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return model, opt, sched


def _draws() -> tuple[list[float], list[float], list[float]]:
    return [random.random() for _ in range(3)], np.random.rand(3).tolist(), torch.rand(3).tolist()


def test_round_trip_weights_sidecar_and_model(tmp_path: Path) -> None:
    model, opt, sched = _trained()
    sidecar = save_checkpoint(epoch_stem(tmp_path, 2), model=model, class_names=CLASSES,
                              transforms={"test_short_side": 9}, metrics={"video_top1": 0.5}, epoch=2,
                              extra={"stage": "joint"})
    assert sidecar == tmp_path / "checkpoints" / "epoch_0002.json"
    state, meta = load_checkpoint(sidecar)
    assert state.keys() == model.state_dict().keys()
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert meta["format"] == "effvid-checkpoint" and meta["version"] == 1
    assert ArchSpec.from_dict(meta["spec"]) == SPEC
    assert meta["class_names"] == CLASSES and meta["transforms"] == {"test_short_side": 9}
    assert meta["metrics"] == {"video_top1": 0.5} and meta["epoch"] == 2 and meta["extra"] == {"stage": "joint"}
    assert meta["git_revision"] is None or len(meta["git_revision"]) == 40
    assert meta["created"].startswith("20")
    rebuilt = load_model(tmp_path / "checkpoints" / "epoch_0002.safetensors")
    assert rebuilt.spec == SPEC and not rebuilt.training
    x = torch.randn(2, 3, 2, 8, 8)
    assert torch.allclose(rebuilt(x), model.eval()(x))


def test_training_state_restores_optimizer_scheduler_and_random_streams(tmp_path: Path) -> None:
    model, opt, sched = _trained()
    scaler = torch.amp.GradScaler("cpu", enabled=True)
    stem = tmp_path / "ckpt"
    save_checkpoint(stem, model=model, epoch=1,
                    state=training_state(epoch=1, optimizer=opt, scheduler=sched, scaler=scaler, extra={"step": 2}))
    expected_draws = _draws()
    x = torch.randn(2, 3, 2, 8, 8)
    model.train()
    loss = model(x).logsumexp(1).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
    sched.step()
    expected_weights = {k: v.clone() for k, v in model.state_dict().items()}

    state = load_training_state(stem)  # weights_only=True inside
    assert state["epoch"] == 1 and state["extra"] == {"step": 2}
    set_rng_state(state["rng"])
    assert _draws() == expected_draws
    weights, _ = load_checkpoint(stem)
    model2, opt2, sched2 = _trained(steps=0)
    model2.load_state_dict(weights)
    opt2.load_state_dict(state["optimizer"])
    sched2.load_state_dict(state["scheduler"])
    torch.amp.GradScaler("cpu").load_state_dict(state["scaler"])
    model2.train()
    loss = model2(x).logsumexp(1).mean()
    opt2.zero_grad()
    loss.backward()
    opt2.step()
    sched2.step()
    assert all(torch.allclose(expected_weights[k], v) for k, v in model2.state_dict().items())
    assert opt2.param_groups[0]["lr"] == pytest.approx(opt.param_groups[0]["lr"])


def test_find_last_complete_skips_incomplete_and_stateless(tmp_path: Path) -> None:
    model = create_from_spec(SPEC)
    assert find_last_complete(tmp_path) is None
    for epoch in (1, 2, 3):
        save_checkpoint(epoch_stem(tmp_path, epoch), model=model, epoch=epoch,
                        state=training_state(epoch=epoch) if epoch < 3 else None)
    assert find_last_complete(tmp_path) == epoch_stem(tmp_path, 2)
    assert find_last_complete(tmp_path, require_state=False) == epoch_stem(tmp_path, 3)
    epoch_stem(tmp_path, 2).with_suffix(".json").unlink()
    assert find_last_complete(tmp_path) == epoch_stem(tmp_path, 1)


CRASHING_SAVE = textwrap.dedent("""
    import os, signal, sys, torch
    from effvid.engine.checkpoint import epoch_stem, save_checkpoint, training_state
    crash_at, calls, real_replace = int(sys.argv[2]), [], os.replace
    def replace(src, dst):
        calls.append(dst)
        if len(calls) == crash_at:
            os.kill(os.getpid(), signal.SIGKILL)  # a real crash between temp write and rename
        real_replace(src, dst)
    os.replace = replace
    save_checkpoint(epoch_stem(sys.argv[1], 2), model={"w": torch.full((4,), 2.0)}, epoch=2,
                    state=training_state(epoch=2))
""")


def test_a_crash_mid_save_leaves_the_previous_checkpoint_and_no_complete_half(tmp_path: Path) -> None:
    crash_at = 3  # weights and state of epoch 2 are in place; the process dies before the sidecar's rename
    save_checkpoint(epoch_stem(tmp_path, 1), model={"w": torch.full((4,), 1.0)}, epoch=1, state=training_state(epoch=1))
    result = subprocess.run([sys.executable, "-c", CRASHING_SAVE, str(tmp_path), str(crash_at)], capture_output=True)
    assert result.returncode == -9, result.stderr.decode()[-2000:]
    assert find_last_complete(tmp_path) == epoch_stem(tmp_path, 1)
    weights, meta = load_checkpoint(epoch_stem(tmp_path, 1))
    assert torch.equal(weights["w"], torch.full((4,), 1.0)) and meta["epoch"] == 1
    assert not epoch_stem(tmp_path, 2).with_suffix(".json").exists()
    with pytest.raises(CheckpointError):
        load_checkpoint(epoch_stem(tmp_path, 2))


def test_overwriting_a_stem_replaces_it_consistently(tmp_path: Path) -> None:
    stem = tmp_path / "best"
    save_checkpoint(stem, model={"w": torch.zeros(2)}, metrics={"top1": 0.1})
    save_checkpoint(stem, model={"w": torch.ones(2)}, metrics={"top1": 0.9})
    weights, meta = load_checkpoint(stem)
    assert torch.equal(weights["w"], torch.ones(2)) and meta["metrics"] == {"top1": 0.9}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.json", "best.safetensors"]


def test_corrupt_and_foreign_files_raise_clear_checkpoint_errors(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    stem = tmp_path / "ok"
    save_checkpoint(stem, model=create_from_spec(SPEC), state=training_state(epoch=0))
    weights = tmp_path / "ok.safetensors"
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"ok\.safetensors: corrupt"):
        load_checkpoint(stem)

    state_file = tmp_path / "ok.state.pt"
    state_file.write_bytes(state_file.read_bytes()[:100])
    with pytest.raises(CheckpointError, match=r"ok\.state\.pt: corrupt"):
        load_training_state(stem)

    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign))
    with pytest.raises(CheckpointError, match=r"foreign\.safetensors: not a complete effvid checkpoint"):
        load_checkpoint(foreign)

    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(CheckpointError, match=r"notes\.txt: not an effvid checkpoint"):
        load_checkpoint(text)

    (tmp_path / "other.json").write_text(json.dumps({"format": "someone-else"}))
    (tmp_path / "other.safetensors").write_bytes(foreign.read_bytes())
    with pytest.raises(CheckpointError, match=r"other\.json: not an effvid checkpoint sidecar"):
        load_checkpoint(tmp_path / "other.safetensors")

    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing")


def test_weights_that_do_not_fit_the_spec_are_a_checkpoint_error(tmp_path: Path) -> None:
    stem = tmp_path / "mismatch"
    save_checkpoint(stem, model=create_from_spec(SPEC), spec=SPEC.replace(num_classes=5))
    with pytest.raises(CheckpointError, match=r"mismatch\.safetensors: weights do not fit engine_checkpoint_tiny"):
        load_model(stem)

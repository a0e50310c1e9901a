"""Checkpoints and training states that are inconsistent are refused with one line naming the file,
before anything deep inside torch or a command trips over them, and nothing on disk changes."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
from torch import nn

from effvid.cli import main
from effvid.engine.checkpoint import (
    epoch_stem,
    load_optimizer_state,
    load_training_state,
    read_sidecar,
    save_checkpoint,
    training_state,
    verify_weights,
)
from effvid.errors import CheckpointError
from effvid.models.base import ModelBase
from effvid.models.registry import create_from_spec, register_model
from effvid.spec import ArchSpec


class TinyClassifier(ModelBase):
    def __init__(self, spec: ArchSpec) -> None:
        super().__init__()
        self.conv = nn.Conv3d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, spec.num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv(x))

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc(features.mean(dim=(2, 3, 4)))


SPEC = ArchSpec(name="engine_checkpoint_errors_tiny", num_classes=3, num_frames=2, crop_size=8)
register_model(SPEC.name, default_spec=SPEC, kind="3d", spatial_stride=1)(TinyClassifier)


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def _one_line(capsys, code: int, *needles: str) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def _edit_sidecar(stem: Path, **fields) -> Path:
    sidecar = stem.with_name(stem.name + ".json")
    meta = json.loads(sidecar.read_text())
    meta.update(fields)
    sidecar.write_text(json.dumps(meta))
    return sidecar


def _trained_sgd(model: nn.Module) -> torch.optim.Optimizer:
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(2, 3, 2, 8, 8)).sum().backward()
    opt.step()
    return opt


@pytest.fixture
def stem(tmp_path: Path) -> Path:
    model = create_from_spec(SPEC)
    stem = epoch_stem(tmp_path / "run", 2)
    save_checkpoint(stem, model=model, class_names=["walk", "run", "jump"], epoch=2,
                    state=training_state(epoch=2, optimizer=_trained_sgd(model)))
    return stem


# --- sidecars


@pytest.mark.parametrize("spec", ["r2plus1d_18", ["r2plus1d_18", 3], 7], ids=["string", "list", "number"])
def test_a_spec_that_is_not_an_object_names_the_sidecar(stem, spec, tmp_path, capsys):
    sidecar = _edit_sidecar(stem, spec=spec)
    before = _digests(stem.parent)
    with pytest.raises(CheckpointError, match=r"epoch_0002\.json: 'spec' must be an object"):
        read_sidecar(stem)
    _one_line(capsys, main(["flops", str(stem)]), str(sidecar), "'spec'")
    _one_line(capsys, main(["eval", str(stem), "--data", str(tmp_path / "x.txt")]), str(sidecar), "'spec'")
    assert _digests(stem.parent) == before


def test_a_spec_object_that_is_not_an_archspec_names_the_sidecar_and_field(stem):
    _edit_sidecar(stem, spec={**SPEC.to_dict(), "colour": "red"})
    with pytest.raises(CheckpointError, match=r"epoch_0002\.json: 'spec' is not a valid ArchSpec: .*colour"):
        read_sidecar(stem)
    _edit_sidecar(stem, spec={**SPEC.to_dict(), "train_resize": 5})
    with pytest.raises(CheckpointError, match=r"epoch_0002\.json: 'spec' is not a valid ArchSpec"):
        read_sidecar(stem)


def test_class_names_shorter_than_the_classes_are_refused_at_load(stem, tmp_path, capsys):
    """Chosen over falling back to index names: names that cannot be matched to outputs would mislabel."""
    sidecar = _edit_sidecar(stem, class_names=["walk", "run"])
    with pytest.raises(CheckpointError, match=r"'class_names' lists 2 names but the spec has num_classes 3"):
        read_sidecar(stem)
    video = tmp_path / "v.mp4"
    video.write_bytes(b"not decoded: the checkpoint is refused first")
    _one_line(capsys, main(["predict", str(stem), str(video)]), str(sidecar), "class_names", "num_classes 3")


@pytest.mark.parametrize("names", ["walk,run,jump", ["walk", 1, "jump"], {"0": "walk"}], ids=["string", "number", "dict"])
def test_class_names_must_be_a_list_of_strings(stem, names):
    _edit_sidecar(stem, class_names=names)
    with pytest.raises(CheckpointError, match=r"epoch_0002\.json: 'class_names' must be a list of strings"):
        read_sidecar(stem)


def test_no_class_names_means_index_names(stem):
    _edit_sidecar(stem, class_names=[])
    assert read_sidecar(stem)["class_names"] == []
    _edit_sidecar(stem, class_names=None)
    assert read_sidecar(stem)["class_names"] == []


# --- weights checked where only the sidecar is read (effvid flops)


def test_flops_verifies_the_weights_checksum(stem, capsys):
    weights = stem.with_name(stem.name + ".safetensors")
    assert verify_weights(stem)["spec"]["name"] == SPEC.name
    assert main(["flops", str(stem), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["spec"]["name"] == SPEC.name

    intact = weights.read_bytes()
    weights.write_bytes(intact[: len(intact) // 2])  # truncated
    _one_line(capsys, main(["flops", str(stem)]), str(weights), "corrupt", "checksum")
    altered = bytearray(intact)
    altered[-3] ^= 0xFF
    weights.write_bytes(bytes(altered))
    _one_line(capsys, main(["flops", str(weights)]), str(weights), "corrupt")
    weights.unlink()
    _one_line(capsys, main(["flops", str(stem)]), str(weights), "missing")


# --- training states


def _rewrite_state(stem: Path, **changes) -> Path:
    path = stem.with_name(stem.name + ".state.pt")
    state = torch.load(path, weights_only=True)
    state.update(changes)
    torch.save(state, path)
    return path


def test_a_state_claiming_another_epoch_is_refused(stem):
    _rewrite_state(stem, epoch=99)
    with pytest.raises(CheckpointError, match=r"epoch_0002\.state\.pt: the training state says epoch 99 but the "
                                              r"checkpoint is epoch_0002"):
        load_training_state(stem)


def test_a_state_disagreeing_with_its_sidecar_is_refused(tmp_path):
    model = create_from_spec(SPEC)
    stem = tmp_path / "ckpt"
    save_checkpoint(stem, model=model, epoch=4, state=training_state(epoch=5, optimizer=_trained_sgd(model)))
    with pytest.raises(CheckpointError, match=r"ckpt\.state\.pt: the training state says epoch 5 but its sidecar"):
        load_training_state(stem)


@pytest.mark.parametrize(
    "changes, needle",
    [({"epoch": "2"}, "'epoch' must be a non-negative integer"),
     ({"epoch": True}, "'epoch' must be a non-negative integer"),
     ({"optimizer": None}, "'optimizer' must be an optimizer state dict"),
     ({"optimizer": {"state": {}}}, "'optimizer' must be an optimizer state dict"),
     ({"optimizer": {"state": [], "param_groups": []}}, "'optimizer' must be an optimizer state dict"),
     ({"scheduler": [1, 2]}, "'scheduler' must be a mapping"),
     ({"version": 7}, "training state version 7 is not supported"),
     ({"format": "someone-else"}, "not an effvid training state")],
    ids=["epoch-str", "epoch-bool", "no-optimizer", "no-param-groups", "state-list", "scheduler-list", "version",
         "format"],
)
def test_a_malformed_state_names_the_file(stem, changes, needle):
    before = _digests(stem.parent)
    path = _rewrite_state(stem, **changes)
    before[path.name] = hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(CheckpointError) as exc:
        load_training_state(stem)
    assert str(exc.value).startswith(f"{path}: ") and needle in str(exc.value)
    assert _digests(stem.parent) == before


def test_a_state_without_optimizer_loads_when_none_is_required(tmp_path):
    stem = tmp_path / "ckpt"
    save_checkpoint(stem, model=create_from_spec(SPEC), epoch=1, state=training_state(epoch=1))
    assert load_training_state(stem, require_optimizer=False)["optimizer"] is None
    with pytest.raises(CheckpointError, match="'optimizer' must be an optimizer state dict"):
        load_training_state(stem)


# --- optimizer states against the configured optimizer


def test_load_optimizer_state_restores_a_matching_optimizer(stem):
    state = load_training_state(stem)
    opt = torch.optim.SGD(create_from_spec(SPEC).parameters(), lr=0.5, momentum=0.9)
    load_optimizer_state(opt, state, stem)
    assert opt.param_groups[0]["lr"] == 0.1 and len(opt.state) == len(state["optimizer"]["state"])


@pytest.mark.parametrize("configured", ["adamw", "adam"])
def test_an_sgd_state_does_not_fit_adam(stem, configured):
    state = load_training_state(stem)
    make = {"adamw": torch.optim.AdamW, "adam": torch.optim.Adam}[configured]
    opt = make(create_from_spec(SPEC).parameters(), lr=0.003)
    with pytest.raises(CheckpointError) as exc:
        load_optimizer_state(opt, state, stem)
    message = str(exc.value)
    assert message.startswith(f"{stem}.state.pt: the training state holds an optimizer state that does not fit "
                              "the configured optimizer")
    assert type(opt).__name__ in message and "saved by SGD" in message
    assert message.endswith("; use a new run_dir or resume: never")
    assert opt.param_groups[0]["lr"] == 0.003 and not opt.state  # left as it was


def test_an_adamw_state_does_not_fit_sgd(tmp_path):
    """torch accepts this one in load_state_dict and fails only at the first step (KeyError 'momentum')."""
    model = create_from_spec(SPEC)
    adamw = torch.optim.AdamW(model.parameters(), lr=0.003)
    model(torch.randn(2, 3, 2, 8, 8)).sum().backward()
    adamw.step()
    stem = tmp_path / "ckpt"
    save_checkpoint(stem, model=model, epoch=1, state=training_state(epoch=1, optimizer=adamw))
    sgd = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    with pytest.raises(CheckpointError, match=r"ckpt\.state\.pt: .*\(SGD; saved by an Adam-type optimizer: the "
                                              r"saved state lacks dampening, momentum"):
        load_optimizer_state(sgd, load_training_state(stem), stem)
    assert sgd.param_groups[0]["momentum"] == 0.9 and not sgd.state


def test_a_state_for_other_parameters_does_not_fit(stem):
    state = load_training_state(stem)
    opt = torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.1, momentum=0.9)
    with pytest.raises(CheckpointError, match=r"epoch_0002\.state\.pt: the training state holds an optimizer state "
                                              r"that does not fit"):
        load_optimizer_state(opt, state, stem)


# --- through the trainer: a resumed run refuses a state that lies about its epoch


def test_resuming_from_a_state_that_claims_epoch_99_is_one_line(write_config, subset_annotation, tmp_path, capsys):
    config = write_config(subset_annotation(4), epochs=2, batch_size=4, max_steps_per_epoch=1)
    assert main(["train", str(config)]) == 0
    run_dir = tmp_path / "run"
    path = _rewrite_state(epoch_stem(run_dir, 2), epoch=99)
    before = _digests(run_dir / "checkpoints")
    metrics = (run_dir / "metrics.jsonl").read_bytes()
    capsys.readouterr()
    code = main(["train", str(config)])
    err = capsys.readouterr().err
    errors = [line for line in err.strip().splitlines() if line.startswith("effvid: error:")]
    assert code == 2 and "Traceback" not in err and len(errors) == 1, err  # the trainer's INFO lines may precede it
    assert err.strip().splitlines()[-1] == errors[0]
    assert str(path) in errors[0] and "epoch 99" in errors[0] and "epoch_0002" in errors[0]
    assert _digests(run_dir / "checkpoints") == before and (run_dir / "metrics.jsonl").read_bytes() == metrics

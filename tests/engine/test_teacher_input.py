"""``distill.teacher_input``: the teacher sees the student's clip (``student``) or the same moment at
its own checkpoint's geometry (``base``); a student copied from its teacher then gets a KD signal."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from effvid.engine.losses import DistillConfig, FrozenTeacher
from effvid.engine.train_config import load_train_config
from effvid.engine.trainer import train
from effvid.errors import ConfigError

REDUCED = {"crop_size": 24, "train_resize": [24, 24], "test_resize": 24}  # the tiny model's input / 1.33


@pytest.fixture
def teacher_inputs(monkeypatch) -> list[tuple[int, ...]]:
    """The shapes of the clips every FrozenTeacher is called with, in order."""
    shapes: list[tuple[int, ...]] = []
    real = FrozenTeacher.__call__

    def recording(self, inputs):
        shapes.append(tuple(inputs.shape))
        return real(self, inputs)

    monkeypatch.setattr(FrozenTeacher, "__call__", recording)
    return shapes


@pytest.fixture
def teacher(subset_annotation, write_config, tmp_path) -> tuple[Path, str]:
    """A 4-video training list and a tiny teacher trained on it for one epoch (its checkpoint stem)."""
    subset = subset_annotation(4)
    config = write_config(subset, None, name="teacher.yaml", epochs=1, run_dir=str(tmp_path / "teacher"))
    return subset, train(load_train_config(config), progress=False).last_checkpoint


def first_step_kd(write_config, tmp_path, subset: Path, teacher: str, mode: str, **model) -> float:
    """The KD term of a student copied from ``teacher`` (input reduced by ``model``), at its first step."""
    config = write_config(subset, None, name=f"{mode}.yaml", epochs=1, run_dir=str(tmp_path / mode),
                          max_steps_per_epoch=1, init_from=teacher, init_lr_scale=1e-9, model=model,
                          distill={"teacher": teacher, "teacher_input": mode})
    train(load_train_config(config), progress=False)
    record = json.loads((tmp_path / mode / "metrics.jsonl").read_text().splitlines()[0])
    return record["train"]["kd"]


def test_base_mode_feeds_the_teacher_its_own_geometry(teacher, teacher_inputs, write_config, tmp_path):
    subset, stem = teacher
    student_kd = first_step_kd(write_config, tmp_path, subset, stem, "student", **REDUCED)
    assert teacher_inputs == [(4, 3, 4, 24, 24)]  # the student's clip
    teacher_inputs.clear()
    base_kd = first_step_kd(write_config, tmp_path, subset, stem, "base", **REDUCED)
    assert teacher_inputs == [(4, 3, 4, 32, 32)]  # the teacher checkpoint's crop
    # The copied student and its teacher agree exactly on the same clip; on the full one they do not.
    assert student_kd < 1e-9 < base_kd


def test_base_mode_gives_the_teacher_its_frames_when_the_student_has_fewer(teacher, teacher_inputs, write_config,
                                                                          tmp_path):
    subset, stem = teacher
    first_step_kd(write_config, tmp_path, subset, stem, "base", num_frames=2)
    assert teacher_inputs == [(4, 3, 4, 32, 32)]


def test_teacher_input_is_checked():
    assert DistillConfig().teacher_input == "student"
    with pytest.raises(ConfigError, match=r"^distill.teacher_input must be 'student' or 'base', got 'full'$"):
        DistillConfig(teacher="t", teacher_input="full")

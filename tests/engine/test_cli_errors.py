"""CLI user errors: one line on stderr naming the key, value or file, exit status 2, no traceback.

Most cases call :func:`effvid.cli.main` in-process (the same code path as the console script);
one runs the real ``effvid`` process to check the exit status and stderr seen from outside.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass

import pytest

from effvid.cli import main


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def effvid(capsys):
    def run(*args: str) -> Result:
        capsys.readouterr()
        try:
            code = main(list(args))
        except SystemExit as exc:  # argparse (--help, usage errors)
            code = exc.code
        out = capsys.readouterr()
        return Result(code, out.out, out.err)

    return run


def assert_one_line_error(result, *needles: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_real_process_exit_code_and_single_line(tmp_path):
    missing = tmp_path / "nope.yaml"
    result = subprocess.run([sys.executable, "-m", "effvid.cli", "train", str(missing)], capture_output=True,
                            text=True, timeout=300)
    assert_one_line_error(result, str(missing), "not found")


def test_unknown_config_key_names_key_and_file(write_config, tmp_path, effvid):
    config = write_config(tmp_path / "train.txt", optim={"name": "sgd", "lr": 0.1, "lr_warmup": 3})
    assert_one_line_error(effvid("train", str(config)), "optim.lr_warmup", str(config))


def test_wrong_type_names_key_and_value(write_config, tmp_path, effvid):
    config = write_config(tmp_path / "train.txt", batch_size="eight")
    assert_one_line_error(effvid("train", str(config)), "batch_size", "'eight'")


def test_bad_override_names_override(write_config, tmp_path, effvid):
    config = write_config(tmp_path / "train.txt")
    assert_one_line_error(effvid("train", str(config), "optim.lr=fast"), "optim.lr=fast")
    assert_one_line_error(effvid("train", str(config), "model.colour=red"), "model.colour")


def test_missing_config_file(tmp_path, effvid):
    missing = tmp_path / "nope.yaml"
    assert_one_line_error(effvid("train", str(missing)), str(missing), "not found")


def test_missing_annotation_file(write_config, tmp_path, effvid):
    config = write_config(tmp_path / "absent_train.txt")
    assert_one_line_error(effvid("train", str(config)), "absent_train.txt")


def test_eval_and_predict_missing_checkpoint(tmp_path, effvid):
    missing = tmp_path / "ghost.safetensors"
    assert_one_line_error(effvid("eval", str(missing), "--data", str(tmp_path / "x.txt")), "ghost", "not found")
    video = tmp_path / "v.mp4"
    assert_one_line_error(effvid("predict", str(missing), str(video)), str(video), "no such file")
    video.write_bytes(b"not a video")
    assert_one_line_error(effvid("predict", str(missing), str(video)), "ghost", "not found")


@pytest.mark.parametrize("views", ["3", "2x2", "axb"])
def test_bad_views_rejected(tmp_path, views, effvid):
    assert_one_line_error(effvid("predict", str(tmp_path / "c"), str(tmp_path / "v.mp4"), "--views", views), views)


@pytest.mark.parametrize("command", ["train", "eval", "predict", "demo"])
def test_help(command, effvid):
    result = effvid(command, "--help")
    assert result.returncode == 0 and "usage: effvid " + command in result.stdout

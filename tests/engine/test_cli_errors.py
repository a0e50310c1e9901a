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


# --- argument errors: one line naming the subcommand, option and value; exit 2; no usage block


@pytest.mark.parametrize(
    "argv, needles",
    [
        (["eval", "ck", "--batch-size", "0"], ["eval", "--batch-size", "'0'", ">= 1"]),
        (["eval", "ck", "--workers", "-1"], ["eval", "--workers", "'-1'", ">= 0"]),
        (["eval", "ck", "--batch-size", "eight"], ["--batch-size", "'eight'"]),
        (["predict", "ck", "v.mp4", "--topk", "0"], ["predict", "--topk", "'0'"]),
        (["data", "check", "a.txt", "--workers", "0"], ["data check", "--workers", "'0'"]),
        (["data", "check", "a.txt", "--split", "-2"], ["data check", "--split", "'-2'"]),
        (["synth", "out", "--workers", "0"], ["synth", "--workers", "'0'"]),
        (["synth", "out", "--seed", "-1"], ["synth", "--seed", "'-1'"]),
        (["flops", "r2plus1d_18", "--frames", "0"], ["flops", "--frames", "'0'"]),
        (["flops", "r2plus1d_18", "--size", "1.5"], ["flops", "--size", "'1.5'"]),
        (["flops", "r2plus1d_18", "--classes", "0"], ["flops", "--classes", "'0'"]),
        (["flops", "r2plus1d_18", "--width", "0"], ["flops", "--width", "'0'", "> 0"]),
        (["flops", "r2plus1d_18", "--depth", "nan"], ["flops", "--depth", "'nan'"]),
        (["eval", "ck", "--bogus"], ["eval", "unrecognized arguments: --bogus"]),
        (["predict", "ck"], ["predict", "required", "VIDEO"]),
        (["data"], ["data", "required", "SUBCOMMAND"]),
        (["nosuchcommand"], ["invalid choice", "'nosuchcommand'"]),
        (["synth", "out", "--preset", "huge"], ["synth", "--preset", "'huge'"]),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) and v and v[0] not in ("eval", ">= 1") else None,
)
def test_argument_errors_are_one_line_naming_option_and_value(argv, needles, tmp_path, monkeypatch, effvid):
    monkeypatch.chdir(tmp_path)
    result = effvid(*argv)
    assert_one_line_error(result, *needles)
    assert result.stderr.startswith("effvid: error: ") and "usage:" not in result.stderr
    assert result.stdout == ""
    assert list(tmp_path.iterdir()) == []  # refused before anything ran: no output folder, no file


def test_argument_error_of_the_real_process_is_one_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "effvid.cli", "eval", str(tmp_path / "ck"), "--batch-size", "0"],
                            capture_output=True, text=True, timeout=300)
    assert_one_line_error(result, "eval: argument --batch-size", "'0'")
    assert "usage:" not in result.stderr and result.stdout == ""


def test_synth_into_an_existing_file_is_one_line_and_leaves_the_file(tmp_path, effvid):
    out = tmp_path / "notes.txt"
    out.write_text("keep me")
    assert_one_line_error(effvid("synth", str(out), "--preset", "tiny"), str(out), "existing file")
    assert out.read_text() == "keep me" and sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
    assert_one_line_error(effvid("synth", str(out / "sub"), "--preset", "tiny"), str(out / "sub"), str(out),
                          "existing file")
    assert out.read_text() == "keep me" and sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]

"""``--json`` errors: one JSON object ``{"error", "exit"}`` on stdout and the same one line on stderr.

A script that reads stdout always gets one JSON object, whether the command worked, the user
made a mistake (exit 2), or it was interrupted (exit 130) or terminated (exit 143).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from effvid.cli import main


def run_main(capsys, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def assert_json_error(code: int, stdout: str, stderr: str, status: int, *needles: str) -> dict:
    assert code == status, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    assert len(stdout.strip().splitlines()) == 1, stdout
    obj = json.loads(stdout)
    assert set(obj) == {"error", "exit"} and obj["exit"] == status
    assert obj["error"] in lines[0]  # the same message on both streams
    for needle in needles:
        assert needle in obj["error"], obj["error"]
    return obj


def test_eval_of_a_missing_checkpoint(tmp_path, capsys):
    missing = tmp_path / "missing.json"
    code, out, err = run_main(capsys, "eval", str(missing), "--json")
    assert_json_error(code, out, err, 2, str(missing), "not found")
    assert err.startswith("effvid: error: ")


def test_flops_of_an_unknown_model(capsys):
    code, out, err = run_main(capsys, "flops", "nosuchmodel", "--json")
    assert_json_error(code, out, err, 2, "nosuchmodel", "known models")


def test_an_argument_error_with_json(tmp_path, capsys):
    code, out, err = run_main(capsys, "eval", str(tmp_path / "ck"), "--batch-size", "0", "--json")
    assert_json_error(code, out, err, 2, "--batch-size", "'0'")


def test_without_json_stdout_stays_empty(capsys):
    code, out, err = run_main(capsys, "flops", "nosuchmodel")
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1


def test_a_multi_line_message_is_folded_into_one_line(monkeypatch, capsys):
    from effvid.commands import models
    from effvid.errors import EffvidError

    def broken(args):
        raise EffvidError("first line\n  second line")

    monkeypatch.setattr(models, "run", broken)
    code, out, err = run_main(capsys, "models", "--json")
    assert_json_error(code, out, err, 2, "first line second line")


@pytest.mark.parametrize("raised, status, needle", [(KeyboardInterrupt(), 130, "interrupted"),
                                                     (SystemExit(143), 143, "SIGTERM")], ids=["sigint", "sigterm"])
def test_interrupt_and_terminate_with_json(monkeypatch, capsys, raised, status, needle):
    from effvid.commands import models

    def interrupted(args):
        raise raised

    monkeypatch.setattr(models, "run", interrupted)
    code, out, err = run_main(capsys, "models", "--json")
    assert_json_error(code, out, err, status, needle)
    monkeypatch.setattr(models, "run", interrupted)
    code, out, err = run_main(capsys, "models")
    assert code == status and out == "" and len(err.strip().splitlines()) == 1


def test_other_exits_and_bugs_are_left_alone(monkeypatch, capsys):
    from effvid.commands import models

    def bug(args):
        raise RuntimeError("a bug keeps its traceback")

    monkeypatch.setattr(models, "run", bug)
    with pytest.raises(RuntimeError, match="a bug"):
        main(["models", "--json"])
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0


def test_real_process(tmp_path):
    missing = tmp_path / "missing.json"
    result = subprocess.run([sys.executable, "-m", "effvid.cli", "eval", str(missing), "--json"],
                            capture_output=True, text=True, timeout=300)
    assert_json_error(result.returncode, result.stdout, result.stderr, 2, str(missing))

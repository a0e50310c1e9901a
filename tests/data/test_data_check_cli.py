"""`effvid data check`: exit codes 0/1/2, the JSON report, the human tables, the console script."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.util import find_spec
from pathlib import Path

import pytest
from PIL import Image

from effvid.cli import main
from effvid.data.annotations import load_annotations
from effvid.data.check import SUMMARY_FIELDS, check_dataset
from videotools import index_frame

WITH_DECORD = pytest.param(
    "decord", marks=pytest.mark.skipif(find_spec("decord") is None, reason="decord is not installed")
)


def write_list(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(f"{line}\n" for line in lines))
    return path


@pytest.fixture
def dataset(tmp_path, make_index_video) -> Path:
    """An mmaction list over two good videos (20 and 30 frames), a truncated one and a missing one."""
    make_index_video("videos/a.mp4", num_frames=20)
    make_index_video("videos/b.mp4", num_frames=30, fps=30.0)
    data = make_index_video("whole.mp4", num_frames=30).read_bytes()
    (tmp_path / "videos" / "cut.mp4").write_bytes(data[: len(data) // 2])
    return write_list(tmp_path / "list.txt", ["a.mp4 0", "b.mp4 1", "cut.mp4 0", "gone.mp4 1"])


@pytest.mark.parametrize("backend", ["pyav", WITH_DECORD])
def test_json_report_counts_problems_and_summaries(dataset, tmp_path, capsys, backend):
    root = tmp_path / "videos"
    status = main(["data", "check", str(dataset), "--root", str(root), "--backend", backend, "--workers", "2",
                   "--json"])
    report = json.loads(capsys.readouterr().out)
    assert status == 1
    assert (report["total"], report["ok"], report["bad"]) == (4, 2, 2)
    reasons = {problem["path"]: problem["reason"] for problem in report["problems"]}
    assert set(reasons) == {str(root / "cut.mp4"), str(root / "gone.mp4")}
    assert reasons[str(root / "gone.mp4")] == "file not found"
    assert reasons[str(root / "cut.mp4")].startswith("cannot open")
    assert report["summaries"]["num_frames"] == {"min": 20, "median": 25, "max": 30}
    assert report["summaries"]["fps"]["min"] == pytest.approx(25.0)
    assert report["summaries"]["fps"]["max"] == pytest.approx(30.0)
    assert set(report["summaries"]) == set(SUMMARY_FIELDS)


def test_all_readable_exits_zero_with_tables(tmp_path, make_index_video, capsys):
    make_index_video("videos/a.mp4", num_frames=12)
    listing = write_list(tmp_path / "list.txt", ["a.mp4 0", "a.mp4 1"])  # one file, listed twice
    status = main(["data", "check", str(listing), "--root", str(tmp_path / "videos")])
    out = capsys.readouterr().out
    assert status == 0
    assert "videos: 1  ok: 1  bad: 0" in out
    assert "num_frames" in out and "reason" not in out


def test_human_output_lists_each_problem(dataset, tmp_path, capsys):
    assert main(["data", "check", str(dataset), "--root", str(tmp_path / "videos")]) == 1
    lines = capsys.readouterr().out.splitlines()
    gone = [line for line in lines if line.startswith(str(tmp_path / "videos" / "gone.mp4"))]
    assert len(gone) == 1 and gone[0].endswith("file not found")


def test_raw_frame_list_uses_frame_folders(tmp_path, capsys):
    for name, count in (("v1", 6), ("v2", 4)):
        (tmp_path / "frames" / name).mkdir(parents=True)
        for i in range(count):
            Image.fromarray(index_frame(i)).save(tmp_path / "frames" / name / f"img_{i + 1:05d}.jpg")
    # v2 states more frames than its folder holds: its last frame is missing.
    listing = write_list(tmp_path / "raw.txt", ["v1 6 0", "v2 5 1"])
    status = main(["data", "check", str(listing), "--root", str(tmp_path / "frames"), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert status == 1
    assert report["backend"] == "frames"
    assert report["problems"] == [{"path": str(tmp_path / "frames" / "v2"), "reason": "missing frame file img_00005.jpg"}]


@pytest.mark.parametrize(
    "extra",
    [["--format", "nosuchformat"], ["--backend", "opencv"], ["--workers", "0"]],
    ids=["unknown-format", "unknown-backend", "zero-workers"],
)
def test_usage_errors_exit_two(dataset, tmp_path, capsys, extra):
    assert main(["data", "check", str(dataset), "--root", str(tmp_path / "videos"), *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("effvid: error:") and extra[1] in err


def test_missing_annotation_exits_two(tmp_path, capsys):
    assert main(["data", "check", str(tmp_path / "nothing.txt")]) == 2
    assert "nothing.txt" in capsys.readouterr().err


def test_check_dataset_same_report_for_any_worker_count(dataset, tmp_path):
    annotation = load_annotations(dataset, root=tmp_path / "videos")
    one, two = (check_dataset(annotation, workers=n).to_dict() for n in (1, 2))
    assert one == two
    assert [problem["path"] for problem in one["problems"]] == [str(tmp_path / "videos" / name)
                                                                  for name in ("cut.mp4", "gone.mp4")]


def test_console_script(dataset, tmp_path):
    script = Path(sys.executable).with_name("effvid")
    result = subprocess.run([str(script), "data", "check", str(dataset), "--root", str(tmp_path / "videos"),
                             "--json"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stderr
    assert json.loads(result.stdout)["bad"] == 2


def test_check_dataset_progress_bar_only_when_asked_or_on_a_terminal(dataset, tmp_path, capsys, monkeypatch):
    annotation = load_annotations(dataset, root=tmp_path / "videos")
    quiet = check_dataset(annotation, workers=1).to_dict()
    assert capsys.readouterr().err == ""
    shown = check_dataset(annotation, workers=1, progress=True).to_dict()
    err = capsys.readouterr().err
    assert "check:" in err and "/4 [" in err and shown == quiet
    check_dataset(annotation, workers=1, progress=None)  # stderr is not a terminal here
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    check_dataset(annotation, workers=1, progress=None)
    assert "check:" in capsys.readouterr().err

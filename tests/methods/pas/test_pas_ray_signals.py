"""SIGTERM or SIGINT to a running `effvid shrink` shuts its local Ray instance down and exits at once.

The driver is a real process on the tiny PAS config; the signal lands while a network trains in a
Ray task. It must exit within seconds with the signal's status (143, 130) and one JSON object on
stdout, leave the ledger whole and readable (a rerun resumes from it), and leave no process of
the Ray instance it started: raylet, GCS, agents, workers (after a SIGKILL they would live on
for one to two minutes).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from effvid.config import from_dict
from effvid.engine.train_config import TrainConfig
from effvid.methods.pas.ledger import Ledger

CONFIG = Path(__file__).resolve().parents[3] / "effvid" / "configs" / "pas" / "synth_tiny.yaml"
EXIT_WITHIN_S = 20
GONE_WITHIN_S = 10


def _stat(pid: int) -> tuple[int, str, int] | None:
    """``(ppid, state, start time)`` of a live process from /proc, or None."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()
    return int(fields[1]), fields[0], int(fields[19])


def _processes() -> dict[int, tuple[int, str, int, str]]:
    """Every process: pid -> (ppid, state, start time, command line)."""
    table = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None:
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                cmdline = ""
            table[int(entry.name)] = (*stat, cmdline)
    return table


def _ray_processes_of(driver: int) -> dict[int, tuple[int, str]]:
    """The processes of the Ray instance ``driver`` started: its descendants, and every process of
    the Ray session named after it (``session_<date>_<time>_<usec>_<driver pid>``): pid -> (start time, command)."""
    table = _processes()
    session = re.compile(rf"session_[0-9_-]+_{driver}\b")
    found = {pid for pid, (_, _, _, cmd) in table.items() if session.search(cmd)}
    children: dict[int, list[int]] = {}
    for pid, (ppid, *_rest) in table.items():
        children.setdefault(ppid, []).append(pid)
    stack = list(children.get(driver, []))
    while stack:
        pid = stack.pop()
        found.add(pid)
        stack.extend(children.get(pid, []))
    found.discard(driver)
    return {pid: (table[pid][2], table[pid][3]) for pid in found}


def _alive(processes: dict[int, tuple[int, str]]) -> dict[int, str]:
    """Those of ``processes`` (pid -> (start time, command)) still running (not exited, not a zombie)."""
    alive = {}
    for pid, (start, cmd) in processes.items():
        stat = _stat(pid)
        if stat is not None and stat[2] == start and stat[1] != "Z":
            alive[pid] = cmd
    return alive


def _running_network(ledger_path: Path) -> dict | None:
    """An entry the ledger marks running whose Ray task has started training (its run_dir has files)."""
    try:
        entries = json.loads(ledger_path.read_text())["entries"]
    except (OSError, ValueError, KeyError):
        return None
    for entry in entries:
        run_dir = entry.get("run_dir")
        if entry["status"] == "running" and run_dir and Path(run_dir).is_dir() and any(Path(run_dir).iterdir()):
            return entry
    return None


@pytest.mark.parametrize("signum, status, message", [(signal.SIGTERM, 143, "terminated (SIGTERM)"),
                                                     (signal.SIGINT, 130, "interrupted")], ids=["sigterm", "sigint"])
def test_a_signal_shuts_the_local_ray_down_and_keeps_the_ledger(tiny_data, tmp_path, signum, status, message):
    run_dir = tmp_path / "run"
    ledger_path = run_dir / "ledger.json"
    # long training (many short epochs), so the signal always lands while a Ray task trains
    argv = [sys.executable, "-m", "effvid.cli", "shrink", str(CONFIG), f"run_dir={run_dir}",
            f"data.train={tiny_data / 'train.txt'}", f"data.val={tiny_data / 'val.txt'}", "iterations=1",
            "latency_repeats=0", "train.epochs=200", "train.max_steps_per_epoch=1", "--json"]
    stdout, stderr = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    with open(stdout, "w") as out, open(stderr, "w") as err:
        proc = subprocess.Popen(argv, stdout=out, stderr=err, start_new_session=True)
    ray_processes: dict[int, tuple[int, str]] = {}
    try:
        deadline = time.monotonic() + 240
        entry = None
        while entry is None and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.5)
            entry = _running_network(ledger_path)
        assert entry is not None, f"no network started training: {stderr.read_text()[-3000:]}"
        ray_processes = _ray_processes_of(proc.pid)
        assert any("raylet" in cmd for _, cmd in ray_processes.values()), ray_processes

        sent = time.monotonic()
        os.kill(proc.pid, signum)  # the driver only, as a supervisor or `kill PID` would
        code = proc.wait(timeout=EXIT_WITHIN_S)
        exit_s = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    try:
        err_text = stderr.read_text()
        assert code == status, err_text[-3000:]
        assert exit_s < EXIT_WITHIN_S
        assert "Traceback" not in err_text, err_text[-3000:]
        assert err_text.strip().splitlines()[-1] == f"effvid: {message}"
        assert json.loads(stdout.read_text().strip().splitlines()[-1]) == {"error": message, "exit": status}

        ledger = Ledger(ledger_path)  # whole and readable; the interrupted network resumes on a rerun
        assert ledger.get(entry["id"])["status"] == "running"
        assert not [p.name for p in run_dir.iterdir() if p.name.startswith(".ledger.json.tmp")]

        gone_by = time.monotonic() + GONE_WITHIN_S
        while _alive(ray_processes) and time.monotonic() < gone_by:
            time.sleep(0.5)
        assert not _alive(ray_processes), _alive(ray_processes)
    finally:
        for pid in _alive(ray_processes):  # never leak what this test started, whatever failed above
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


class FakeRay:
    """Just enough of the ``ray`` module for RayRunner, recording what it is asked to do."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def is_initialized(self) -> bool:
        return False

    def init(self, **kwargs) -> None:
        self.calls.append("init")
        signal.signal(signal.SIGTERM, lambda *a: sys.exit(15))  # what ray.init does in a driver

    def remote(self, fn):
        fake = self

        class Remote:
            def options(self, **kwargs):
                return self

            def remote(self, *args):
                fake.calls.append("submit")
                return object()

        return Remote()

    def cancel(self, ref, force: bool = False) -> None:
        self.calls.append("cancel")

    def shutdown(self, wait_for_processes: bool = False) -> None:
        self.calls.append("shutdown")
        os.kill(os.getpid(), signal.SIGINT)  # a second signal while shutting down must not cut it short


@pytest.fixture
def fake_ray(monkeypatch):
    from effvid.methods.pas import runner

    fake = FakeRay()
    monkeypatch.setattr(runner, "ray", fake)
    return fake


def _runner():
    from effvid.methods.pas.config import RayConfig, ResourcesConfig
    from effvid.methods.pas.runner import RayRunner

    return RayRunner(ResourcesConfig(num_cpus=1, num_gpus=0), RayConfig(num_cpus=1), log=lambda message: None)


@pytest.mark.parametrize("signum, raised", [(signal.SIGTERM, SystemExit), (signal.SIGINT, KeyboardInterrupt)],
                         ids=["sigterm", "sigint"])
def test_the_runner_owns_the_signals_only_while_active(fake_ray, signum, raised):
    def previous(*args):
        raise AssertionError("the previous handler must not run while the runner is active")

    before = {s: signal.signal(s, previous) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        with pytest.raises(raised) as exc:
            with _runner() as runner:
                runner.submit("base", _train_config())
                assert signal.getsignal(signal.SIGTERM) == runner._on_signal
                os.kill(os.getpid(), signum)
                time.sleep(1)  # the handler runs at the next bytecode; never reached
                raise AssertionError("the signal did not stop the block")
        if raised is SystemExit:
            assert exc.value.code == 143
        assert fake_ray.calls == ["init", "submit", "cancel", "shutdown"]
        assert signal.getsignal(signal.SIGINT) is previous and signal.getsignal(signal.SIGTERM) is previous
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)


def test_a_signal_during_a_normal_exit_still_shuts_down_then_exits(fake_ray):
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        with _runner():
            pass  # FakeRay.shutdown sends SIGINT: recorded, shutdown finishes, then the interrupt
    assert fake_ray.calls == ["init", "shutdown"] and signal.getsignal(signal.SIGINT) is before


def _train_config() -> TrainConfig:
    """A TrainConfig the runner can submit (its paths are made absolute; nothing trains it)."""
    return from_dict(TrainConfig, {"run_dir": "r", "epochs": 1, "batch_size": 1, "model": {"name": "r2plus1d_18"},
                                   "data": {"train": "t.txt"}}, source="test")

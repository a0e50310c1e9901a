"""The built wheel works outside the checkout: ``effvid demo`` from any folder, ``python -m effvid``,
and a one-line error for ``effvid shrink`` when Ray (the ``pas`` extra) is missing.

Marked slow: it builds a wheel, installs it into a fresh virtual environment and runs the tiny
demo from there (about a minute on 2 cores).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from importlib.metadata import version
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BUILD_FILES = ("pyproject.toml", "README.md", "setup.py", "setup.cfg", "MANIFEST.in", "LICENSE")
"""What setuptools reads besides the package itself (those present are copied)."""

# Installed as sitecustomize.py on PYTHONPATH: `import ray` fails as if Ray were not installed.
NO_RAY = textwrap.dedent('''
    import sys

    class _NoRay:
        def find_spec(self, name, path=None, target=None):
            if name == "ray" or name.startswith("ray."):
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, _NoRay())
''')


def _run(cmd: list[str | Path], *, cwd: Path, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def _ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, f"{proc.args} exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc


def _build_wheel(tmp_path: Path) -> Path:
    """A wheel of the project, built from a copy of its sources (the checkout gets no build/ folder)."""
    major, minor = (int(part) for part in version("setuptools").split(".")[:2])
    assert (major, minor) >= (68, 0), "the dev extra installs setuptools>=68 (needed to build without isolation)"
    src = tmp_path / "src"
    shutil.copytree(ROOT / "effvid", src / "effvid", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in BUILD_FILES:
        if (ROOT / name).exists():
            shutil.copy2(ROOT / name, src / name)
    dist = tmp_path / "dist"
    _ok(_run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index",
              "-w", dist, src], cwd=tmp_path, env=_clean_env(), timeout=300))
    (wheel,) = dist.glob("effvid-*.whl")
    return wheel


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    return {**env, **extra}


def _fresh_venv(tmp_path: Path, wheel: Path) -> Path:
    """A new virtual environment with ``wheel`` installed and this venv's packages visible; its ``bin``.

    Nothing is downloaded at test time: the wheel is installed with ``--no-deps --no-index``, and
    the dependencies (torch, av, ray, ...) come from this venv, whose site-packages is listed in a
    ``.pth`` file of the new one. A plain path line in a ``.pth`` only appends that folder to
    ``sys.path``; the ``.pth`` files inside it are not processed, so the editable install's finder
    there (``__editable__.effvid-*.pth``) is never activated, and the new venv's own site-packages
    comes first: ``import effvid`` resolves to the installed wheel, which the test asserts.
    """
    venv = tmp_path / "venv"
    _ok(_run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=tmp_path, env=_clean_env(), timeout=120))
    python = venv / "bin" / "python"
    _ok(_run([sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps", "--no-index", wheel],
             cwd=tmp_path, env=_clean_env(), timeout=300))
    new_site = Path(_ok(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             cwd=tmp_path, env=_clean_env(), timeout=60)).stdout.strip())
    ours = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    (new_site / "effvid_test_deps.pth").write_text("".join(f"{path}\n" for path in ours))
    return venv / "bin"


@pytest.fixture(scope="module")
def bin_dir(tmp_path_factory) -> Path:
    """The ``bin`` folder of a fresh venv with the project's wheel installed (shared by this module's tests)."""
    where = tmp_path_factory.mktemp("wheel")
    return _fresh_venv(where, _build_wheel(where))


@pytest.mark.slow
def test_wheel_runs_the_demo_outside_the_checkout(bin_dir, tmp_path):
    venv = bin_dir.parent
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = _clean_env(PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")

    probe = _ok(_run([bin_dir / "python", "-c", "import effvid, ray; print(effvid.__file__)"],
                     cwd=elsewhere, env=env, timeout=120))
    installed = Path(probe.stdout.strip()).parent
    assert installed.is_relative_to(venv), f"effvid was imported from {installed}, not from the wheel in {venv}"
    assert not installed.is_relative_to(ROOT)
    configs = installed / "configs"
    assert (configs / "demo" / "r2plus1d_synth_tiny.yaml").is_file()
    assert (configs / "pas" / "synth_tiny.yaml").is_file()

    assert _ok(_run([bin_dir / "python", "-m", "effvid", "--version"], cwd=elsewhere, env=env,
                    timeout=120)).stdout.strip() == "effvid 0.1.0"

    out, data = tmp_path / "out", tmp_path / "data"
    demo = _ok(_run([bin_dir / "effvid", "demo", "--preset", "tiny", "--json", "--out", out, "--data", data],
                    cwd=elsewhere, env=env, timeout=170))
    summary = json.loads(demo.stdout.strip().splitlines()[-1])
    row = summary["rows"][0]
    assert 0.0 <= row["video_top1"] <= row["video_top5"] <= 1.0 and row["gmacs_per_view"] > 0
    pas = summary["pas"]
    assert pas is not None and len(pas["iterations"]) == 2
    assert [r["model"] for r in pas["table"]][0] == "r2plus1d_18"
    assert (out / "report.md").is_file() and summary["report"] == str(out / "report.md")
    assert not (elsewhere / "runs").exists() and not (elsewhere / "data").exists()


@pytest.mark.slow
def test_wheel_without_ray_says_which_extra_to_install(bin_dir, tmp_path):
    blocker, elsewhere = tmp_path / "no_ray", tmp_path / "elsewhere"
    blocker.mkdir()
    elsewhere.mkdir()
    (blocker / "sitecustomize.py").write_text(NO_RAY)
    env = _clean_env(PYTHONPATH=str(blocker))
    site = _ok(_run([bin_dir / "python", "-c", "import effvid, pathlib; print(pathlib.Path(effvid.__file__).parent)"],
                    cwd=elsewhere, env=env, timeout=60)).stdout.strip()
    config = Path(site) / "configs" / "pas" / "synth_tiny.yaml"
    assert config.is_file()
    assert _run([bin_dir / "python", "-c", "import ray"], cwd=elsewhere, env=env, timeout=60).returncode != 0

    proc = _run([bin_dir / "effvid", "shrink", config], cwd=elsewhere, env=env, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("effvid: error: ") and "effvid[pas]" in lines[0] and "Ray" in lines[0]
    assert list(elsewhere.iterdir()) == []  # stopped before writing a run folder

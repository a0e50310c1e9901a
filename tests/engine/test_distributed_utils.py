"""Process-group helpers: single process without torchrun, a real 2-process Gloo group with it."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from effvid.engine.distributed import (
    all_reduce_mean,
    barrier,
    init_distributed,
    seed_everything,
    teardown,
    unwrap_model,
)


def test_without_torchrun_it_is_one_main_process(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    info = init_distributed("cpu")
    assert (info.rank, info.world_size, info.local_rank, info.is_main, info.distributed) == (0, 1, 0, True, False)
    assert info.device == torch.device("cpu")
    x = torch.tensor([1.0, 3.0])
    assert torch.equal(all_reduce_mean(x), x)
    barrier()
    teardown()


def test_seeding_is_reproducible_and_differs_per_rank() -> None:
    def draw(seed: int, rank: int) -> list[float]:
        seed_everything(seed, rank)
        return [random.random(), float(np.random.rand()), float(torch.rand(1))]

    assert draw(7, 0) == draw(7, 0)
    assert draw(7, 0) != draw(7, 1)


def test_unwrap_model_returns_the_bare_module() -> None:
    model = nn.Linear(2, 2)
    assert unwrap_model(nn.DataParallel(model)) is model and unwrap_model(model) is model


WORKER = textwrap.dedent("""
    import json, os, sys, torch
    from effvid.engine.distributed import all_reduce_mean, barrier, init_distributed, seed_everything, teardown
    info = init_distributed("cpu")
    seed_everything(3, info.rank)
    mean = all_reduce_mean(torch.tensor([float(info.rank), 10.0 * info.rank]))
    barrier()
    out = {"rank": info.rank, "world": info.world_size, "main": info.is_main, "mean": mean.tolist(),
           "draw": torch.rand(1).item(), "backend": torch.distributed.get_backend()}
    with open(os.path.join(sys.argv[1], f"rank{info.rank}.json"), "w") as f:
        json.dump(out, f)
    teardown()
""")


def test_torchrun_two_process_gloo_group(tmp_path: Path) -> None:
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or shutil.which("torchrun")
    assert torchrun is not None
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = "1"
    proc = subprocess.Popen([torchrun, "--standalone", "--nproc_per_node", "2", str(script), str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)
    try:
        _, stderr = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # torchrun and its workers
        proc.communicate()
        raise
    assert proc.returncode == 0, stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["rank"] for r in ranks] == [0, 1] and all(r["world"] == 2 for r in ranks)
    assert [r["main"] for r in ranks] == [True, False]
    assert all(r["mean"] == [0.5, 5.0] and r["backend"] == "gloo" for r in ranks)
    assert ranks[0]["draw"] != ranks[1]["draw"]

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


def test_slurm_host_lists_expand_as_slurm_writes_them():
    from effvid.engine.distributed import expand_nodelist

    assert expand_nodelist("gpu[01-03,07],login") == ["gpu01", "gpu02", "gpu03", "gpu07", "login"]
    assert expand_nodelist("node7") == ["node7"]
    assert expand_nodelist("a[8-11]") == ["a8", "a9", "a10", "a11"]


def test_an_srun_task_without_torchrun_gets_its_rank_world_size_and_master(tmp_path):
    """A real subprocess with SLURM's step variables: init_distributed reads rank 1 of 2 and the
    first host as the master (the group itself is not joined: world 2 would wait for rank 0)."""
    import json
    import os
    import subprocess
    import sys

    code = ("import json, os; from effvid.engine.distributed import slurm_environment; "
            "os.environ.update(slurm_environment(os.environ)); "
            "print(json.dumps({k: os.environ[k] for k in ('RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'MASTER_ADDR', "
            "'MASTER_PORT')}))")
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR")}
    env.update(SLURM_PROCID="1", SLURM_STEP_NUM_TASKS="2", SLURM_NTASKS="2", SLURM_LOCALID="1",
               SLURM_STEP_NODELIST="gpu[07-08]")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "MASTER_ADDR": "gpu07",
                                      "MASTER_PORT": "29500"}
    env.pop("SLURM_STEP_NUM_TASKS")  # the sbatch script's own shell: one process, whatever SLURM_NTASKS says
    out = subprocess.run([sys.executable, "-c", code.replace("print(json.dumps({k: os.environ[k]",
                                                             "print(json.dumps({k: os.environ.get(k)")],
                         env=env, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout)["RANK"] is None


def test_two_srun_tasks_train_as_one_gloo_job(synth_micro, subset_annotation, write_config, tmp_path):
    """What ``srun -n 2 effvid train CONFIG`` starts, without torchrun: two processes that find
    each other from SLURM's variables and train one data-parallel run (rank 0 writes it), its
    validation sharded over both."""
    import os
    import socket
    import subprocess
    import sys

    config = write_config(subset_annotation(8), synth_micro.annotations["val"], epochs=1, max_steps_per_epoch=1,
                          batch_size=2)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    base = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR")}
    base.update(SLURM_STEP_NUM_TASKS="2", SLURM_STEP_NODELIST="localhost", MASTER_PORT=str(port), OMP_NUM_THREADS="1")
    tasks = [subprocess.Popen([sys.executable, "-m", "effvid", "train", str(config)], stderr=subprocess.PIPE, text=True,
                              env={**base, "SLURM_PROCID": str(rank), "SLURM_LOCALID": str(rank)})
             for rank in range(2)]
    errors = [task.communicate(timeout=300)[1] for task in tasks]
    assert [task.returncode for task in tasks] == [0, 0], errors
    assert (tmp_path / "run" / "checkpoints" / "epoch_0001.json").exists()
    assert "epoch 1/1" in errors[0] and "epoch 1/1" not in errors[1]  # only rank 0 reports
    import json

    record = json.loads((tmp_path / "run" / "metrics.jsonl").read_text())
    assert record["val"]["num_videos"] == 16  # every validation video, each evaluated on one of the ranks

"""Process-group setup for data-parallel training, and per-rank seeding.

Started by ``torchrun`` (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``/``PORT`` in
the environment), :func:`init_distributed` joins the process group: NCCL when the device is
CUDA, Gloo on the CPU. Started by SLURM's ``srun`` without torchrun (one task per GPU), it
reads the same facts from SLURM's variables (:func:`slurm_environment`). Otherwise it describes
a single process and initialises nothing. The helpers below work in all cases, so the trainer
has one code path.
"""

from __future__ import annotations

import os
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from effvid.errors import ConfigError


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in the job, and the device it computes on."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    is_main: bool

    @property
    def distributed(self) -> bool:
        """True when a process group with more than one process is active."""
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"environment variable {name}={value!r} is not an integer") from None


SLURM_DEFAULT_PORT = 29500
"""The rendezvous port under SLURM when ``MASTER_PORT`` is not set (torchrun's default)."""


def expand_nodelist(nodelist: str) -> list[str]:
    """SLURM's compressed host list as host names: ``"gpu[01-03,07],login"`` ->
    ``["gpu01", "gpu02", "gpu03", "gpu07", "login"]`` (zero padding kept)."""
    hosts: list[str] = []
    for match in re.finditer(r"([^,\[]+)(?:\[([^\]]*)\])?", nodelist):
        prefix, ranges = match.group(1), match.group(2)
        if ranges is None:
            hosts.append(prefix)
            continue
        for part in ranges.split(","):
            low, _, high = part.partition("-")
            if not high:
                hosts.append(prefix + low)
                continue
            width = len(low)
            hosts.extend(f"{prefix}{n:0{width}d}" for n in range(int(low), int(high) + 1))
    return hosts


def slurm_environment(env: Mapping[str, str]) -> dict[str, str]:
    """The torchrun variables an ``srun`` task implies: rank, world size, local rank from
    ``SLURM_PROCID``/``SLURM_STEP_NUM_TASKS``/``SLURM_LOCALID``, the master address from the first
    host of ``SLURM_STEP_NODELIST`` (else ``SLURM_JOB_NODELIST``), the port from ``MASTER_PORT`` or
    :data:`SLURM_DEFAULT_PORT`. Empty when torchrun already set them, or outside a job step: an
    ``sbatch`` script's own shell has ``SLURM_NTASKS`` but is one process, so only the step
    variables that ``srun`` sets count (otherwise a run started in the script would wait forever
    for tasks that were never started)."""
    if "RANK" in env or "SLURM_PROCID" not in env or "SLURM_STEP_NUM_TASKS" not in env:
        return {}
    nodelist = env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST") or "localhost"
    hosts = expand_nodelist(nodelist)
    return {"RANK": env["SLURM_PROCID"], "WORLD_SIZE": env["SLURM_STEP_NUM_TASKS"],
            "LOCAL_RANK": env.get("SLURM_LOCALID", "0"), "MASTER_ADDR": env.get("MASTER_ADDR", hosts[0]),
            "MASTER_PORT": env.get("MASTER_PORT", str(SLURM_DEFAULT_PORT))}


def init_distributed(device: str = "auto", *, timeout_s: float = 1800.0) -> DistInfo:
    """Join the torchrun process group if there is one; describe the single process otherwise.

    ``device``: ``"auto"`` (CUDA device ``LOCAL_RANK`` when CUDA is available, else CPU),
    ``"cpu"`` or ``"cuda"``. Calling it again in an initialised process returns the same info.
    Under SLURM without torchrun, the torchrun variables are first set from SLURM's.
    """
    os.environ.update(slurm_environment(os.environ))
    world_size = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", 0)
    if device not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"device must be 'auto', 'cpu' or 'cuda', got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' was asked for but CUDA is not available")
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if use_cuda:
        torch.cuda.set_device(local_rank % torch.cuda.device_count())
        dev = torch.device("cuda", torch.cuda.current_device())
    else:
        dev = torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo", init_method="env://",
                                rank=rank, world_size=world_size, timeout=timedelta(seconds=timeout_s))
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank, device=dev, is_main=rank == 0)


def teardown() -> None:
    """Leave the process group, if one is active."""
    if dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    """Wait for every rank (no-op in a single process)."""
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def all_reduce_mean(tensor: torch.Tensor) -> torch.Tensor:
    """The mean of ``tensor`` over ranks (a new tensor; ``tensor`` itself in a single process)."""
    if not (dist.is_initialized() and dist.get_world_size() > 1):
        return tensor
    result = tensor.detach().clone()
    dist.all_reduce(result, op=dist.ReduceOp.SUM)
    return result / dist.get_world_size()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """The sum of ``tensor`` over ranks (a new tensor; ``tensor`` itself in a single process)."""
    if not (dist.is_initialized() and dist.get_world_size() > 1):
        return tensor
    result = tensor.detach().clone()
    dist.all_reduce(result, op=dist.ReduceOp.SUM)
    return result


def seed_everything(seed: int, rank: int = 0) -> int:
    """Seed Python, NumPy and torch (CPU and CUDA) with ``seed + rank``; returns that seed.

    Each rank gets its own stream (different augmentations), and the same seed, rank and
    config give the same run. DataLoader workers are seeded by the data layer.
    """
    value = int(seed) + int(rank)
    random.seed(value)
    np.random.seed(value % 2**32)
    torch.manual_seed(value)
    return value


def unwrap_model(model: nn.Module) -> nn.Module:
    """The bare model inside DDP/DataParallel and ``torch.compile`` wrappers."""
    while True:
        if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module
        elif hasattr(model, "_orig_mod") and isinstance(model._orig_mod, nn.Module):
            model = model._orig_mod
        else:
            return model

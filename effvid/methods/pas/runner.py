"""Training PAS networks in parallel as Ray tasks.

:class:`RayRunner` joins the cluster at ``address`` (``--ray-address`` / ``ray.address``) or
starts a quiet local Ray instance (no dashboard, a small object store), and trains each
submitted :class:`~effvid.engine.train_config.TrainConfig` as one Ray task with the configured
resources. The task calls the trainer with ``resume: auto`` in the network's own run directory,
so a task cut off by a kill or a lost worker continues from its last complete epoch when it is
submitted again. A failed task (an exception in training, a dead worker) comes back as an
error string, never as an exception that would take the other tasks down.

A hypothesis asking for more than one GPU trains data-parallel inside its task with Ray Train's
``TorchTrainer`` (one worker per GPU); see :func:`scaling_config` and :func:`_train_ddp`.
Scheduling, processes and communication are all Ray's: nothing here manages them by hand.

Ray is an optional dependency (the ``pas`` extra): without it, importing this module raises an
:class:`~effvid.errors.EffvidError` that says ``pip install 'effvid[pas]'`` (:func:`import_ray`).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from typing import Any

from effvid.engine.train_config import TrainConfig
from effvid.engine.trainer import train
from effvid.errors import EffvidError
from effvid.methods.pas.config import RayConfig, ResourcesConfig

logger = logging.getLogger(__name__)

RAY_MISSING = "PAS trains its hypotheses on Ray, which is not installed: pip install 'effvid[pas]'"


def import_ray(module: str = "ray") -> Any:
    """``module`` (``ray`` or one of its submodules), or an :class:`EffvidError` naming the ``pas`` extra.

    Raised when Ray is not installed, or when a Ray Train submodule is missing one of the packages
    that ``ray[train]`` brings. Any other import failure keeps its traceback (a bug, not a setup step).
    """
    try:
        return importlib.import_module(module)
    except ImportError as err:
        missing = err.name or ""
        if missing == "ray" or missing.startswith("ray."):
            raise EffvidError(RAY_MISSING) from None
        if module != "ray" and missing:
            raise EffvidError(f"PAS needs Ray Train ({module}), which cannot import {missing}: "
                              "pip install 'effvid[pas]'") from None
        raise


# At import, not lazily: run_search imports this module before it writes anything into the run
# folder, so `effvid shrink` without Ray stops with the one-line error above and leaves no files.
ray = import_ray()


def train_network(cfg: TrainConfig, num_threads: int) -> dict[str, Any]:
    """Train ``cfg`` in this process with ``num_threads`` torch threads; the small result a task returns."""
    import torch


    torch.set_num_threads(max(1, num_threads))
    return _result(train(cfg, progress=False))


def _result(result: Any) -> dict[str, Any]:
    best = result.best_metrics
    return {"top1": best.get("video_top1"), "top5": best.get("video_top5"),
            "checkpoint": result.best_checkpoint or result.last_checkpoint, "wall_time_s": result.wall_time_s,
            "epochs": result.epochs_completed}


def scaling_config(resources: ResourcesConfig) -> Any:
    """Ray Train's ScalingConfig for a hypothesis that trains over ``resources.num_gpus`` GPUs."""
    ScalingConfig = import_ray("ray.train").ScalingConfig
    workers = int(resources.num_gpus)
    return ScalingConfig(num_workers=workers, use_gpu=True,
                         resources_per_worker={"CPU": resources.num_cpus / workers, "GPU": 1})


def _ddp_worker(loop_config: dict[str, Any]) -> None:
    """One Ray Train worker: the trainer joins the process group Ray Train set up (rank 0 reports)."""
    import os

    ray_train = import_ray("ray.train")
    context = ray_train.get_context()
    os.environ.update(RANK=str(context.get_world_rank()), WORLD_SIZE=str(context.get_world_size()),
                      LOCAL_RANK=str(context.get_local_rank()))
    result = train_network(loop_config["cfg"], loop_config["num_threads"])
    ray_train.report(result if context.get_world_rank() == 0 else {})


def _train_ddp(cfg: TrainConfig, resources: ResourcesConfig) -> dict[str, Any]:
    """Train ``cfg`` as DDP over ``resources.num_gpus`` GPUs with Ray Train's TorchTrainer."""
    RunConfig = import_ray("ray.train").RunConfig
    TorchTrainer = import_ray("ray.train.torch").TorchTrainer

    threads = max(1, int(resources.num_cpus / resources.num_gpus))
    trainer = TorchTrainer(_ddp_worker, train_loop_config={"cfg": cfg, "num_threads": threads},
                           scaling_config=scaling_config(resources),
                           run_config=RunConfig(name="effvid-pas", storage_path=f"{cfg.run_dir}/ray_train"))
    return dict(trainer.fit().metrics)


def task_options(resources: ResourcesConfig) -> dict[str, Any]:
    """The ``ray.remote`` options of one training task (a DDP one reserves its GPUs through Ray Train)."""
    if resources.distributed:
        return {"num_cpus": 1, "num_gpus": 0, "max_retries": 0}
    return {"num_cpus": resources.num_cpus, "num_gpus": resources.num_gpus, "max_retries": 0}


class RayRunner:
    """Submit training jobs as Ray tasks and collect them as they finish (a context manager)."""

    def __init__(self, resources: ResourcesConfig, ray_cfg: RayConfig, *, address: str | None = None,
                 log: Callable[[str], None] = logger.info) -> None:
        self.resources = resources
        self.ray_cfg = ray_cfg
        self.address = address or ray_cfg.address
        self.log = log
        self._started = False
        self._refs: dict[Any, str] = {}

    def __enter__(self) -> RayRunner:
        if not ray.is_initialized():
            if self.address:
                ray.init(address=self.address, logging_level=logging.WARNING, log_to_driver=True)
                self.log(f"PAS: joined the Ray cluster at {self.address}")
            else:
                ray.init(num_cpus=self.ray_cfg.num_cpus, num_gpus=self.ray_cfg.num_gpus, include_dashboard=False,
                         object_store_memory=self.ray_cfg.object_store_mb * 1024 * 1024,
                         logging_level=logging.WARNING, log_to_driver=True)
            self._started = True
        if self.resources.distributed:
            self._remote = ray.remote(_train_ddp).options(**task_options(self.resources))
        else:
            self._remote = ray.remote(train_network).options(**task_options(self.resources))
        return self

    def __exit__(self, *exc: Any) -> None:
        for ref in self._refs:
            ray.cancel(ref, force=True)
        self._refs.clear()
        if self._started:
            ray.shutdown()

    def submit(self, key: str, cfg: TrainConfig) -> None:
        """Start training ``cfg`` as a Ray task known as ``key``."""
        if self.resources.distributed:
            ref = self._remote.remote(cfg, self.resources)
        else:
            ref = self._remote.remote(cfg, max(1, int(self.resources.num_cpus)))
        self._refs[ref] = key

    @property
    def pending(self) -> int:
        """How many submitted tasks have not been collected."""
        return len(self._refs)

    def next_result(self) -> tuple[str, dict[str, Any] | None, str | None]:
        """Wait for one task: ``(key, result, None)`` on success, ``(key, None, error)`` on failure."""
        from ray.exceptions import RayError, RayTaskError

        (ref,), _ = ray.wait(list(self._refs), num_returns=1)
        key = self._refs.pop(ref)
        try:
            return key, ray.get(ref), None
        except RayTaskError as err:
            cause = getattr(err, "cause", None)
            return key, None, f"{type(cause).__name__}: {cause}" if cause is not None else str(err).splitlines()[0]
        except RayError as err:
            return key, None, f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"

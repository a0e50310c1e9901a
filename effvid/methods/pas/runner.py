"""Training PAS networks in parallel as Ray tasks.

:class:`RayRunner` joins the cluster at ``address`` (``--ray-address`` / ``ray.address``) or
starts a quiet local Ray instance (no dashboard, a small object store), and trains each
submitted :class:`~effvid.engine.train_config.TrainConfig` as one Ray task with the configured
resources. The task calls the trainer with ``resume: auto`` in the network's own run directory,
so a task cut off by a kill or a lost worker continues from its last complete epoch when it is
submitted again. A failed task (an exception in training, a dead worker) comes back as an
error string, never as an exception that would take the other tasks down.

Every path of a submitted config (run directory, annotations, video root, class names, teacher,
initial and pretrained weights) is made absolute in the driver first (:func:`absolute_paths`):
a Ray worker's working directory is not the user's (Ray Train moves its workers into a folder of
its own, and a cluster node starts its workers wherever ``ray start`` ran).

A hypothesis with several workers (:attr:`ResourcesConfig.num_workers
<effvid.methods.pas.config.ResourcesConfig.num_workers>`) trains data-parallel inside its task
with Ray Train's ``TorchTrainer``: one worker per GPU (NCCL) when it asks for more than one GPU,
or ``resources.workers`` CPU workers (Gloo) when it asks for none; see :func:`scaling_config`
and :func:`_train_ddp`. Ray Train sets up the process group, and the trainer joins it (it never
initialises or destroys a group it did not create). Its run data lives under
``RUN_DIR/ray_train``. Rank 0 hands its result back as a small checkpoint holding
``result.json``, which the task reads from ``Result.checkpoint``: Ray Train V2 keeps a worker's
reported metrics only together with a checkpoint, so ``Result.metrics`` alone would be empty.
The task that drives a ``TorchTrainer`` reserves no CPU of its own, so the workers of
hypotheses trained side by side can always be scheduled. Scheduling, processes and
communication are all Ray's: nothing here manages them by hand.

While a :class:`RayRunner` is active (in the main thread) it owns SIGINT and SIGTERM: either
one cancels the submitted tasks and shuts down the local Ray instance it started (its raylet,
GCS and agents exit with it; on a cluster it only disconnects), then ends the driver as the
signal would: SIGINT as :class:`KeyboardInterrupt` (the CLI's exit 130), SIGTERM as
``SystemExit(143)``. The handlers in place before are restored on exit. The ledger is written
atomically, so a rerun resumes from it. After a SIGKILL nothing can run in the driver: the
local Ray processes notice the dead driver and exit on their own, within about two minutes.

Ray is an optional dependency (the ``pas`` extra): without it, importing this module raises an
:class:`~effvid.errors.EffvidError` that says ``pip install 'effvid[pas]'`` (:func:`import_ray`).
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import logging
import os
import signal
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from effvid.engine.train_config import PretrainedConfig, TrainConfig
from effvid.engine.trainer import train
from effvid.errors import EffvidError
from effvid.methods.pas.config import RayConfig, ResourcesConfig

logger = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
"""The signals a :class:`RayRunner` turns into a clean stop: cancel the tasks, shut Ray down, exit."""

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


RESULT_FILE = "result.json"
"""The file in rank 0's Ray Train checkpoint that holds its :func:`train_network` result."""


def _absolute(path: str | None) -> str | None:
    """``path`` made absolute against this process's working directory (``None`` stays ``None``)."""
    return None if path is None else os.path.abspath(path)


def _absolute_pretrained(pretrained: PretrainedConfig | list[PretrainedConfig] | None
                         ) -> PretrainedConfig | list[PretrainedConfig] | None:
    """``model.pretrained`` (one entry, a list or ``None``) with every ``path`` absolute."""
    if pretrained is None:
        return None
    if isinstance(pretrained, list):
        return [dataclasses.replace(p, path=_absolute(p.path)) for p in pretrained]
    return dataclasses.replace(pretrained, path=_absolute(pretrained.path))


def absolute_paths(cfg: TrainConfig) -> TrainConfig:
    """``cfg`` with every file and folder it names absolute, resolved against this process's working directory.

    That is ``run_dir``, ``data.train``/``val``/``root``/``classes``, ``distill.teacher``,
    ``init_from`` and each ``model.pretrained`` path; everything else is unchanged.
    """
    data = dataclasses.replace(cfg.data, train=_absolute(cfg.data.train), val=_absolute(cfg.data.val),
                               root=_absolute(cfg.data.root), classes=_absolute(cfg.data.classes))
    distill = None if cfg.distill is None else dataclasses.replace(cfg.distill, teacher=_absolute(cfg.distill.teacher))
    model = dataclasses.replace(cfg.model, pretrained=_absolute_pretrained(cfg.model.pretrained))
    return cfg.replace(run_dir=_absolute(cfg.run_dir), data=data, distill=distill, init_from=_absolute(cfg.init_from),
                       model=model)


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
    """Ray Train's ScalingConfig for one hypothesis: ``resources.num_workers`` workers sharing its CPUs.

    Each worker takes one GPU when the hypothesis asks for GPUs, none otherwise (CPU workers, Gloo).
    """
    ScalingConfig = import_ray("ray.train").ScalingConfig
    workers = resources.num_workers
    per_worker: dict[str, float] = {"CPU": resources.num_cpus / workers}
    use_gpu = resources.num_gpus > 0
    if use_gpu:
        per_worker["GPU"] = 1
    return ScalingConfig(num_workers=workers, use_gpu=use_gpu, resources_per_worker=per_worker)


def _ddp_worker(loop_config: dict[str, Any]) -> None:
    """One Ray Train worker: the trainer joins the process group Ray Train set up; rank 0 reports its result.

    Every rank calls ``ray.train.report`` once (it is a barrier); only rank 0 attaches a
    checkpoint, which holds its result as :data:`RESULT_FILE`.
    """
    ray_train = import_ray("ray.train")
    context = ray_train.get_context()
    os.environ.update(RANK=str(context.get_world_rank()), WORLD_SIZE=str(context.get_world_size()),
                      LOCAL_RANK=str(context.get_local_rank()))
    result = train_network(loop_config["cfg"], loop_config["num_threads"])
    if context.get_world_rank() != 0:
        ray_train.report({})
        return
    with tempfile.TemporaryDirectory(prefix="effvid-result-") as folder:
        Path(folder, RESULT_FILE).write_text(json.dumps(result))
        ray_train.report(result, checkpoint=ray_train.Checkpoint.from_directory(folder))


def _read_result(fit_result: Any) -> dict[str, Any]:
    """Rank 0's :func:`train_network` result from the checkpoint of a finished ``TorchTrainer.fit()``."""
    if fit_result.checkpoint is None:
        raise RuntimeError(f"Ray Train finished without rank 0's result checkpoint (run at {fit_result.path})")
    with fit_result.checkpoint.as_directory() as folder:
        return json.loads(Path(folder, RESULT_FILE).read_text())


def _train_ddp(cfg: TrainConfig, resources: ResourcesConfig) -> dict[str, Any]:
    """Train ``cfg`` data-parallel over ``resources.num_workers`` workers with Ray Train's TorchTrainer.

    ``cfg.run_dir`` must be absolute (see :func:`absolute_paths`): Ray Train's storage lives in
    ``RUN_DIR/ray_train``, and Ray Train V2 accepts a local storage path only when it is absolute.
    """
    ray_train = import_ray("ray.train")
    TorchTrainer = import_ray("ray.train.torch").TorchTrainer

    threads = max(1, int(resources.num_cpus / resources.num_workers))
    run_config = ray_train.RunConfig(name="effvid-pas", storage_path=str(Path(cfg.run_dir, "ray_train")),
                                     checkpoint_config=ray_train.CheckpointConfig(num_to_keep=1))
    trainer = TorchTrainer(_ddp_worker, train_loop_config={"cfg": cfg, "num_threads": threads},
                           scaling_config=scaling_config(resources), run_config=run_config)
    return _read_result(trainer.fit())


def task_options(resources: ResourcesConfig) -> dict[str, Any]:
    """The ``ray.remote`` options of one training task.

    A data-parallel one reserves nothing itself: its workers reserve the hypothesis's CPUs and
    GPUs through Ray Train, and a CPU held by the idle driving task could leave them unschedulable.
    """
    if resources.distributed:
        return {"num_cpus": 0, "num_gpus": 0, "max_retries": 0}
    return {"num_cpus": resources.num_cpus, "num_gpus": resources.num_gpus, "max_retries": 0}


def _shutdown_and_wait() -> None:
    """``ray.shutdown()``, waiting (where this Ray supports it) until the processes it started have exited."""
    try:
        ray.shutdown(wait_for_processes=True)
    except TypeError:  # Ray before wait_for_processes
        ray.shutdown()


class RayRunner:
    """Submit training jobs as Ray tasks and collect them as they finish (a context manager).

    Entered in the main thread, it handles SIGINT and SIGTERM until it exits (see the module
    docstring): the tasks are cancelled and a local Ray instance is shut down before the
    signal ends the process as :class:`KeyboardInterrupt` (SIGINT) or ``SystemExit(143)``
    (SIGTERM, ``128 + 15``).
    """

    def __init__(self, resources: ResourcesConfig, ray_cfg: RayConfig, *, address: str | None = None,
                 log: Callable[[str], None] = logger.info) -> None:
        self.resources = resources
        self.ray_cfg = ray_cfg
        self.address = address or ray_cfg.address
        self.log = log
        self._started = False
        self._refs: dict[Any, str] = {}
        self._previous_handlers: dict[int, Any] = {}
        self._signal: int | None = None
        self._closing = False

    def __enter__(self) -> RayRunner:
        # taken before ray.init, which installs its own SIGTERM handler (sys.exit(15)) in the driver
        if threading.current_thread() is threading.main_thread():
            self._previous_handlers = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
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
        for signum in self._previous_handlers:
            signal.signal(signum, self._on_signal)
        return self

    def __exit__(self, *exc: Any) -> None:
        self._closing = True  # from here a signal is only recorded: nothing may cut the shutdown short
        try:
            if self._signal is not None:
                where = "shutting down the local Ray instance" if self._started else "leaving the Ray cluster"
                self.log(f"PAS: {signal.Signals(self._signal).name} received; cancelling {len(self._refs)} "
                         f"task(s) and {where} (run the same command again to resume from the ledger)")
            for ref in self._refs:
                try:
                    ray.cancel(ref, force=True)
                except Exception as err:  # a task that already ended, a lost connection: shut down anyway
                    logger.debug(f"PAS: cancelling a task failed: {err}")
            self._refs.clear()
            if self._started:
                _shutdown_and_wait()
                self._started = False
        finally:
            for signum, handler in self._previous_handlers.items():
                signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
            self._previous_handlers = {}
            self._closing = False
        if self._signal is not None:
            # re-raised here: Ray turns an exception raised while it waits into its own
            # (SystemExit(143) arrives as SystemExit(1)), so the exit status is set after the shutdown
            signum, self._signal = self._signal, None
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            raise SystemExit(128 + signum)

    def _on_signal(self, signum: int, frame: Any) -> None:
        """SIGINT/SIGTERM while active: unwind to :meth:`__exit__`, which cancels, shuts down and exits."""
        if self._signal is not None:
            return  # already stopping: a repeated Ctrl-C must not cut the shutdown short
        self._signal = signum
        if self._closing:
            return  # __exit__ is shutting down already and exits with this signal's status after it
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise SystemExit(128 + signum)

    def submit(self, key: str, cfg: TrainConfig) -> None:
        """Start training ``cfg`` as a Ray task known as ``key``, its paths made absolute here first."""
        cfg = absolute_paths(cfg)
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

"""The training loop: one process, or data-parallel under ``torchrun``; resumable, staged, distillable.

``train(cfg)`` builds the model from ``cfg.model`` (classes from the training annotation),
composes the loss terms (``ce``, the model's own terms, PAS's ``kd``/``feature`` from a frozen
teacher), and runs the stages epoch by epoch. After every epoch the validation videos are
evaluated (every ``eval_every`` epochs and at the end; under DDP sharded over the ranks, every
rank getting the same metrics); rank 0 appends one line to ``metrics.jsonl``, saves
``checkpoints/best`` when the validation ``best_metric`` improved, then the epoch checkpoint
with its training state (the previous epoch's is removed once the new one is complete), and at
the end writes ``report.md``.

Choices worth knowing:

* Resume (``resume: auto``) continues after the last complete epoch checkpoint: weights,
  optimizer, scheduler, scaler and best-so-far. Random streams are re-seeded at the start of
  every epoch from ``(seed, epoch, rank)`` and the data from ``(seed, epoch, index)``, so a
  resumed run repeats exactly the epochs an uninterrupted one would run. ``metrics.jsonl`` is
  cut back to the resumed epoch, so each epoch appears once.
* What the teacher sees is ``distill.teacher_input``: ``student`` (the default), exactly the
  student's clip (3D CNNs with adaptive pooling accept any T/H/W); ``base``, the same moment
  and region at the geometry in the teacher checkpoint's sidecar spec, built by the dataset
  beside the student's clip (:mod:`effvid.data.dataset`), so a student whose input was reduced
  is distilled from the teacher's view of the full input.
* ``data.clips_per_video`` random clips of every video make one epoch (temporal jittering),
  each its own item with its own ``(seed, epoch, index)``: an epoch has that many times the
  steps, DDP shards and ``max_steps_per_epoch`` count clips, and a resumed epoch draws the
  same clips.
* Frozen parameters (stage globs) stay in the optimizer with ``requires_grad=False`` (no
  gradient, so no update and no weight decay); BN statistics of frozen layers still update.
* AMP is used on CUDA only (bf16, or fp16 with a gradient scaler); on the CPU it is off.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from effvid.config import dump_yaml, to_dict
from effvid.data.annotations import load_annotations
from effvid.data.dataset import VideoDataset
from effvid.data.loader import build_loader
from effvid.data.transforms import test_transform
from effvid.engine import checkpoint as ckpt
from effvid.engine.distributed import (
    DistInfo,
    all_reduce_mean,
    all_reduce_sum,
    barrier,
    init_distributed,
    seed_everything,
    teardown,
)
from effvid.engine.evaluate import evaluate, to_device
from effvid.engine.losses import (
    FrozenTeacher,
    LossComposer,
    TrainStep,
    add_distillation_terms,
    classification_term,
)
from effvid.engine.optim import apply_stage_trainable, load_matching, lr_groups, stage_of_epoch
from effvid.engine.precise_bn import update_bn_stats
from effvid.engine.run_report import CONFUSION_PNG, write_run_report
from effvid.engine.rundir import check_run_dir, config_changes, field_defaults, remove_stale_temp_files, run_lock
from effvid.engine.schedules import build_lr_scheduler, build_optimizer
from effvid.engine.trackers import Tracker, open_tracker
from effvid.engine.train_config import PretrainedConfig, TrainConfig
from effvid.errors import CheckpointError, ConfigError, EffvidError
from effvid.io import write_text
from effvid.models import is_dynamic, load_pretrained
from effvid.models.registry import create_from_spec
from effvid.report.plots import read_metrics
from effvid.spec import ArchSpec

logger = logging.getLogger(__name__)

METRICS_FILE = "metrics.jsonl"
LOG_FILE = "train.log"
_EPOCH_SEED_STRIDE = 1_000_003


@dataclass
class TrainResult:
    """What a finished run produced; checkpoint paths are stems (``.safetensors``/``.json`` beside them)."""

    run_dir: str
    best_checkpoint: str | None
    last_checkpoint: str | None
    epochs_completed: int
    best_metrics: dict[str, Any] = field(default_factory=dict)
    wall_time_s: float = 0.0
    skipped_files: int = 0  # distinct unreadable training videos met (``data.on_error: skip``)
    skipped_attempts: int = 0  # reads that failed and were replaced by another video

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def train(cfg: TrainConfig, *, progress: bool | None = None) -> TrainResult:
    """Train per ``cfg`` (see the module docstring); rank 0's :class:`TrainResult` carries the metrics.

    ``progress``: tqdm bars (rank 0 only); ``None`` shows them when stderr is a terminal.
    """
    import torch.distributed as dist

    owns_group = not dist.is_initialized()
    dist_info = init_distributed(cfg.device)
    try:
        return _Run(cfg, dist_info, progress).run()
    finally:
        if owns_group:
            teardown()


class _Run:
    """One training run's state; :meth:`run` is the whole loop."""

    def __init__(self, cfg: TrainConfig, dist_info: DistInfo, progress: bool | None) -> None:
        self.cfg = cfg
        self.dist = dist_info
        self.device = dist_info.device
        self.run_dir = Path(cfg.run_dir)
        self.main = dist_info.is_main
        self.progress = self.main and (sys.stderr.isatty() if progress is None else progress)
        self.stages = cfg.stage_plan()
        if cfg.sync_bn and dist_info.distributed and self.device.type != "cuda":
            raise ConfigError("sync_bn: PyTorch's SyncBatchNorm runs on CUDA only; set sync_bn: false on the CPU")
        self.amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.amp) if self.device.type == "cuda" else None
        if cfg.amp != "off" and self.amp_dtype is None and self.main:
            logger.info(f"amp: {cfg.amp} asked for, but mixed precision runs on CUDA only; training in float32")
        self.writer: Any = None
        self.tracker: Tracker | None = None
        self.tracker_run_id: str | None = None

    # -----------------------------------------------------------------------------------------
    # Setup

    def _build(self) -> None:
        cfg, data = self.cfg, self.cfg.data
        seed_everything(cfg.seed, self.dist.rank)
        self.train_ann = load_annotations(data.train, root=data.root, format=data.format, subset="train",
                                          classes=data.classes)
        self.val_ann = (load_annotations(data.val, root=data.root, format=data.format, subset="test",
                                         classes=data.classes)
                        if data.val is not None else None)
        self.spec = cfg.model.to_spec(len(self.train_ann.class_names))
        if self.val_ann is not None:  # what validation would refuse after the first epoch, refused now
            _check_labels(self.val_ann, str(data.val), self.spec.num_classes)
            if self.val_ann.multilabel and cfg.best_metric == "mean_class_acc":
                raise ConfigError(f"best_metric mean_class_acc is not defined for multi-label data ({data.val}); "
                                  "use mAP")
            test_transform(self.spec, num_crops=data.val_views[1])
        self.model = create_from_spec(self.spec)
        for weights in _pretrained_entries(cfg.model.pretrained):
            report = load_pretrained(_pretrained_target(self.model, weights.into), weights.path, weights.source,
                                     replace_head=weights.replace_head)
            if self.main:
                head = ", classifier replaced" if report.kept and weights.replace_head else ""
                into = f" into {weights.into}" if weights.into else ""
                logger.info(f"pretrained {weights.path} ({weights.source}){into}: {report.loaded} tensors loaded{head}")
        if cfg.init_from is not None:
            stem = ckpt.resolve_checkpoint(cfg.init_from)
            state, _ = ckpt.load_checkpoint(stem)
            copied, total = load_matching(self.model, state, str(stem))
            if self.main:
                logger.info(f"init_from {stem}: {copied} of {total} tensors loaded (name and shape match)")
        if cfg.sync_bn and self.dist.distributed:
            self.model = nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
        self.model.to(self.device)
        self.teacher: FrozenTeacher | None = None
        self.teacher_spec: ArchSpec | None = None
        self.composer = self._losses()
        self.step = TrainStep(self.model, self.composer).to(self.device)
        lr = cfg.optim.lr * (cfg.init_lr_scale if cfg.init_from is not None else 1.0)
        groups = lr_groups(self.model, cfg.optim.lr_mult)
        loss_params = list(self.step.losses.parameters())
        if loss_params:
            groups.append({"params": loss_params, "lr_mult": 1.0})
        for group in groups:
            group["lr"] = lr * group.pop("lr_mult")
        self.optimizer = build_optimizer(groups, dataclasses.replace(cfg.optim, lr=lr))
        self.train_set = VideoDataset(self.train_ann, spec=self.spec, train=True, backend=data.backend,
                                      on_error=data.on_error, flip=data.flip, target_fps=data.target_fps, seed=cfg.seed,
                                      cache=data.cache, cache_bytes_max=data.cache_bytes_max,
                                      clips_per_video=data.clips_per_video, teacher_spec=self.teacher_spec)
        self.loader = build_loader(self.train_set, batch_size=cfg.batch_size, num_workers=data.num_workers,
                                   shuffle=True, seed=cfg.seed, drop_last=True)
        if len(self.loader) == 0:
            raise ConfigError(f"{data.train}: {len(self.train_set)} training clips ({len(self.train_ann.records)} "
                              f"videos x data.clips_per_video {data.clips_per_video}) make no full batch of "
                              f"{cfg.batch_size} per process x {self.dist.world_size} processes; lower batch_size")
        self.iters = min(len(self.loader), cfg.max_steps_per_epoch or len(self.loader))
        self.scheduler = build_lr_scheduler(self.optimizer, cfg.schedule, total_epochs=cfg.epochs,
                                            iters_per_epoch=self.iters,
                                            epoch_scales=[self.stages[stage_of_epoch(self.stages, e)].lr_scale
                                                          for e in range(cfg.epochs)])
        self.scaler = torch.amp.GradScaler("cuda") if self.amp_dtype == torch.float16 else None

    def _losses(self) -> LossComposer:
        cfg = self.cfg
        composer = LossComposer()
        own_terms = getattr(self.model, "loss_terms", None)
        own = own_terms() if callable(own_terms) else {}
        for term in cfg.losses:
            if term.name == "ce":
                composer.add_config(term, classification_term(label_smoothing=cfg.label_smoothing))
            elif term.name in own:
                composer.add_config(term, own[term.name])
            elif term.name in ("kd", "feature"):
                raise ConfigError(f"loss term {term.name!r} comes from the 'distill' section; remove it from 'losses'")
            else:
                known = ", ".join(["ce", *own])
                raise ConfigError(f"unknown loss term {term.name!r} for model {self.spec.name} (known: {known})")
        if cfg.distill is not None and cfg.distill.teacher is not None:
            stem = ckpt.resolve_checkpoint(cfg.distill.teacher)
            self.teacher = FrozenTeacher.from_checkpoint(stem, bn_mode=cfg.distill.teacher_bn).to(self.device)
            if cfg.distill.teacher_input == "base":
                self.teacher_spec = ckpt.sidecar_spec(ckpt.read_sidecar(stem), stem)
            add_distillation_terms(composer, cfg.distill, self.teacher, self.model)
        return composer

    def _resume(self) -> int:
        """Load the last complete epoch checkpoint if asked; returns the epochs already done."""
        self.best_value = -math.inf
        self.best_metrics: dict[str, Any] = {}
        self.global_step = 0
        stem = ckpt.find_last_complete(self.run_dir) if self.cfg.resume != "never" else None
        if stem is None:
            return 0
        self._check_resumed_config(stem)
        weights, _ = ckpt.load_checkpoint(stem)
        try:
            self.model.load_state_dict(weights, strict=True)
        except RuntimeError:
            raise CheckpointError(f"{stem}.safetensors: cannot resume, the weights do not fit the configured model "
                                  f"(use a new run_dir or resume: never)") from None
        state = ckpt.load_training_state(stem, map_location=self.device)
        ckpt.load_optimizer_state(self.optimizer, state, stem)
        self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        extra = state.get("extra", {})
        self.best_value = float(extra.get("best_value", -math.inf))
        self.best_metrics = dict(extra.get("best_metrics", {}))
        self.global_step = int(extra.get("global_step", 0))
        self.tracker_run_id = extra.get("tracker_run_id")
        if "loss_modules" in extra:
            self.step.losses.load_state_dict(extra["loss_modules"])
        elif "features" in extra:  # runs saved before loss terms could own modules
            self.step.losses.load_state_dict({f"feature.{k}": v for k, v in extra["features"].items()})
        if self.main:
            logger.info(f"resuming {self.run_dir} after epoch {state['epoch']} ({stem.name})")
        return int(state["epoch"])

    def _check_resumed_config(self, stem: Path) -> None:
        """Refuse (or, with ``resume: force``, report) settings that differ from the checkpoint's run."""
        recorded = (ckpt.read_sidecar(stem).get("extra") or {}).get("config")
        changes = (config_changes(recorded, to_dict(self.cfg), defaults=field_defaults(self.cfg))
                   if isinstance(recorded, dict) else [])
        if not changes:
            return
        if self.cfg.resume != "force":
            raise ConfigError(f"{self.run_dir}: resuming {stem.name} would change {'; '.join(changes)}; use a new "
                              "run_dir, resume=never to start over here, or resume=force to continue with the new "
                              "settings")
        if self.main:
            logger.info(f"resume=force: continuing {stem.name} with {'; '.join(changes)}")

    def _start_logs(self, done: int) -> None:
        if not self.main:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        dump_yaml(self.cfg, self.run_dir / "config.yaml")
        _trim_metrics(self.run_dir / METRICS_FILE, done)
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(self.run_dir / "tensorboard"), purge_step=self.global_step or None)
        self.tracker = open_tracker(self.cfg.log, self.run_dir, to_dict(self.cfg), run_id=self.tracker_run_id)

    # -----------------------------------------------------------------------------------------
    # The loop

    def run(self) -> TrainResult:
        with contextlib.ExitStack() as stack:
            error: ConfigError | None = None
            previous = None
            try:
                check_run_dir(self.run_dir)
                if self.main:
                    previous = stack.enter_context(run_lock(self.run_dir))
            except ConfigError as exc:
                error = exc
            failed = int(all_reduce_sum(torch.tensor(int(error is not None))))
            if error is not None:
                raise error
            if failed:
                raise ConfigError(f"run_dir {self.run_dir}: rank 0 could not start the run (its error says why)")
            stack.enter_context(_log_file(self.run_dir / LOG_FILE, enabled=self.main))
            if previous is not None:
                logger.info(f"run_dir {self.run_dir}: taking over the lock of {previous}, which no longer runs")
            if self.main:
                remove_stale_temp_files(self.run_dir)
            return self._run()

    def _run(self) -> TrainResult:
        start_time = time.time()
        self._build()
        done = self._resume()
        self._start_logs(done)
        attempts_total = 0
        last_stem = ckpt.find_last_complete(self.run_dir) if done else None
        stage_index = -1
        wrapped: nn.Module = self.step
        try:
            for epoch in range(done, self.cfg.epochs):
                if stage_of_epoch(self.stages, epoch) != stage_index:
                    stage_index = stage_of_epoch(self.stages, epoch)
                    wrapped = self._enter_stage(stage_index)
                epoch_start = time.time()
                self.model.set_epoch(epoch, self.cfg.epochs)
                seed_everything(self.cfg.seed + _EPOCH_SEED_STRIDE * (epoch + 1), self.dist.rank)
                self.loader.set_epoch(epoch)
                losses, skipped = self._train_epoch(wrapped, epoch, last_stem)
                attempts_total += skipped["attempts"]
                if self.cfg.precise_bn_batches:
                    self._precise_bn()
                try:
                    val = self._validate(epoch)
                except EffvidError:  # keep the epoch that trained: a rerun resumes after it
                    self._finish_epoch(epoch, stage_index, losses, skipped, {}, time.time() - epoch_start)
                    raise
                last_stem = self._finish_epoch(epoch, stage_index, losses, skipped, val, time.time() - epoch_start)
        finally:
            if self.writer is not None:
                self.writer.close()
            if self.tracker is not None:
                self.tracker.close()
            self.composer.close()
        if self.main:
            records = read_metrics(self.run_dir / METRICS_FILE)
            final = (records[-1].get("val") or {}) if records else {}
            write_run_report(self.run_dir, spec=self.spec, best=self.best_metrics, final=final,
                             dynamic=is_dynamic(self.model))
        best = ckpt.best_stem(self.run_dir)
        return TrainResult(run_dir=str(self.run_dir),
                           best_checkpoint=str(best) if best.with_suffix(".json").exists() else None,
                           last_checkpoint=str(last_stem) if last_stem is not None else None,
                           epochs_completed=self.cfg.epochs, best_metrics=self.best_metrics,
                           wall_time_s=time.time() - start_time,
                           skipped_files=len(self._unreadable()), skipped_attempts=attempts_total)

    def _enter_stage(self, index: int) -> nn.Module:
        stage = self.stages[index]
        trainable = apply_stage_trainable(self.model, stage)
        self.composer.activate(stage.losses or None)
        if self.main and len(self.stages) > 1:
            logger.info(f"stage {stage.name!r}: {stage.epochs} epochs, lr x{stage.lr_scale}, {trainable:,} "
                        f"trainable parameters, losses {', '.join(self.composer.active)}")
        if not self.dist.distributed:
            return self.step
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(self.step, device_ids=device_ids,
                                                   find_unused_parameters=self.cfg.find_unused_parameters)

    def _batches(self) -> Iterator[tuple[int, dict[str, Any]]]:
        iterator = enumerate(self.loader)
        if self.progress:
            from tqdm import tqdm

            iterator = tqdm(iterator, total=self.iters, leave=False, dynamic_ncols=True, desc="train")
        for step, batch in iterator:
            if step >= self.iters:
                break
            yield step, batch

    def _train_epoch(self, wrapped: nn.Module, epoch: int, last_stem: Path | None) -> tuple[dict[str, float], int]:
        cfg = self.cfg
        self.model.train()
        sums: dict[str, float] = {}
        count = 0
        skipped = torch.zeros((), dtype=torch.int64)
        known = self._unreadable()
        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        for step, batch in self._batches():
            clip = to_device(batch["clip"], self.device)
            teacher_clip = to_device(batch["teacher_clip"], self.device) if "teacher_clip" in batch else None
            targets = batch["label"].to(self.device, non_blocking=True)
            with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None):
                total, values = wrapped(clip, targets, epoch + step / self.iters, teacher_clip)
            checked = all_reduce_mean(total.detach().float())
            if not bool(torch.isfinite(checked)):
                where = f"{last_stem}" if last_stem is not None else "none yet"
                raise EffvidError(f"{self.run_dir}: the loss became {float(checked)} at epoch {epoch + 1}, step "
                                  f"{step + 1}; training stopped (last good checkpoint: {where}). Lower optim.lr "
                                  f"or set clip_grad")
            self.optimizer.zero_grad(set_to_none=True)
            (self.scaler.scale(total) if self.scaler is not None else total).backward()
            if cfg.clip_grad is not None:
                if self.scaler is not None:
                    self.scaler.unscale_(self.optimizer)
                torch.nn.utils.clip_grad_norm_([p for p in params if p.grad is not None], cfg.clip_grad)
            if self.scaler is not None:
                self.scaler.step(self.optimizer)
                self.scaler.update()
            else:
                self.optimizer.step()
            self.last_lr = self.optimizer.param_groups[0]["lr"]
            self.scheduler.step()
            self.global_step += 1
            batch_size = targets.shape[0]
            for name, value in values.items():
                sums[name] = sums.get(name, 0.0) + float(value) * batch_size
            count += batch_size
            skipped += batch["skipped"].sum()
            if self.writer is not None and self.global_step % cfg.log_every == 0:
                for name, value in values.items():
                    self.writer.add_scalar(f"train_step/{name}", float(value), self.global_step)
                self.writer.add_scalar("train_step/lr", self.last_lr, self.global_step)
        means = {name: float(all_reduce_mean(torch.tensor(total / max(count, 1), dtype=torch.float64)))
                 for name, total in sums.items()}
        return means, {"files": len(self._unreadable() - known), "attempts": int(all_reduce_sum(skipped))}

    def _unreadable(self) -> set[str]:
        """The distinct unreadable training videos met so far, on every rank."""
        files = set(self.train_set.unreadable_files)
        if self.dist.distributed:
            gathered: list[Any] = [None] * self.dist.world_size
            torch.distributed.all_gather_object(gathered, files)
            files = set().union(*gathered)
        return files

    def _precise_bn(self) -> None:
        update_bn_stats(self.model, (batch for _, batch in self._batches()), self.cfg.precise_bn_batches,
                        lambda model, batch: model(to_device(batch["clip"], self.device)))

    def _validate(self, epoch: int) -> dict[str, Any]:
        last = epoch + 1 == self.cfg.epochs
        if self.val_ann is None or not (last or (epoch + 1) % self.cfg.eval_every == 0):
            return {}
        data = self.cfg.data
        confusion = self.run_dir / CONFUSION_PNG if last and not self.val_ann.multilabel else None
        result = evaluate(self.model, self.val_ann, views=data.val_views, batch_size=data.val_batch_size or self.cfg.batch_size,
                          num_workers=data.num_workers, backend=data.backend, spec=self.spec,
                          target_fps=data.target_fps, count_cost=False, confusion_png=confusion,
                          on_error=data.on_error, progress=self.progress, device=self.device,
                          amp=self.cfg.amp, distributed=self.dist.distributed)
        metrics = result.to_dict()  # a dynamic model's cost figures stay: they are measured per view
        for key in ("input_shape", "confusion_png", "params", "dynamic"):
            metrics.pop(key)
        return metrics

    def _sidecar_fields(self) -> dict[str, Any]:
        data = self.cfg.data
        return {
            "spec": self.spec,
            "class_names": self.train_ann.class_names,
            "transforms": {"backend": data.backend, "target_fps": data.target_fps, "flip": data.flip,
                           "val_views": list(data.val_views)},
            "extra": {"data": {"train": data.train, "val": data.val, "root": data.root, "format": data.format,
                               "classes": data.classes},
                      "run_dir": str(self.run_dir), "config": to_dict(self.cfg)},
        }

    def _finish_epoch(self, epoch: int, stage_index: int, losses: dict[str, float], skipped: dict[str, int],
                      val: dict[str, Any], seconds: float) -> Path | None:
        done = epoch + 1
        improved = bool(val) and float(val[self.cfg.best_metric]) > self.best_value
        if improved:
            self.best_value = float(val[self.cfg.best_metric])
            self.best_metrics = {k: v for k, v in val.items() if isinstance(v, (int, float))} | {"epoch": done}
        stem = ckpt.epoch_stem(self.run_dir, done)
        if self.main:
            lr = self.last_lr
            record = {"epoch": done, "stage": self.stages[stage_index].name, "lr": lr, "train": losses,
                      "loss_weights": self.composer.weights(float(epoch)), "val": val, "skipped": skipped,
                      "time_s": round(seconds, 3), "global_step": self.global_step}
            with open(self.run_dir / METRICS_FILE, "a") as f:
                f.write(json.dumps(record) + "\n")
            self._log_tensorboard(done, losses, val)
            if self.tracker is not None:
                self.tracker.log_metrics({**{f"train/{k}": v for k, v in losses.items()},
                                          **{f"val/{k}": v for k, v in val.items()
                                             if isinstance(v, (int, float)) and math.isfinite(v)}}, step=done)
            fields = self._sidecar_fields()
            if improved:
                ckpt.save_checkpoint(ckpt.best_stem(self.run_dir), model=self.model, metrics=self.best_metrics,
                                     epoch=done, **fields)
            extra: dict[str, Any] = {"best_value": self.best_value, "best_metrics": self.best_metrics,
                                     "global_step": self.global_step}
            if self.step.losses:
                extra["loss_modules"] = self.step.losses.state_dict()
            if self.tracker is not None:
                extra["tracker_run_id"] = self.tracker.run_id
            state = ckpt.training_state(epoch=done, optimizer=self.optimizer, scheduler=self.scheduler,
                                        scaler=self.scaler, extra=extra)
            ckpt.save_checkpoint(stem, model=self.model, metrics=val, epoch=done, state=state, **fields)
            if done > 1:
                ckpt.remove_checkpoint(ckpt.epoch_stem(self.run_dir, epoch))
            logger.info(_summary(done, self.cfg.epochs, self.stages[stage_index].name, losses, lr, val, seconds, skipped))
        barrier()
        return stem

    def _log_tensorboard(self, epoch: int, losses: dict[str, float], val: dict[str, Any]) -> None:
        for name, value in losses.items():
            self.writer.add_scalar(f"train/{name}", value, epoch)
        for name, value in val.items():
            if isinstance(value, float) and math.isfinite(value):
                self.writer.add_scalar(f"val/{name}", value, epoch)
        self.writer.flush()


def _check_labels(annotation: Any, path: str, num_classes: int) -> None:
    """A :class:`ConfigError` naming the file and line of the first label outside the training classes."""
    for record in annotation.records:
        labels = (record.label,) if isinstance(record.label, int) else tuple(record.label)
        bad = [label for label in labels if not 0 <= label < num_classes]
        if bad:
            raise ConfigError(f"{path}{_line_of(path, record.video_id)}: video {record.video_id} has label {bad[0]}, "
                              f"outside the {num_classes} training classes (0..{num_classes - 1})")


def _line_of(path: str, text: str) -> str:
    """``":N"``, the first line of the file ``path`` that mentions ``text``, or ``""``."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for number, line in enumerate(f, 1):
                if text in line:
                    return f":{number}"
    except OSError:
        pass
    return ""


@contextlib.contextmanager
def _log_file(path: Path, *, enabled: bool) -> Iterator[None]:
    """While the block runs, append effvid's INFO log records to ``path`` (rank 0 only)."""
    if not enabled:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", datefmt="%Y-%m-%d %H:%M:%S"))
    handler.setLevel(logging.INFO)
    root = logging.getLogger("effvid")
    level = root.level
    if root.getEffectiveLevel() > logging.INFO:
        root.setLevel(logging.INFO)
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        handler.close()


def _trim_metrics(path: Path, epochs_done: int) -> None:
    """Keep only the lines of epochs ``<= epochs_done`` (a resumed run rewrites the rest)."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line).get("epoch", 0) <= epochs_done:
                kept.append(line)
        except json.JSONDecodeError:
            continue  # a line cut off by a kill
    write_text(path, "".join(k + "\n" for k in kept))


def _pretrained_entries(pretrained: PretrainedConfig | list[PretrainedConfig] | None) -> list[PretrainedConfig]:
    if pretrained is None:
        return []
    return pretrained if isinstance(pretrained, list) else [pretrained]


def _pretrained_target(model: nn.Module, into: str) -> nn.Module:
    """The submodule ``into`` names (``model`` itself for ``""``); a wrong name is a :class:`ConfigError`."""
    if not into:
        return model
    try:
        return model.get_submodule(into)
    except AttributeError:
        parts = sorted({name.split(".")[0] for name, _ in model.named_children()})
        raise ConfigError(f"model.pretrained.into: {type(model).__name__} has no submodule {into!r} "
                          f"(top-level parts: {', '.join(parts)})") from None


def _summary(epoch: int, epochs: int, stage: str, losses: dict[str, float], lr: float, val: dict[str, Any],
             seconds: float, skipped: dict[str, int]) -> str:
    parts = [f"epoch {epoch}/{epochs}", f"[{stage}]"]
    parts += [f"{name} {value:.4f}" for name, value in losses.items()]
    parts.append(f"lr {lr:.3g}")
    if val:
        parts.append(f"val top1 {val['video_top1']:.3f} top5 {val['video_top5']:.3f}")
    parts.append(f"{seconds:.1f}s")
    if skipped["attempts"]:
        parts.append(f"skipped {skipped['files']} new unreadable file(s), {skipped['attempts']} read(s) replaced")
    return "  ".join(parts)

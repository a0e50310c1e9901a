"""Experiment trackers: the run's config and per-epoch metrics sent to MLflow or Weights & Biases.

Optional (``pip install 'effvid[track]'``) and off by default (``log.tracker: none``); TensorBoard
events and ``metrics.jsonl`` are always written. Rank 0 logs the flattened config as parameters
at the start and every epoch's training losses (``train/<term>``) and validation metrics
(``val/<metric>``) with the epoch as the step. A resumed run continues the same tracker run:
its id is kept in the training state.

* ``mlflow``: the tracking URI from ``log.uri``, else MLflow's own default
  (``MLFLOW_TRACKING_URI`` or ``./mlruns``); experiment ``log.project``.
* ``wandb``: project ``log.project``, files under ``RUN_DIR/wandb``; ``log.mode: offline``
  writes the run locally for ``wandb sync`` later (no network, no account needed).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from effvid.config import flatten
from effvid.errors import ConfigError

TrackerKind = Literal["none", "mlflow", "wandb"]


@dataclass(frozen=True)
class LogConfig:
    """Where a run's metrics go besides TensorBoard and ``metrics.jsonl`` (module docstring)."""

    tracker: TrackerKind = "none"
    project: str = "effvid"
    run_name: str | None = None
    uri: str | None = None
    mode: Literal["online", "offline"] = "online"


def _import(module: str, tracker: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ConfigError(f"log.tracker {tracker!r}: {module} is not installed: pip install 'effvid[track]'") from None


class Tracker:
    """One tracker run; :meth:`log_metrics` per epoch, :meth:`close` at the end."""

    def __init__(self, cfg: LogConfig, run_dir: Path, params: Mapping[str, Any], run_id: str | None) -> None:
        self.kind = cfg.tracker
        name = cfg.run_name or run_dir.name
        flat = {key: str(value) for key, value in flatten(params).items()}
        if self.kind == "mlflow":
            self._mlflow = _import("mlflow", "mlflow")
            if cfg.uri is not None:
                self._mlflow.set_tracking_uri(cfg.uri)
            self._mlflow.set_experiment(cfg.project)
            run = self._mlflow.start_run(run_id=run_id, run_name=None if run_id else name)
            if run_id is None:
                self._mlflow.log_params(flat)
            self.run_id = run.info.run_id
        else:
            wandb = _import("wandb", "wandb")
            os.environ.setdefault("WANDB_SILENT", "true")
            (run_dir / "wandb").mkdir(parents=True, exist_ok=True)
            self._run = wandb.init(project=cfg.project, name=name, dir=str(run_dir), mode=cfg.mode, config=flat,
                                   id=run_id, resume="allow" if run_id else None)
            self.run_id = self._run.id

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        """Log finite numbers ``metrics`` at ``step`` (the epoch)."""
        values = {key: float(value) for key, value in metrics.items()}
        if self.kind == "mlflow":
            self._mlflow.log_metrics(values, step=step)
        else:
            self._run.log(values, step=step)

    def close(self) -> None:
        """End the tracker run (files flushed, offline runs complete)."""
        if self.kind == "mlflow":
            self._mlflow.end_run()
        else:
            self._run.finish()


def open_tracker(cfg: LogConfig, run_dir: Path, params: Mapping[str, Any], run_id: str | None = None
                 ) -> Tracker | None:
    """The tracker ``cfg`` asks for (``None`` for ``none``), continuing run ``run_id`` when given."""
    if cfg.tracker == "none":
        return None
    return Tracker(cfg, run_dir, params, run_id)


"""The D-STEP stage of ``effvid demo``: a TSM-R18, D-STEP at D_medium = 0.6 from it, and their rows.

The TSM-R18 trains with ``configs/dstep/synth_tsm_r18[_tiny].yaml``; D-STEP starts from its best
checkpoint (``init_from``: every TSM tensor loads by name, masks and policies are new) and trains
with ``synth_dstep_d060[_tiny].yaml``. Both are evaluated on the validation split with one centre
view per video (the paper's protocol) and timed at batch 1 on the same clips, interleaved, each
prepared for inference (:func:`effvid.engine.compare.compare_models`), so the row of D-STEP shows
its mean/min/max GMACs per video and its measured wall-clock saving against the dense TSM-R18.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

from effvid.engine.compare import compare_models
from effvid.engine.train_config import load_train_config
from effvid.engine.trainer import train
from effvid.errors import ConfigError
from effvid.report.tables import markdown_table

logger = logging.getLogger(__name__)

Preset = Literal["tiny", "small"]

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs" / "dstep"
"""D-STEP's configs, shipped inside the package."""

BASELINE, DSTEP = "TSM-R18", "D-STEP (D=0.6)"
"""The names of the two rows."""

TABLE_COLUMNS = [("model", "model"), ("video_top1", "top-1 %"), ("gmacs_per_video", "GMACs/video"),
                 ("gmacs_per_video_min", "min"), ("gmacs_per_video_max", "max"),
                 ("dense_gmacs_per_video", "dense"), ("latency_ms", "ms (batch 1)"),
                 ("latency_saving_per_gmacs_saving", "time saved / GMACs saved")]
LATENCY_CLIPS = {"tiny": 16, "small": 32}
DEMO_BUDGET: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "tiny": ((), ()),
    "small": (("epochs=5", "eval_every=5"),
              ("epochs=4", "eval_every=4", "schedule.milestones=[3]",
               "model.spec.method.settings.loss.warmup_epochs=1", "model.spec.method.settings.loss.bound_rate=0.6")),
}
"""Shorter runs than the configs' (the benchmark's) for each preset: ``(tsm, dstep)`` overrides.

Small, estimated (not timed): one epoch of the tiny TSM config (128 videos, 4 frames of 32 px,
with its evaluation) takes 2.2 s on this 2-core machine, almost all of it per-video overhead
(decoding, loading, optimiser steps), since its convolutions are ~3.5 GMACs of work. An epoch of
SynthActions-small (1120 videos, 8 frames of 64 px: ~240 GMACs forward and backward, ~8 s on one
thread, plus ~6 s of per-video overhead) should take ~14 s for the TSM-R18 and ~20 s for D-STEP
(the dense masked training forward plus masks and policies), its sparse evaluation (per-frame
loops over 240 videos x 8 frames x 8 blocks) ~5 s, the 32 interleaved latency clips per model
~10 s. 5 TSM epochs (~70 s) and 4 D-STEP epochs (~80 s) with both evaluations keep the stage near
3 minutes. D-STEP warms up one epoch and relaxes its bound at 0.6 per epoch, so the sparsity and
bound terms act on the last three epochs."""


def config_path(kind: Literal["tsm", "dstep"], preset: Preset) -> Path:
    """The shipped SynthActions config of the TSM-R18 or of D-STEP at D = 0.6 for ``preset``."""
    if preset not in ("tiny", "small"):
        raise ConfigError(f"D-STEP SynthActions preset {preset!r}: choose tiny or small")
    name = "synth_tsm_r18" if kind == "tsm" else "synth_dstep_d060"
    return CONFIG_DIR / f"{name}{'' if preset == 'small' else '_tiny'}.yaml"


def run_demo_stage(annotations: dict[str, Path], out_dir: str | Path, *, preset: Preset,
                   progress: bool | None = None) -> dict[str, Any]:
    """Train the TSM-R18 into ``out_dir/tsm_r18`` and D-STEP at D = 0.6 from it into
    ``out_dir/dstep_d060`` on ``annotations["train"]``/``["val"]`` (each resumes, or returns at
    once, when its run folder holds it) with :data:`DEMO_BUDGET`, then compare them on
    ``annotations["val"]`` (one view per video); returns ``{"rows", "checkpoints",
    "table_markdown"}`` (top-1 in the table in percent)."""
    tsm_budget, dstep_budget = DEMO_BUDGET[preset]
    out = Path(out_dir)
    data = [f"data.train={annotations['train']}", f"data.val={annotations['val']}"]
    tsm_cfg = load_train_config(config_path("tsm", preset), [f"run_dir={out / 'tsm_r18'}", *data, *tsm_budget])
    logger.info(f"D-STEP: training the TSM-R18 ({tsm_cfg.epochs} epochs) in {tsm_cfg.run_dir}")
    tsm = train(tsm_cfg, progress=progress)
    start = tsm.best_checkpoint or tsm.last_checkpoint
    dstep_cfg = load_train_config(config_path("dstep", preset), [f"run_dir={out / 'dstep_d060'}", f"init_from={start}",
                                                                *data, *dstep_budget])
    logger.info(f"D-STEP: training D-STEP at D = 0.6 ({dstep_cfg.epochs} epochs) from {start} in {dstep_cfg.run_dir}")
    dstep = train(dstep_cfg, progress=progress)
    checkpoints = {BASELINE: start, DSTEP: dstep.best_checkpoint or dstep.last_checkpoint}
    rows = compare_models(checkpoints, annotations["val"], baseline=BASELINE, views=(1, 1),
                          latency_clips=LATENCY_CLIPS[preset])
    shown = [{**row, "video_top1": 100 * row["video_top1"]} for row in rows]
    return {"rows": rows, "checkpoints": {k: str(v) for k, v in checkpoints.items()},
            "table_markdown": markdown_table(shown, TABLE_COLUMNS)}

"""The AR-Net stage of ``effvid demo``: the Uniform baseline, AR-Net from it, and their table rows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from effvid.engine.compare import compare_models
from effvid.methods.arnet.recipe import Preset, train_pair
from effvid.report.tables import markdown_table

TABLE_COLUMNS = [("model", "model"), ("video_top1", "top-1 %"), ("gmacs_per_video", "GMACs/video"),
                 ("gmacs_per_video_min", "min"), ("gmacs_per_video_max", "max"),
                 ("dense_gmacs_per_video", "dense"), ("latency_ms", "ms (batch 1)"),
                 ("latency_saving_per_gmacs_saving", "time saved / GMACs saved")]
LATENCY_CLIPS = {"tiny": 16, "small": 48}
DEMO_BUDGET = {
    "tiny": ((), ()),
    "small": (("epochs=7", "eval_every=7"),
              ("epochs=7", "stages.0.epochs=3", "stages.1.epochs=3", "stages.2.epochs=1", "eval_every=7")),
}
"""Shorter runs than the configs' (the benchmark's) for each preset: ``(uniform, arnet)`` overrides,
so the small preset's AR-Net stage fits in about 3 minutes on 2 CPU cores (8 + 8 epochs took
196 s in a fresh clone; each Uniform epoch is about 7 s, each AR-Net epoch about 15 s)."""


def run_demo_stage(annotations: dict[str, Path], out_dir: str | Path, *, preset: Preset,
                   progress: bool | None = None) -> dict[str, Any]:
    """Train and compare the Uniform baseline and AR-Net on ``annotations["train"]``/``["val"]``
    into ``out_dir`` (resumable); returns the rows, the markdown table and the checkpoints."""
    uniform_budget, arnet_budget = DEMO_BUDGET[preset]
    uniform, arnet = train_pair(train_list=annotations["train"], val_list=annotations["val"], out_dir=out_dir,
                                preset=preset, uniform_overrides=uniform_budget, arnet_overrides=arnet_budget,
                                progress=progress)
    checkpoints = {"Uniform": uniform.best_checkpoint or uniform.last_checkpoint,
                   "AR-Net": arnet.best_checkpoint or arnet.last_checkpoint}
    rows = compare_models(checkpoints, annotations["val"], baseline="Uniform", latency_clips=LATENCY_CLIPS[preset])
    shown = [{**row, "video_top1": 100 * row["video_top1"]} for row in rows]
    return {"rows": rows, "checkpoints": {k: str(v) for k, v in checkpoints.items()},
            "table_markdown": markdown_table(shown, TABLE_COLUMNS)}

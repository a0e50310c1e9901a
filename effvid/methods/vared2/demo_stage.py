"""The VA-RED2 stage of ``effvid demo``: the demo's base R(2+1)D made dynamic, trained, and compared.

The dynamic model starts from the base checkpoint (``init_from``: every base tensor loads by
name) and trains with ``configs/vared2/r2plus1d_synth_<preset>.yaml`` (cross-entropy, then the
efficiency loss) without validation during training (its one evaluation at the end would repeat
the comparison's); both are then evaluated on the validation split with the base's views (the
base's evaluation reused when the demo already made it) and timed at batch 1 on the same clips,
interleaved (:func:`effvid.engine.compare.compare_models`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from effvid.engine.compare import compare_models
from effvid.engine.train_config import load_train_config
from effvid.engine.trainer import train
from effvid.errors import ConfigError
from effvid.report.tables import markdown_table

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs" / "vared2"
TABLE_COLUMNS = [("model", "model"), ("video_top1", "top-1 %"), ("gmacs_per_view", "GMACs/view"),
                 ("gmacs_per_view_min", "min"), ("gmacs_per_view_max", "max"), ("dense_gmacs_per_view", "dense"),
                 ("latency_ms", "ms (batch 1)"), ("latency_saving_per_gmacs_saving", "time saved / GMACs saved")]
LATENCY_CLIPS = {"tiny": 16, "small": 48}


def run_demo_stage(base_checkpoint: str | Path, annotations: dict[str, Path], out_dir: str | Path, *, preset: str,
                   views: Sequence[int], progress: bool | None = None,
                   base_evaluation: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Train VA-RED2 from ``base_checkpoint`` into ``out_dir`` (resumable) and compare the two on
    ``annotations["val"]`` with ``views`` (``base_evaluation``: the base's evaluation with those
    views, if already made); returns the rows, the markdown table and the checkpoint."""
    config = CONFIG_DIR / f"r2plus1d_synth_{preset}.yaml"
    if not config.is_file():
        raise ConfigError(f"VA-RED2 demo preset {preset!r}: {config} is missing from this effvid installation")
    cfg = load_train_config(config, [f"run_dir={out_dir}", f"init_from={base_checkpoint}",
                                     f"data.train={annotations['train']}", "data.val=null"])
    result = train(cfg, progress=progress)
    stem = result.best_checkpoint or result.last_checkpoint
    evaluated = {"base": base_evaluation} if base_evaluation is not None else None
    rows = compare_models({"base": base_checkpoint, "VA-RED2": stem}, annotations["val"], baseline="base",
                          views=(int(views[0]), int(views[1])), latency_clips=LATENCY_CLIPS.get(preset, 16),
                          evaluated=evaluated)
    shown = [{**row, "video_top1": 100 * row["video_top1"]} for row in rows]
    return {"rows": rows, "checkpoint": str(stem), "table_markdown": markdown_table(shown, TABLE_COLUMNS)}

"""``effvid demo``: SynthActions, a base R(2+1)D trained on this CPU, its evaluation, and a report.

The demo is a chain of stages, one function each, all writing under one output folder:

1. :func:`stage_data` generates SynthActions for the preset if it is missing;
2. :func:`stage_train_base` trains the base network from ``configs/demo/r2plus1d_synth_<preset>.yaml``
   (resumes, or returns at once, if the run folder already holds it);
3. :func:`stage_evaluate` evaluates the best checkpoint on the validation split;
4. :func:`write_report` writes ``report.md`` (table and plot) and returns the table.

Later stages (PAS) take the :class:`DemoContext` and add their rows and files to it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from effvid.errors import EffvidError

PRESETS = ("tiny", "small")
CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs" / "demo"
TABLE_COLUMNS = [("model", "model"), ("video_top1", "top-1"), ("video_top5", "top-5"),
                 ("gmacs_per_view", "GMACs/view"), ("views", "views"), ("gmacs_per_video", "GMACs/video"),
                 ("params", "params"), ("clips_per_second", "clips/s")]


@dataclass
class DemoContext:
    """What the stages share: the preset, folders, and what each stage produced."""

    preset: str
    out_dir: Path
    data_dir: Path
    progress: bool | None = None
    manifest: Any = None
    base: Any = None  # TrainResult of the base network
    rows: list[dict[str, Any]] = field(default_factory=list)  # one table row per evaluated model
    plots: list[Path] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)


def demo_config_path(preset: str) -> Path:
    """The training config of the demo's base network for ``preset``."""
    if preset not in PRESETS:
        raise EffvidError(f"unknown demo preset {preset!r}; choose from {', '.join(PRESETS)}")
    path = CONFIG_DIR / f"r2plus1d_synth_{preset}.yaml"
    if not path.exists():
        raise EffvidError(f"{path}: the demo config is missing (run the demo from an effvid source checkout)")
    return path


def stage_data(ctx: DemoContext) -> None:
    """Generate SynthActions ``ctx.preset`` into ``ctx.data_dir`` unless it is already there."""
    from effvid.commands import info
    from effvid.data.synthetic import ensure_synthactions

    start = time.time()
    info(f"demo: SynthActions-{ctx.preset} in {ctx.data_dir}")
    ctx.manifest = ensure_synthactions(ctx.data_dir, ctx.preset)
    ctx.timings["data_s"] = time.time() - start


def stage_train_base(ctx: DemoContext) -> None:
    """Train the base R(2+1)D on the training split, validating on the validation split."""
    from effvid.commands import info
    from effvid.engine.train_config import load_train_config
    from effvid.engine.trainer import train

    start = time.time()
    overrides = [f"run_dir={ctx.out_dir / 'base'}", f"data.train={ctx.manifest.annotations['train']}",
                 f"data.val={ctx.manifest.annotations['val']}"]
    cfg = load_train_config(demo_config_path(ctx.preset), overrides)
    info(f"demo: training the base {cfg.model.name} ({cfg.epochs} epochs) in {cfg.run_dir}")
    ctx.base = train(cfg, progress=ctx.progress)
    ctx.timings["train_s"] = time.time() - start


def stage_evaluate(ctx: DemoContext) -> None:
    """Evaluate the base's best checkpoint on the validation split with the config's views; add its row."""
    from effvid.engine.checkpoint import read_sidecar
    from effvid.engine.evaluate import evaluate

    start = time.time()
    stem = ctx.base.best_checkpoint or ctx.base.last_checkpoint
    views = tuple(read_sidecar(stem)["transforms"]["val_views"])
    result = evaluate(stem, ctx.manifest.annotations["val"], views=views, num_workers=1,
                      confusion_png=ctx.out_dir / "base_confusion.png")
    ctx.rows.append({"model": "base R(2+1)D", "checkpoint": str(stem), **result.to_dict(),
                     "views": f"{views[0]}x{views[1]}"})
    ctx.timings["eval_s"] = time.time() - start


def write_report(ctx: DemoContext) -> str:
    """Write ``report.md`` with the results table and the training-curve plot; returns the table."""
    from effvid.report.plots import plot_training_curves, read_metrics
    from effvid.report.tables import markdown_table

    curves = plot_training_curves(read_metrics(Path(ctx.base.run_dir) / "metrics.jsonl"),
                                  ctx.out_dir / "base_training.png", title="base R(2+1)D")
    ctx.plots.insert(0, curves)
    table = markdown_table(ctx.rows, TABLE_COLUMNS)
    total = sum(ctx.timings.values())
    lines = [f"# effvid demo ({ctx.preset})", "",
             f"SynthActions-{ctx.preset} ({ctx.manifest.counts['train']} training, {ctx.manifest.counts['val']} "
             f"validation videos, {len(ctx.manifest.class_names)} classes), evaluated on the validation split.", "",
             table, "",
             "GMACs are multiply-accumulates of conv, linear and matmul per view at the input shape "
             f"{'x'.join(map(str, ctx.rows[0]['input_shape']))}; clips/s is the measured forward throughput "
             "on this machine.", "",
             "Wall time: " + ", ".join(f"{k[:-2]} {v:.0f}s" for k, v in ctx.timings.items()) + f" (total {total:.0f}s).", ""]
    lines += [f"![{p.stem}]({p.name})" for p in ctx.plots]
    (ctx.out_dir / "report.md").write_text("\n".join(lines) + "\n")
    return table


def summary(ctx: DemoContext) -> dict[str, Any]:
    """The ``--json`` summary: metrics, checkpoints, report and timings."""
    return {"preset": ctx.preset, "out_dir": str(ctx.out_dir), "data_dir": str(ctx.data_dir),
            "report": str(ctx.out_dir / "report.md"), "base": ctx.base.to_dict(), "rows": ctx.rows,
            "plots": [str(p) for p in ctx.plots], "timings_s": ctx.timings}


def run_demo(preset: str = "small", out_dir: str | Path | None = None, *, data_dir: str | Path | None = None,
             progress: bool | None = None) -> tuple[DemoContext, str]:
    """Run every demo stage; returns the context and the results table (markdown)."""
    demo_config_path(preset)
    out = Path(out_dir) if out_dir is not None else Path("runs") / f"demo-{preset}"
    data = Path(data_dir) if data_dir is not None else Path("data") / f"synthactions-{preset}"
    out.mkdir(parents=True, exist_ok=True)
    ctx = DemoContext(preset=preset, out_dir=out, data_dir=data, progress=progress)
    for stage in (stage_data, stage_train_base, stage_evaluate):
        stage(ctx)
    return ctx, write_report(ctx)

"""``effvid demo``: SynthActions, networks trained on this CPU, each method's result, and a report.

The demo is a chain of stages, one function each, all writing under one output folder; the
``methods`` argument (``effvid demo --methods pas,arnet``) picks the method stages:

1. :func:`stage_data` generates SynthActions for the preset if it is missing;
2. for ``pas`` and ``vared2``: :func:`stage_train_base` trains the base R(2+1)D from
   ``configs/demo/r2plus1d_synth_<preset>.yaml`` (resumes, or returns at once, if the run folder
   already holds it) and :func:`stage_evaluate` evaluates it on the validation split; then
   ``pas``: :func:`stage_pas` shrinks it with PAS (:data:`PAS_ITERATIONS` iterations, resumable
   like ``effvid shrink``) into ``OUT/pas`` (Table-1-style table, ledger path), and ``vared2``:
   :func:`stage_vared2` trains VA-RED2 from it into ``OUT/vared2`` and compares the two;
3. ``dstep``: :func:`stage_dstep` trains a dense TSM-R18 and D-STEP at D = 0.6 from it into
   ``OUT/dstep`` and compares them;
4. ``arnet``: :func:`stage_arnet` trains the Uniform TSN baseline and AR-Net from it into
   ``OUT/arnet`` and compares them (accuracy, GMACs per video mean/min/max, batch-1 latency);
5. :func:`write_report` writes ``report.md`` (tables and plots) and returns the printed tables.

Tables show accuracy in percent; the ``--json`` summary keeps fractions, as ``effvid eval`` does.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from effvid.data.synthetic import ensure_synthactions
from effvid.engine.checkpoint import read_sidecar
from effvid.engine.evaluate import evaluate
from effvid.engine.train_config import load_train_config
from effvid.engine.trainer import train
from effvid.errors import EffvidError
from effvid.methods.arnet.demo_stage import run_demo_stage as run_arnet_stage
from effvid.methods.dstep.demo_stage import run_demo_stage as run_dstep_stage
from effvid.methods.pas.demo_stage import run_demo_stage
from effvid.methods.vared2.demo_stage import run_demo_stage as run_vared2_stage
from effvid.report.plots import plot_training_curves, read_metrics
from effvid.report.tables import COST_COLUMNS, markdown_table

logger = logging.getLogger(__name__)

PRESETS = ("tiny", "small")
METHODS = ("pas", "vared2", "dstep", "arnet")
"""The method stages ``effvid demo`` can run, in the order it runs them (all by default)."""
PAS_ITERATIONS = {"tiny": 2, "small": 2}
"""How many PAS iterations the demo runs after the base, per preset (the claim is about PAS-1 and PAS-2)."""
CONFIG_DIR = Path(__file__).resolve().parent / "configs" / "demo"
"""The demo configs, shipped inside the package (so an installed wheel runs the demo anywhere)."""
TABLE_COLUMNS = [("model", "model"), ("video_top1", "top-1"), ("video_top5", "top-5"), *COST_COLUMNS,
                 ("views", "views"), ("gmacs_per_video", "GMACs/video"), ("params", "params"),
                 ("clips_per_second", "clips/s")]


@dataclass
class DemoContext:
    """What the stages share: the preset, folders, and what each stage produced."""

    preset: str
    out_dir: Path
    data_dir: Path
    progress: bool | None = None
    manifest: Any = None
    base_config: Any = None  # TrainConfig of the base network
    base: Any = None  # TrainResult of the base network
    rows: list[dict[str, Any]] = field(default_factory=list)  # one table row per evaluated model
    base_evaluation: dict[str, Any] | None = None  # the base's EvalResult.to_dict() (stage_evaluate)
    methods: tuple[str, ...] = METHODS
    pas: dict[str, Any] | None = None  # the PAS run's summary (run_demo_stage)
    vared2: dict[str, Any] | None = None  # the VA-RED2 stage's rows and table
    dstep: dict[str, Any] | None = None  # the D-STEP stage's rows and table
    arnet: dict[str, Any] | None = None  # the AR-Net stage's rows and table
    plots: list[Path] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)


def demo_config_path(preset: str) -> Path:
    """The training config of the demo's base network for ``preset``."""
    if preset not in PRESETS:
        raise EffvidError(f"unknown demo preset {preset!r}; choose from {', '.join(PRESETS)}")
    path = CONFIG_DIR / f"r2plus1d_synth_{preset}.yaml"
    if not path.exists():
        raise EffvidError(f"{path}: the demo config is missing from this effvid installation")
    return path


def stage_data(ctx: DemoContext) -> None:
    """Generate SynthActions ``ctx.preset`` into ``ctx.data_dir`` unless it is already there."""

    start = time.time()
    logger.info(f"demo: SynthActions-{ctx.preset} in {ctx.data_dir}")
    ctx.manifest = ensure_synthactions(ctx.data_dir, ctx.preset)
    ctx.timings["data_s"] = time.time() - start


def stage_train_base(ctx: DemoContext) -> None:
    """Train the base R(2+1)D on the training split, validating on the validation split."""

    start = time.time()
    overrides = [f"run_dir={ctx.out_dir / 'base'}", f"data.train={ctx.manifest.annotations['train']}",
                 f"data.val={ctx.manifest.annotations['val']}"]
    cfg = load_train_config(demo_config_path(ctx.preset), overrides)
    logger.info(f"demo: training the base {cfg.model.name} ({cfg.epochs} epochs) in {cfg.run_dir}")
    ctx.base_config = cfg
    ctx.base = train(cfg, progress=ctx.progress)
    ctx.timings["train_s"] = time.time() - start


def stage_evaluate(ctx: DemoContext) -> None:
    """Evaluate the base's best checkpoint on the validation split with the config's views; add its row."""

    start = time.time()
    stem = ctx.base.best_checkpoint or ctx.base.last_checkpoint
    views = tuple(read_sidecar(stem)["transforms"]["val_views"])
    result = evaluate(stem, ctx.manifest.annotations["val"], views=views, num_workers=1,
                      confusion_png=ctx.out_dir / "base_confusion.png")
    ctx.base_evaluation = result.to_dict()
    ctx.rows.append({"model": "base R(2+1)D", "checkpoint": str(stem), **ctx.base_evaluation,
                     "views": f"{views[0]}x{views[1]}"})
    ctx.timings["eval_s"] = time.time() - start


def stage_pas(ctx: DemoContext) -> None:
    """Shrink the base's best checkpoint with PAS on the same data; keep the summary and its plot."""

    start = time.time()
    iterations = PAS_ITERATIONS[ctx.preset]
    logger.info(f"demo: PAS, {iterations} iterations, in {ctx.out_dir / 'pas'}")
    cfg = ctx.base_config
    data = {"train": str(ctx.manifest.annotations["train"]), "val": str(ctx.manifest.annotations["val"]),
            "num_workers": 0, "val_views": list(cfg.data.val_views), "val_batch_size": cfg.data.val_batch_size,
            "cache": "memory"}
    ctx.pas = run_demo_stage(ctx.base.best_checkpoint or ctx.base.last_checkpoint, data, ctx.out_dir / "pas",
                             iterations=iterations, preset=ctx.preset)
    ctx.plots += [Path(ctx.pas["plot_iterations"]), Path(ctx.pas["plot"])]
    ctx.timings["pas_s"] = time.time() - start


def stage_vared2(ctx: DemoContext) -> None:
    """Make the base R(2+1)D dynamic with VA-RED2, train it from the base, and keep the comparison."""

    start = time.time()
    logger.info(f"demo: VA-RED2 from the base in {ctx.out_dir / 'vared2'}")
    ctx.vared2 = run_vared2_stage(ctx.base.best_checkpoint or ctx.base.last_checkpoint, ctx.manifest.annotations,
                                  ctx.out_dir / "vared2", preset=ctx.preset, views=ctx.base_config.data.val_views,
                                  progress=ctx.progress, base_evaluation=ctx.base_evaluation)
    ctx.timings["vared2_s"] = time.time() - start


def stage_dstep(ctx: DemoContext) -> None:
    """Train the dense TSM-R18 and D-STEP at D = 0.6 from it on the same data; keep their comparison."""

    start = time.time()
    logger.info(f"demo: D-STEP in {ctx.out_dir / 'dstep'}")
    ctx.dstep = run_dstep_stage(ctx.manifest.annotations, ctx.out_dir / "dstep", preset=ctx.preset,
                                progress=ctx.progress)
    ctx.timings["dstep_s"] = time.time() - start


def stage_arnet(ctx: DemoContext) -> None:
    """Train the Uniform TSN baseline and AR-Net from it on the same data; keep their comparison."""

    start = time.time()
    logger.info(f"demo: AR-Net in {ctx.out_dir / 'arnet'}")
    ctx.arnet = run_arnet_stage(ctx.manifest.annotations, ctx.out_dir / "arnet", preset=ctx.preset,
                                progress=ctx.progress)
    ctx.timings["arnet_s"] = time.time() - start


def write_report(ctx: DemoContext) -> str:
    """Write ``report.md`` with the results tables and the plots; returns the tables (markdown)."""

    parts = []
    if ctx.base is not None:
        curves = plot_training_curves(read_metrics(Path(ctx.base.run_dir) / "metrics.jsonl"),
                                      ctx.out_dir / "base_training.png", title="base R(2+1)D")
        ctx.plots.insert(0, curves)
        shown = [{**row, "video_top1": 100 * row["video_top1"], "video_top5": 100 * row["video_top5"]}
                 for row in ctx.rows]
        parts.append(markdown_table(shown, TABLE_COLUMNS))
    if ctx.pas is not None:
        sequence = ", ".join(f"epsilon_{op}" for op in ctx.pas["sequence"]) or "(none)"
        parts.append(f"PAS from the base ({len(ctx.pas['iterations'])} iterations, selected [{sequence}]):\n\n"
                     + ctx.pas["table_markdown"])
    if ctx.vared2 is not None:
        parts.append("VA-RED2 from the base (its spatial convolutions made dynamic along time), the base's views, batch-1 "
                     "latency per view on 1 thread over validation clips:\n\n" + ctx.vared2["table_markdown"])
    if ctx.dstep is not None:
        parts.append("D-STEP at D = 0.6 against the dense TSM-R18 it starts from, one centre view per video, batch-1 "
                     "latency on 1 thread over validation clips:\n\n" + ctx.dstep["table_markdown"])
    if ctx.arnet is not None:
        parts.append("AR-Net against the Uniform baseline (TSN ResNet-18 on every frame at full resolution), one "
                     "centre view per video, batch-1 latency on 1 thread over validation clips:\n\n"
                     + ctx.arnet["table_markdown"])
    table = "\n\n".join(parts)
    total = sum(ctx.timings.values())
    lines = [f"# effvid demo ({ctx.preset})", "",
             f"SynthActions-{ctx.preset} ({ctx.manifest.counts['train']} training, {ctx.manifest.counts['val']} "
             f"validation videos, {len(ctx.manifest.class_names)} classes), evaluated on the validation split; "
             "accuracy in percent.", "",
             table, ""]
    if ctx.rows:
        lines += ["GMACs are multiply-accumulates of conv, linear and matmul per view at the input shape "
                  f"{'x'.join(map(str, ctx.rows[0]['input_shape']))}; clips/s is the measured forward throughput "
                  "on this machine.", ""]
    if ctx.pas is not None:
        lines += [f"PAS: accuracy in percent, CPU latency at batch 1; every hypothesis in `{ctx.pas['report']}`, "
                  f"the ledger in `{ctx.pas['ledger']}`.", ""]
    lines += ["Wall time: " + ", ".join(f"{k[:-2]} {v:.0f}s" for k, v in ctx.timings.items()) + f" (total {total:.0f}s).", ""]
    lines += [f"![{p.stem}]({p.relative_to(ctx.out_dir).as_posix()})" for p in ctx.plots]
    (ctx.out_dir / "report.md").write_text("\n".join(lines) + "\n")
    return table


def summary(ctx: DemoContext) -> dict[str, Any]:
    """The ``--json`` summary: metrics, checkpoints, report, the PAS results (``pas``), the AR-Net
    comparison (``arnet``) and timings; a method that did not run is ``None``."""
    arnet = None if ctx.arnet is None else {k: ctx.arnet[k] for k in ("rows", "checkpoints")}
    vared2 = None if ctx.vared2 is None else {k: ctx.vared2[k] for k in ("rows", "checkpoint")}
    dstep = None if ctx.dstep is None else {k: ctx.dstep[k] for k in ("rows", "checkpoints")}
    return {"preset": ctx.preset, "methods": list(ctx.methods), "out_dir": str(ctx.out_dir),
            "data_dir": str(ctx.data_dir), "report": str(ctx.out_dir / "report.md"),
            "base": ctx.base.to_dict() if ctx.base is not None else None, "rows": ctx.rows,
            "pas": _pas_summary(ctx.pas), "vared2": vared2, "dstep": dstep, "arnet": arnet, "plots": [str(p) for p in ctx.plots],
            "timings_s": ctx.timings}


def _pas_summary(pas: dict[str, Any] | None) -> dict[str, Any] | None:
    """The PAS part of the ``--json`` summary: ledger, report, selected sequence, table rows, every iteration."""
    if pas is None:
        return None
    return {key: pas[key] for key in ("ledger", "report", "run_dir", "sequence", "table", "iterations")}


def parse_methods(text: str | None) -> tuple[str, ...]:
    """``"pas,arnet"`` as the method stages to run, in demo order (``None``: all of them); an
    unknown name is an :class:`EffvidError` listing the known ones."""
    if text is None:
        return METHODS
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in METHODS]
    if unknown or not names:
        raise EffvidError(f"--methods {text!r}: choose one or more of {', '.join(METHODS)} (comma-separated)")
    return tuple(m for m in METHODS if m in names)


def run_demo(preset: str = "small", out_dir: str | Path | None = None, *, data_dir: str | Path | None = None,
             progress: bool | None = None, methods: tuple[str, ...] = METHODS) -> tuple[DemoContext, str]:
    """Run the data stage and the stages of ``methods``; returns the context and the results tables (markdown).

    With PAS among them, Ray (the ``pas`` extra) is checked first, so a missing extra is one line
    before any training, not a failure after the base has trained.
    """
    if "pas" in methods:
        from effvid.methods.pas.runner import import_ray

        import_ray()
    demo_config_path(preset)
    out = Path(out_dir) if out_dir is not None else Path("runs") / f"demo-{preset}"
    data = Path(data_dir) if data_dir is not None else Path("data") / f"synthactions-{preset}"
    out.mkdir(parents=True, exist_ok=True)
    ctx = DemoContext(preset=preset, out_dir=out, data_dir=data, progress=progress, methods=methods)
    stages = [stage_data]
    if "pas" in methods or "vared2" in methods:
        stages += [stage_train_base, stage_evaluate]
    if "pas" in methods:
        stages.append(stage_pas)
    if "vared2" in methods:
        stages.append(stage_vared2)
    if "dstep" in methods:
        stages.append(stage_dstep)
    if "arnet" in methods:
        stages.append(stage_arnet)
    for stage in stages:
        stage(ctx)
    return ctx, write_report(ctx)

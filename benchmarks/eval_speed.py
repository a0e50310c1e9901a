"""Evaluation and epoch speed benchmark: decode-once evaluation and the memory cache (writes JSON; not a test).

Measures on SynthActions-small (generated with ``ensure_synthactions`` into ``--data``), with the
demo's base network and input (``effvid/configs/demo/r2plus1d_synth_small.yaml``: R(2+1)D-18 at
width 1/4, depth 1/2, 8 frames at stride 2, 48 px crops of 56 px frames), random weights:

1. evaluation at ``--views`` (default 10x3) on the first ``--videos`` validation videos, as views
   per second of wall time (decoding, transforms and forward passes), by
   * the old path: one item per view, each reopening and decoding its video (what ``evaluate``
     did before), fed to the model in batches of ``--batch-size`` views;
   * the new path: :func:`effvid.engine.evaluate.evaluate`, one item per video (each clip decoded
     once, its crops cut from the same frames);
   and the same two loaders without a model (data only). The runs are interleaved
   (old, new, new, old, ...) in one process, so drift in the machine's load hits both;
2. one training epoch of data (decode, sample, resize, crop, flip, normalise; no model) over the
   training videos at the demo's batch size and workers: without a cache, and with
   ``cache="memory"`` (the first epoch fills it, including :func:`build_loader`'s fill; the
   second decodes nothing).

The 1-minute load average is recorded before and after each part: on a shared machine another
process may have been running, and the figures are then not quiet-machine figures.

    .venv/bin/python benchmarks/eval_speed.py [--data /tmp/effvid-bench] [--videos 24] [--views 10x3]
        [--out benchmarks/results/eval_speed.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

from effvid.cost.latency import load_record, machine_load
from effvid.cost.static import spec_input_shape
from effvid.data.annotations import Annotation, load_annotations
from effvid.data.dataset import VideoDataset
from effvid.data.loader import build_loader
from effvid.data.synthetic import ensure_synthactions
from effvid.engine.evaluate import evaluate, parse_views
from effvid.engine.train_config import load_train_config
from effvid.models import create_from_spec

DEMO_CONFIG = Path(__file__).resolve().parents[1] / "effvid" / "configs" / "demo" / "r2plus1d_synth_small.yaml"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("/tmp/effvid-bench"), help="folder for SynthActions-small")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/eval_speed.json"))
    parser.add_argument("--views", default="10x3", help="test views KxC (default 10x3)")
    parser.add_argument("--videos", type=int, default=24, help="validation videos per evaluation run (default 24)")
    parser.add_argument("--repeats", type=int, default=2, help="old/new pairs, interleaved (default 2)")
    parser.add_argument("--batch-size", type=int, default=30, help="views per forward pass (default 30)")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers for evaluation (default 0)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--train-videos", type=int, default=None, help="training videos per epoch (default all)")
    parser.add_argument("--demo-config", type=Path, default=DEMO_CONFIG)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    views = parse_views(args.views)
    demo = load_train_config(args.demo_config)
    spec = demo.model.to_spec(16)
    synth = ensure_synthactions(args.data / "synthactions-small", "small", seed=0, workers=2)
    result: dict = {
        "command": " ".join([Path(sys.argv[0]).name] + (argv if argv is not None else sys.argv[1:])),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__},
        "threads": args.threads,
        "spec": spec.to_dict(),
        "input_shape": list(spec_input_shape(spec)),
    }
    result["evaluation"] = _evaluation(synth.annotations["val"], spec, views, args)
    result["epoch"] = _epochs(synth.annotations["train"], spec, demo, args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps({k: result[k] for k in ("evaluation", "epoch")}, indent=1))
    _log(f"wrote {args.out}")
    return 0


def _subset(path: Path, count: int | None) -> Annotation:
    annotation = load_annotations(path)
    records = annotation.records if count is None else annotation.records[:count]
    return Annotation(records=records, class_names=annotation.class_names, multilabel=annotation.multilabel,
                      format=annotation.format, source=annotation.source)


def _evaluation(val: Path, spec, views: tuple[int, int], args: argparse.Namespace) -> dict:
    annotation = _subset(val, args.videos)
    torch.manual_seed(0)
    model = create_from_spec(spec).eval()
    total = len(annotation.records) * views[0] * views[1]
    runs: dict[str, list[float]] = {"old": [], "new": [], "old_data_only": [], "new_data_only": []}
    before = machine_load()
    for repeat in range(args.repeats):
        order = ("old", "new") if repeat % 2 == 0 else ("new", "old")
        for path in order:
            _log(f"evaluation {path} (repeat {repeat + 1}/{args.repeats})")
            runs[path].append(total / _timed(lambda p=path: _evaluate(p, model, annotation, spec, views, args)))
        for path in order:
            runs[f"{path}_data_only"].append(total / _timed(lambda p=path: _load_only(p, annotation, spec, views, args)))
    after = machine_load()
    best = {name: max(rates) for name, rates in runs.items()}
    return {
        "views": list(views), "videos": len(annotation.records), "views_evaluated": total,
        "batch_size": args.batch_size, "workers": args.workers, "threads": args.threads,
        "clips_per_s_runs": runs, "clips_per_s": best,
        "speedup": best["new"] / best["old"], "speedup_data_only": best["new_data_only"] / best["old_data_only"],
        "load": load_record(before, after, args.threads),
    }


def _evaluate(path: str, model, annotation: Annotation, spec, views: tuple[int, int], args) -> None:
    if path == "new":
        evaluate(model, annotation, views=views, batch_size=args.batch_size, num_workers=args.workers, spec=spec,
                 count_cost=False, device="cpu")
        return
    # the old path: one item per view, each reopening and decoding its video
    dataset = VideoDataset(annotation, spec=spec, train=False, num_clips=views[0], num_crops=views[1])
    loader = build_loader(dataset, batch_size=args.batch_size, num_workers=args.workers, shuffle=False, seed=0,
                          drop_last=False, distributed=False)
    with torch.no_grad():
        for batch in loader:
            torch.softmax(model(batch["clip"]), dim=-1)


def _load_only(path: str, annotation: Annotation, spec, views: tuple[int, int], args) -> None:
    dataset = VideoDataset(annotation, spec=spec, train=False, num_clips=views[0], num_crops=views[1])
    per_video = views[0] * views[1]
    if path == "new":
        source, batch = dataset.by_video(), max(1, args.batch_size // per_video)
    else:
        source, batch = dataset, args.batch_size
    for _ in build_loader(source, batch_size=batch, num_workers=args.workers, shuffle=False, seed=0,
                          drop_last=False, distributed=False):
        pass


def _epochs(train: Path, spec, demo, args: argparse.Namespace) -> dict:
    annotation = _subset(train, args.train_videos)
    workers, batch = demo.data.num_workers, demo.batch_size
    out: dict = {"videos": len(annotation.records), "batch_size": batch, "workers": workers,
                 "what": "one epoch of training data (decode, sample, resize, crop, normalise), no model"}
    before = machine_load()
    _log("epoch without a cache")
    plain = VideoDataset(annotation, spec=spec, train=True, flip=demo.data.flip, seed=0)
    loader = build_loader(plain, batch_size=batch, num_workers=workers, shuffle=True, seed=0, drop_last=True)
    out["uncached_s"] = [_epoch(loader, epoch) for epoch in (0, 1)]
    del loader
    _log("epochs with cache=memory")
    start = time.perf_counter()
    cached = VideoDataset(annotation, spec=spec, train=True, flip=demo.data.flip, seed=0, cache="memory")
    loader = build_loader(cached, batch_size=batch, num_workers=workers, shuffle=True, seed=0, drop_last=True)
    out["cache_setup_s"] = time.perf_counter() - start  # the size probe and, with workers, the fill
    out["cached_s"] = [_epoch(loader, epoch) for epoch in (0, 1)]
    out["cached_first_epoch_with_setup_s"] = out["cache_setup_s"] + out["cached_s"][0]
    out["cache_bytes"] = cached.cache_bytes
    out["speedup_later_epochs"] = min(out["uncached_s"]) / out["cached_s"][1]
    out["load"] = load_record(before, machine_load(), args.threads)
    return out


def _epoch(loader, epoch: int) -> float:
    loader.set_epoch(epoch)
    start = time.perf_counter()
    for _ in loader:
        pass
    return time.perf_counter() - start


def _timed(work) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


if __name__ == "__main__":
    raise SystemExit(main())

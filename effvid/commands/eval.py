"""``effvid eval CHECKPOINT``: multi-view accuracy, mAP, cost and throughput of a checkpoint."""

from __future__ import annotations

import argparse

from effvid.commands import non_negative_int, positive_int
from effvid.report.tables import COST_COLUMNS


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="evaluate a checkpoint on an annotated video set",
        description="Evaluate a checkpoint with K clips x C crops per video (softmax averaged per video): clip "
        "and video top-1, video top-5, mean class accuracy, mAP, GMACs per view and per video, parameters, "
        "clips per second. Without --data it uses the validation annotation recorded in the checkpoint. Under "
        "torchrun the videos are sharded over the processes and rank 0 prints the result.",
    )
    parser.add_argument("checkpoint", metavar="CHECKPOINT", help="checkpoint (.safetensors, .json, stem or run dir)")
    parser.add_argument("--data", metavar="ANNOTATION", help="annotation file or folder to evaluate on")
    parser.add_argument("--root", metavar="DIR", help="folder the annotation's video paths are relative to")
    parser.add_argument("--format", default="auto", help="annotation format (default: detect)")
    parser.add_argument("--views", default=None, metavar="KxC", help="clips x crops per video (default: the "
                        "checkpoint's validation views, else 1x1)")
    parser.add_argument("--batch-size", type=positive_int, default=8, help="views per forward pass (default 8)")
    parser.add_argument("--workers", type=non_negative_int, default=2,
                        help="DataLoader workers (default 2; 0 loads in this process)")
    parser.add_argument("--confusion", metavar="PNG", help="also write the confusion matrix to this PNG")
    parser.add_argument("--device", default="auto", help="auto (CUDA when present, default), cpu, cuda or cuda:N")
    parser.add_argument("--amp", choices=("off", "bf16", "fp16"), default=None,
                        help="mixed precision on CUDA (default bf16 where supported; ignored on the CPU)")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from effvid.commands import info, print_json
    from effvid.engine.checkpoint import read_sidecar, resolve_checkpoint
    from effvid.engine.distributed import init_distributed, teardown
    from effvid.engine.evaluate import evaluate, parse_views
    from effvid.errors import ConfigError
    from effvid.report.tables import markdown_table

    stem = resolve_checkpoint(args.checkpoint)
    meta = read_sidecar(stem)
    recorded = (meta.get("extra") or {}).get("data") or {}
    data, root = args.data, args.root
    if data is None:
        data = recorded.get("val")
        root = root or recorded.get("root")
        if data is None:
            raise ConfigError(f"{stem}.json records no validation annotation; give --data ANNOTATION")
    views = parse_views(args.views) if args.views else tuple((meta.get("transforms") or {}).get("val_views") or (1, 1))
    cuda = args.device.startswith("cuda") or args.device == "auto"
    world = init_distributed("auto" if cuda else "cpu")  # one process, or this rank of a torchrun job
    try:
        result = evaluate(stem, data, root=root, format=args.format, views=views, batch_size=args.batch_size,
                          num_workers=args.workers, backend=(meta.get("transforms") or {}).get("backend", "pyav"),
                          target_fps=(meta.get("transforms") or {}).get("target_fps"), confusion_png=args.confusion,
                          device=world.device if world.distributed else args.device, amp=args.amp, progress=None)
    finally:
        teardown()
    if not world.is_main:
        return 0
    row = {"checkpoint": str(stem), "data": str(data), **result.to_dict(), "device": str(result.device),
           "amp": result.amp, "processes": result.world_size}
    if args.json:
        print_json(row)
        return 0
    row["views"] = f"{views[0]}x{views[1]}"
    print(markdown_table([row], EVAL_COLUMNS))
    if result.confusion_png:
        info(f"confusion matrix: {result.confusion_png}")
    return 0


EVAL_COLUMNS = [("video_top1", "video top-1"), ("video_top5", "video top-5"), ("clip_top1", "clip top-1"),
                ("mean_class_acc", "mean class acc"), ("mAP", "mAP"), *COST_COLUMNS, ("views", "views"),
                ("gmacs_per_video", "GMACs/video"), ("params", "params"), ("clips_per_second", "clips/s"),
                ("num_videos", "videos")]

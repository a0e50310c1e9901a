"""``effvid predict CHECKPOINT VIDEO``: the top-k classes of one video, with probabilities and GMACs spent."""

from __future__ import annotations

import argparse

from effvid.commands import positive_int


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "predict",
        help="classify one video with a checkpoint",
        description="Top-k class names and probabilities (softmax averaged over K clips x C crops) for any video "
        "PyAV can read; only the sampled frames are decoded. Also prints the GMACs spent.",
    )
    parser.add_argument("checkpoint", metavar="CHECKPOINT", help="checkpoint (.safetensors, .json, stem or run dir)")
    parser.add_argument("video", metavar="VIDEO", help="video file")
    parser.add_argument("--topk", type=positive_int, default=5, help="how many classes to list (default 5)")
    parser.add_argument("--views", default="1x1", metavar="KxC", help="clips x crops (default 1x1)")
    parser.add_argument("--device", default="auto", help="auto (CUDA when present, default), cpu, cuda or cuda:N")
    parser.add_argument("--amp", choices=("off", "bf16", "fp16"), default=None,
                        help="mixed precision on CUDA (default bf16 where supported; ignored on the CPU)")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from effvid.commands import print_json
    from effvid.engine.checkpoint import resolve_checkpoint
    from effvid.engine.evaluate import parse_views
    from effvid.engine.predict import predict

    result = predict(resolve_checkpoint(args.checkpoint), args.video, topk=args.topk, views=parse_views(args.views),
                     device=args.device, amp=args.amp)
    if args.json:
        print_json(result)
        return 0
    views = "x".join(map(str, result["views"]))
    print(f"{result['video']}  ({result['model']}, {views} views, {result['gmacs']:.3f} GMACs)")
    if result["dynamic"]:
        print(f"     per view {result['gmacs_per_view']:.3f} GMACs (min {result['gmacs_per_view_min']:.3f}, max "
              f"{result['gmacs_per_view_max']:.3f}; dense {result['dense_gmacs_per_view']:.3f})")
    for rank, item in enumerate(result["topk"], 1):
        print(f"{rank:>3}. {item['class']:<30} {item['probability']:.4f}")
    return 0

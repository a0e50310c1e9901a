"""``effvid analyze ANALYSIS ...``: reports of what a trained dynamic model decides.

Each analysis is a subcommand under ``analyze``: :data:`ANALYSES` maps its name to the function
that adds its parser (and sets its ``run``), so a method that gains a report adds one entry.

``effvid analyze decisions CHECKPOINT --data LIST --out DIR``: AR-Net's per-frame decisions,
the Figure-4 strips (each sampled frame with its resolution or skip) of ``--video`` files or of
a few videos of the list, and per-class action usage on the list (PNG and ``usage.json``, with
the rates on SynthActions' uninformative stretches against elsewhere).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from effvid.commands import non_negative_int, positive_int


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "analyze",
        help="analyse the decisions of a trained dynamic model",
        description="Reports of what a trained dynamic model decides, one subcommand per analysis.",
    )
    sub = parser.add_subparsers(dest="analysis", metavar="ANALYSIS", required=True)
    for add in ANALYSES.values():
        add(sub)


def _register_decisions(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "decisions",
        help="AR-Net: decision strips of videos and action usage per class",
        description="For an AR-Net checkpoint: the Figure-4 strip of each --video (each sampled frame captioned "
        "with its chosen resolution or skip; without --video, --strips videos of the list, those with an "
        "sampled frames in an uninformative stretch first), and the action usage per class on the list as usage.png and usage.json "
        "(rates overall, per class, and on the frames of SynthActions' uninformative stretches against "
        "elsewhere). Videos are decoded as one evaluation view.",
    )
    parser.add_argument("checkpoint", metavar="CHECKPOINT", help="AR-Net checkpoint (.safetensors, .json, stem or run dir)")
    parser.add_argument("--data", required=True, metavar="LIST", help="annotation file or folder to count usage on")
    parser.add_argument("--root", metavar="DIR", help="folder the annotation's video paths are relative to")
    parser.add_argument("--format", default="auto", help="annotation format (default: detect)")
    parser.add_argument("--video", action="append", default=[], metavar="PATH",
                        help="draw the strip of this video (repeatable; default: videos of the list)")
    parser.add_argument("--strips", type=positive_int, default=3, help="strips to draw without --video (default 3)")
    parser.add_argument("--out", required=True, metavar="DIR", help="folder for the PNGs and usage.json")
    parser.add_argument("--batch-size", type=positive_int, default=8, help="videos per forward pass (default 8)")
    parser.add_argument("--workers", type=non_negative_int, default=0,
                        help="DataLoader workers (default 0: load in this process)")
    parser.add_argument("--device", default="auto", help="auto (CUDA when present, default), cpu, cuda or cuda:N")
    parser.add_argument("--json", action="store_true", help="print one JSON object (the report) on stdout")
    parser.set_defaults(run=run_decisions)


def run_decisions(args: argparse.Namespace) -> int:
    from effvid.commands import info, print_json
    from effvid.methods.arnet.report import write_decision_report
    from effvid.models.inference import resolve_device

    report = write_decision_report(args.checkpoint, args.data, args.out, videos=args.video, strips=args.strips,
                                   root=args.root, format=args.format, batch_size=args.batch_size,
                                   num_workers=args.workers, device=resolve_device(args.device))
    if args.json:
        print_json(report)
        return 0
    usage = report["usage"]
    for strip in report["strips"]:
        info(f"strip: {strip['png']}  ({' '.join(strip['actions'])})")
    info(f"usage: {report['usage_png']}, {report['usage_json']}")
    overall = usage["overall"]
    print(f"{usage['num_videos']} videos x {usage['frames_per_video']} frames: skipped {overall['skip']:.3f}, "
          f"below the highest resolution {overall['low_resolution']:.3f}")
    split = usage["uninformative"]
    if split is None:
        print("uninformative stretches: not known for this data")
    else:
        for name in ("stretch", "elsewhere"):
            row = split[name]
            rates = "no sampled frames" if row["rates"] is None else \
                f"skipped {row['skip']:.3f}, below the highest resolution {row['low_resolution']:.3f}"
            print(f"{name:>9} ({row['frames']} frames): {rates}")
    return 0


ANALYSES: dict[str, Callable[[argparse._SubParsersAction], None]] = {"decisions": _register_decisions}
"""Analysis name -> the function adding its ``effvid analyze`` subparser (in ``--help`` order)."""

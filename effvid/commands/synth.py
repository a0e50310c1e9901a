"""``effvid synth OUT_DIR``: generate the SynthActions benchmark (idempotent, resumable)."""

from __future__ import annotations

import argparse
import time

from effvid.commands import info, non_negative_int, positive_int, print_json

PRESET_NAMES = ("tiny", "small", "large")


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "synth", help="generate the SynthActions benchmark of procedural MP4 videos",
        description="Generate SynthActions into OUT_DIR: H.264 videos, mmaction and Kinetics annotation "
                    "files, classes.txt, a dataset card and a manifest. A complete folder with the same "
                    "preset and seed returns at once; a partial one is completed.")
    parser.add_argument("out_dir", metavar="OUT_DIR", help="output folder")
    parser.add_argument("--preset", choices=PRESET_NAMES, default="small",
                        help="tiny: tests (32 px); small: the demo (64 px, 1600 videos); large: GPUs (128 px)")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="random seed (default 0)")
    parser.add_argument("--workers", type=positive_int, default=None, help="worker processes (default: CPU count)")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from effvid.data.synthetic import generate

    start = time.perf_counter()
    manifest = generate(args.out_dir, preset=args.preset, seed=args.seed, workers=args.workers)
    seconds = time.perf_counter() - start
    if args.json:
        print_json(dict(manifest.to_dict(), out_dir=str(manifest.root), seconds=round(seconds, 3)))
    else:
        counts = ", ".join(f"{n} {split}" for split, n in manifest.counts.items())
        info(f"SynthActions {manifest.preset.name} (seed {manifest.seed}) in {manifest.root}: {counts} videos, "
             f"{len(manifest.class_names)} classes; wrote {manifest.generated} in {seconds:.1f} s")
        info(f"annotations: {', '.join(str(p) for p in manifest.annotations.values())}")
    return 0

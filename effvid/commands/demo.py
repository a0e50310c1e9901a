"""``effvid demo``: generate SynthActions, train a base R(2+1)D and shrink it with PAS, train AR-Net against its Uniform baseline, report."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="SynthActions -> base R(2+1)D -> PAS, VA-RED2; TSM -> D-STEP; Uniform TSN -> AR-Net -> report.md",
        description="Generate SynthActions if missing, train a small base R(2+1)D on this CPU, evaluate it on the "
        "validation split, shrink it with PAS (2 iterations) and make it dynamic with VA-RED2; "
        "train a TSM-R18 and D-STEP from it, and a Uniform TSN baseline and AR-Net from it, and compare each "
        "pair; write report.md (tables and plots) and print the tables. Running it again reuses the data, the "
        "finished (or interrupted) training runs and the PAS ledger.",
    )
    parser.add_argument("--preset", choices=("tiny", "small"), default="small",
                        help="small: about 20 minutes on 2 cores (default); tiny: about 1 minute")
    parser.add_argument("--out", metavar="DIR", help="output folder (default runs/demo-PRESET)")
    parser.add_argument("--data", metavar="DIR", help="SynthActions folder (default data/synthactions-PRESET)")
    parser.add_argument("--methods", metavar="LIST", help="comma-separated method stages to run: pas, vared2, dstep, arnet "
                        "(default: all)")
    parser.add_argument("--json", action="store_true", help="print one JSON summary object on stdout")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from effvid.commands import info, print_json
    from effvid.demo import parse_methods, run_demo, summary

    ctx, table = run_demo(args.preset, args.out, data_dir=args.data, methods=parse_methods(args.methods))
    if args.json:
        print_json(summary(ctx))
    else:
        print(table)
    info(f"report: {ctx.out_dir / 'report.md'}")
    return 0

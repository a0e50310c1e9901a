"""``effvid data check ANNOTATION``: find unreadable videos and summarise the readable ones.

Exit status 0 when every video is readable, 1 when some are not, 2 for a usage error (missing
annotation, unknown format or backend).
"""

from __future__ import annotations

import argparse

from effvid.commands import info, positive_int, print_json


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("data", help="dataset tools", description="Dataset tools.")
    sub = parser.add_subparsers(dest="data_command", metavar="SUBCOMMAND", required=True)
    check = sub.add_parser(
        "check",
        help="decode every video of an annotation and report the unreadable ones",
        description="Open every video of an annotation, decode its first and last frames, report each "
        "unreadable file with its reason and summarise frame count, fps, duration and size. "
        "Exit 0 when all are readable, 1 when some are not, 2 for a usage error.",
    )
    check.add_argument("annotation", help="annotation file (or UCF101/HMDB51/SSv2 split folder)")
    check.add_argument("--root", help="folder the annotation's video paths are relative to")
    check.add_argument("--format", default="auto", help="annotation format (default: auto-detect)")
    check.add_argument("--split", type=positive_int, default=1, help="UCF101/HMDB51 split number (default 1)")
    check.add_argument("--subset", default="train", help="train or test list of a split folder (default train)")
    check.add_argument("--backend", help="video backend: pyav, decord or frames "
                       "(default: frames for raw-frame lists, else pyav)")
    check.add_argument("--frame-template", default="img_{:05d}.jpg", help="frame file names for the frames backend")
    check.add_argument("--workers", type=positive_int, default=None, help="parallel checks (default: CPU count)")
    check.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    check.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from effvid.data.annotations import load_annotations
    from effvid.data.check import check_dataset
    from effvid.data.decode import BACKENDS
    from effvid.errors import ConfigError

    annotation = load_annotations(args.annotation, root=args.root, format=args.format, split=args.split,
                                  subset=args.subset)
    backend = args.backend or ("frames" if annotation.format == "rawframes" else "pyav")
    if backend not in BACKENDS:
        raise ConfigError(f"--backend: unknown video backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if not args.json:
        info(f"checking {len(annotation.records)} records of {args.annotation} ({annotation.format}) with {backend}")
    report = check_dataset(annotation, backend=backend, workers=args.workers, frame_template=args.frame_template,
                           progress=None)
    if args.json:
        print_json(report.to_dict())
    else:
        _print_report(report)
    return 0 if report.bad == 0 else 1


def _print_report(report) -> None:
    print(f"videos: {report.total}  ok: {report.ok}  bad: {report.bad}")
    if report.problems:
        width = max(len(problem["path"]) for problem in report.problems)
        print()
        print(f"{'path':<{width}}  reason")
        for problem in report.problems:
            print(f"{problem['path']:<{width}}  {problem['reason']}")
    print()
    print(f"{'':<10}  {'min':>10}  {'median':>10}  {'max':>10}")
    for name, summary in report.summaries.items():
        if summary is None:
            print(f"{name:<10}  {'-':>10}  {'-':>10}  {'-':>10}")
        else:
            print(f"{name:<10}  " + "  ".join(f"{summary[key]:>10.4g}" for key in ("min", "median", "max")))

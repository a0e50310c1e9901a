"""``effvid models``: every registered model with its default input, GMACs per view and parameters."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "models",
        help="list registered models with default input, GMACs and params",
        description="Registered models with their default input shape, GMACs per view and parameters.",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from effvid.commands import print_json
    from effvid.cost.static import count_spec, format_shape
    from effvid.models import get_entry, list_models

    rows = []
    for name in list_models():
        entry = get_entry(name)
        report = count_spec(entry.default_spec)
        rows.append({"name": name, "kind": entry.kind, "num_classes": entry.default_spec.num_classes,
                     "input_shape": list(report.input_shape), "gmacs": report.gmacs, "params": report.params})
    if args.json:
        print_json({"models": rows})
        return 0
    print(f"{'model':<20} {'kind':<9} {'input (B,C,T,H,W)':<20} {'GMACs':>9} {'params':>12}")
    for row in rows:
        print(f"{row['name']:<20} {row['kind']:<9} {format_shape(row['input_shape']):<20} {row['gmacs']:>9.3f} {row['params']:>12,}")
    return 0

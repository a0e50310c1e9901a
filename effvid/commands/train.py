"""``effvid train CONFIG [key=value ...]``: train a model from a YAML config (DDP under torchrun)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a model from a YAML config",
        description="Train a model from a YAML config (see configs/). key=value arguments override config "
        "keys (e.g. optim.lr=0.01 stages.0.epochs=3). Started by torchrun, it trains data-parallel; "
        "with resume: auto (the default) it continues the run in run_dir after its last complete epoch.",
    )
    parser.add_argument("config", metavar="CONFIG", help="training config (YAML)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout (rank 0)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import os

    from effvid.commands import info, print_json
    from effvid.engine.train_config import load_train_config
    from effvid.engine.trainer import train

    cfg = load_train_config(args.config, args.overrides)
    result = train(cfg)
    if os.environ.get("RANK", "0") != "0":
        return 0
    if args.json:
        print_json(result.to_dict())
    else:
        best = result.best_metrics
        score = f", best val top-1 {best['video_top1']:.4f} (epoch {best['epoch']})" if "video_top1" in best else ""
        info(f"trained {result.epochs_completed} epochs in {result.wall_time_s:.1f}s{score}")
        info(f"checkpoints: best {result.best_checkpoint}, last {result.last_checkpoint}")
    return 0

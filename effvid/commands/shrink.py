"""``effvid shrink CONFIG [key=value ...]``: run or resume a PAS search; ``effvid shrink report RUN_DIR``."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "shrink",
        help="PAS: progressively shrink a trained video network (hypotheses trained on Ray)",
        description="Run Progressive Architecture Shrinkage from a YAML config (see configs/pas/), with key=value "
        "overrides (e.g. iterations=3 train.epochs=10). Running the same command again resumes the run from "
        "RUN_DIR/ledger.json: finished hypotheses are kept, interrupted ones continue from their last epoch, "
        "failed ones are retried. A resume may raise iterations or change target_gmacs, control, retries, latency, "
        "resources and ray settings; a config that would change finished results (data, base, operators, gammas, "
        "train, distillation, tolerances, ...) or a replaced base checkpoint is refused (exit 2). "
        "Table 4's ablation runs on top of a search: the same command with ablation.iteration=K (and optionally "
        "ablation.operators=[s,t]) trains iteration K's input-operator hypotheses again without KD but fine-tuned "
        "(itK-s-nokd) and with KD from random weights (itK-s-scratch), beside the search and never selected. "
        "`effvid shrink report RUN_DIR` rewrites report.md/json and the plot.",
    )
    parser.add_argument("config", metavar="CONFIG", help="PAS config (YAML), or the word 'report'")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides (or RUN_DIR after 'report')")
    parser.add_argument("--ray-address", default=None, metavar="ADDR",
                        help="join this Ray cluster (e.g. ray://head:10001 or auto); default: a local Ray instance")
    parser.add_argument("--json", action="store_true", help="print one JSON object (the report summary) on stdout")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from effvid.commands import info, print_json
    from effvid.errors import ConfigError

    if args.config == "report":
        from effvid.methods.pas.report import table_markdown, write_report

        if len(args.overrides) != 1:
            raise ConfigError("usage: effvid shrink report RUN_DIR [--json]")
        summary = write_report(args.overrides[0])
    else:
        from effvid.methods.pas.config import load_shrink_config
        from effvid.methods.pas.report import table_markdown
        from effvid.methods.pas.search import run_search

        cfg = load_shrink_config(args.config, args.overrides)
        summary = run_search(cfg, ray_address=args.ray_address)
    if args.json:
        print_json(summary)
    else:
        print(table_markdown(summary))
        info(f"report: {summary['report']}; ledger: {summary['ledger']}")
    return 0

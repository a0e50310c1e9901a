"""``effvid analyze ANALYSIS ...``: reports on a trained model: what a dynamic model decides, and
how redundant a network's features are.

Each analysis is a subcommand under ``analyze``: :data:`ANALYSES` maps its name to the function
that adds its parser (and sets its ``run``), so a method that gains a report adds one entry.

``effvid analyze decisions CHECKPOINT --data LIST --out DIR``: AR-Net's per-frame decisions,
the Figure-4 strips (each sampled frame with its resolution or skip) of ``--video`` files or of
a few videos of the list, and per-class action usage on the list (PNG and ``usage.json``, with
the rates on SynthActions' uninformative stretches against elsewhere).

``effvid analyze redundancy CHECKPOINT --data LIST``: the VA-RED2 thesis's redundancy analysis
(appendix B.1) of any 3D checkpoint: per convolution, the correlation coefficient, RMSE and
redundancy proportion of its feature maps along time and along channels, as a table (stdout,
or ``--json``), ``redundancy.png`` and ``redundancy.json``.

``effvid analyze vared2 CHECKPOINT --data LIST --out DIR``: a VA-RED2 checkpoint's decisions:
the ratio of computed features per layer and class, the distribution of per-clip cost, and the
most and least expensive clip per class (PNGs and ``vared2.json``).

``effvid analyze dstep CHECKPOINT (--data LIST | --video PATH ...) --out DIR``: a D-STEP
checkpoint's Figure 3 (each sampled frame under a heat map of the computation its tiles get,
averaged over blocks) for ``--video`` files or the first videos of the list, and the channel
decision rates (skip / reuse / compute) per block (``decision_rates.png`` and ``dstep.json``).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

from effvid.commands import non_negative_int, positive_int


def _threshold(low: float, high: float | None) -> Callable[[str], float]:
    """An argparse ``type=`` for a number in ``[low, high]`` (no upper bound when ``high`` is None)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not (value >= low and (high is None or value <= high)):
            bound = f"in [{low:g}, {high:g}]" if high is not None else f">= {low:g}"
            raise argparse.ArgumentTypeError(f"must be a number {bound}, got {text!r}")
        return value

    parse.__name__ = "threshold"
    return parse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "analyze",
        help="analyse a trained model: a dynamic model's decisions, a network's feature redundancy",
        description="Reports on a trained model (what a dynamic model decides, how redundant a network's "
        "features are), one subcommand per analysis.",
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
    _add_source_options(parser)
    parser.add_argument("--video", action="append", default=[], metavar="PATH",
                        help="draw the strip of this video (repeatable; default: videos of the list)")
    parser.add_argument("--strips", type=positive_int, default=3, help="strips to draw without --video (default 3)")
    parser.add_argument("--out", required=True, metavar="DIR", help="folder for the PNGs and usage.json")
    _add_run_options(parser)
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


def _add_source_options(parser: argparse.ArgumentParser) -> None:
    """How to read an annotation list: its video root and format."""
    parser.add_argument("--root", metavar="DIR", help="folder the annotation's video paths are relative to")
    parser.add_argument("--format", default="auto", help="annotation format (default: detect)")


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    """How an analysis runs the model and reports: batch, loader workers, device, JSON."""
    parser.add_argument("--batch-size", type=positive_int, default=8, help="videos per forward pass (default 8)")
    parser.add_argument("--workers", type=non_negative_int, default=0,
                        help="DataLoader workers (default 0: load in this process)")
    parser.add_argument("--device", default="auto", help="auto (CUDA when present, default), cpu, cuda or cuda:N")
    parser.add_argument("--json", action="store_true", help="print one JSON object (the report) on stdout")


def _add_data_options(parser: argparse.ArgumentParser) -> None:
    """The options every analysis over an annotation list shares."""
    parser.add_argument("--data", required=True, metavar="LIST", help="annotation file or folder of the videos to analyse")
    _add_source_options(parser)
    parser.add_argument("--max-videos", type=positive_int, metavar="N", help="analyse only the first N videos of the list")
    _add_run_options(parser)


def _register_redundancy(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "redundancy",
        help="VA-RED2: feature-map redundancy along time and channels, per layer",
        description="The VA-RED2 thesis's redundancy analysis (appendix B.1) of a 3D checkpoint, plain or dynamic: "
        "for every convolution, the mean correlation coefficient and RMSE between its feature maps along time "
        "(frames) and along channels, and the proportion of maps that are redundant (correlation above "
        "--cc-threshold and RMSE above --rmse-threshold with some other map), averaged over one evaluation "
        "view per video; printed as a table and written to redundancy.png and redundancy.json.",
    )
    parser.add_argument("checkpoint", metavar="CHECKPOINT", help="checkpoint (.safetensors, .json, stem or run dir)")
    _add_data_options(parser)
    parser.add_argument("--out", metavar="DIR", help="folder for redundancy.png and redundancy.json "
                        "(default: the checkpoint's folder)")
    parser.add_argument("--cc-threshold", type=_threshold(-1.0, 1.0), default=0.85,
                        help="correlation above which two maps are similar (default 0.85, the thesis's)")
    parser.add_argument("--rmse-threshold", type=_threshold(0.0, None), default=0.001,
                        help="RMSE (maps scaled to [0, 1]) above which a similar pair counts (default 0.001, the thesis's)")
    parser.set_defaults(run=run_redundancy)


def _cell(values: dict[str, float | None] | None, metric: str) -> str:
    value = None if values is None else values[metric]
    return f"{'-':>7}" if value is None else f"{value:>7.3f}"


def run_redundancy(args: argparse.Namespace) -> int:
    from effvid.commands import info, print_json
    from effvid.methods.vared2.analysis import write_redundancy_report
    from effvid.models.inference import resolve_device

    report = write_redundancy_report(args.checkpoint, args.data, out_dir=args.out, root=args.root,
                                     format=args.format, max_videos=args.max_videos, batch_size=args.batch_size,
                                     num_workers=args.workers, device=resolve_device(args.device),
                                     cc_threshold=args.cc_threshold, rmse_threshold=args.rmse_threshold)
    if args.json:
        print_json(report)
        return 0
    info(f"plot: {report['png']}, {report['json']}")
    width = max([len("layer"), *(len(row["layer"]) for row in report["layers"])])
    print(f"{report['model']} on {report['num_clips']} clips")
    print(f"{'layer':<{width}}  {'C x T x H x W':<20} {'T-CC':>7} {'T-RMSE':>7} {'T-RP':>7} {'C-CC':>7} "
          f"{'C-RMSE':>7} {'C-RP':>7}")
    for row in report["layers"]:
        shape = " x ".join(str(n) for n in row["shape"])
        cells = " ".join(_cell(row[axis], m) for axis in ("temporal", "channel") for m in ("cc", "rmse", "rp"))
        print(f"{row['layer']:<{width}}  {shape:<20} {cells}")
    summary = report["summary"]
    cells = " ".join(_cell(summary[axis], m) for axis in ("temporal", "channel") for m in ("cc", "rmse", "rp"))
    print(f"{'mean over layers':<{width}}  {'':<20} {cells}")
    return 0


def _register_vared2(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "vared2",
        help="VA-RED2: computed features per layer, per-clip cost, most and least expensive clips",
        description="For a VA-RED2 checkpoint, on one evaluation view per video of the list: the ratio of "
        "computed features per layer, overall and per class, along time and channels (layer_ratios.png), the "
        "distribution of per-clip GMACs (cost_distribution.png), and per class the most and the least "
        "expensive clip (extremes.png, one frame each); everything in vared2.json.",
    )
    parser.add_argument("checkpoint", metavar="CHECKPOINT", help="VA-RED2 checkpoint (.safetensors, .json, stem or run dir)")
    _add_data_options(parser)
    parser.add_argument("--out", required=True, metavar="DIR", help="folder for the PNGs and vared2.json")
    parser.add_argument("--figure-classes", type=positive_int, default=20, metavar="N",
                        help="classes shown in extremes.png (default 20; vared2.json lists every class)")
    parser.set_defaults(run=run_vared2)


def run_vared2(args: argparse.Namespace) -> int:
    from effvid.commands import info, print_json
    from effvid.methods.vared2.analysis import write_vared2_report
    from effvid.models.inference import resolve_device

    report = write_vared2_report(args.checkpoint, args.data, args.out, root=args.root, format=args.format,
                                 max_videos=args.max_videos, figure_classes=args.figure_classes,
                                 batch_size=args.batch_size, num_workers=args.workers,
                                 device=resolve_device(args.device))
    if args.json:
        print_json(report)
        return 0
    for key in ("layer_ratios_png", "cost_distribution_png", "extremes_png", "json"):
        info(f"wrote {report[key]}")
    gmacs = report["gmacs"]
    print(f"{report['num_clips']} clips: GMACs per clip mean {gmacs['mean']:.4f}, min {gmacs['min']:.4f}, "
          f"max {gmacs['max']:.4f} (base network {report['base_gmacs']:.4f}, dense {report['dense_gmacs']:.4f})")
    for row in report["per_layer"]:
        print(f"{row['layer']}: temporal {row['temporal_ratio']:.3f}, channel {row['channel_ratio']:.3f}")
    return 0


def _register_dstep(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "dstep",
        help="D-STEP: computation per tile over the frames (Figure 3), channel decisions per block",
        description="For a D-STEP checkpoint, on one evaluation view per video: the Figure-3 picture of each "
        "--video (without --video, of the first --maps videos of --data): the sampled frames under a heat map "
        "of the share of the dense convolution work each tile gets, averaged over blocks (map_NN_<video>.png); "
        "and per block the fractions of channel decisions that skip, reuse and compute on the videos of --data "
        "(or the --video files), as decision_rates.png and dstep.json.",
    )
    parser.add_argument("checkpoint", metavar="CHECKPOINT", help="D-STEP checkpoint (.safetensors, .json, stem or run dir)")
    parser.add_argument("--data", metavar="LIST", help="annotation file or folder of the videos to count decisions on")
    _add_source_options(parser)
    parser.add_argument("--video", action="append", default=[], metavar="PATH",
                        help="draw the Figure-3 picture of this video (repeatable; default: videos of the list)")
    parser.add_argument("--maps", type=positive_int, default=3, help="pictures to draw without --video (default 3)")
    parser.add_argument("--max-videos", type=positive_int, metavar="N", help="count decisions on the first N videos only")
    parser.add_argument("--out", required=True, metavar="DIR", help="folder for the PNGs and dstep.json")
    _add_run_options(parser)
    parser.set_defaults(run=run_dstep)


def run_dstep(args: argparse.Namespace) -> int:
    from effvid.commands import info, print_json
    from effvid.methods.dstep.report import write_dstep_report
    from effvid.models.inference import resolve_device

    report = write_dstep_report(args.checkpoint, args.out, data=args.data, videos=args.video, maps=args.maps,
                                root=args.root, format=args.format, max_videos=args.max_videos,
                                batch_size=args.batch_size, num_workers=args.workers,
                                device=resolve_device(args.device))
    if args.json:
        print_json(report)
        return 0
    for figure in report["maps"]:
        info(f"map: {figure['png']}  (predicted {figure['prediction']}, {figure['gmacs']:.4f} GMACs)")
    info(f"rates: {report['rates_png']}, {report['json']}")
    rates = report["rates"]
    gmacs = rates["gmacs"]
    print(f"{rates['num_clips']} clips: GMACs per clip mean {gmacs['mean']:.4f}, min {gmacs['min']:.4f}, "
          f"max {gmacs['max']:.4f} (dense {rates['dense_gmacs']:.4f})")
    width = max(len(row["block"]) for row in rates["blocks"])
    print(f"{'block':<{width}}  {'skip':>6} {'reuse':>6} {'compute':>7} {'tiles':>6}")
    for row in rates["blocks"]:
        print(f"{row['block']:<{width}}  {row['skip']:>6.3f} {row['reuse']:>6.3f} {row['compute']:>7.3f} "
              f"{row['spatial_density']:>6.3f}")
    return 0


ANALYSES: dict[str, Callable[[argparse._SubParsersAction], None]] = {
    "decisions": _register_decisions,
    "redundancy": _register_redundancy,
    "vared2": _register_vared2,
    "dstep": _register_dstep,
}
"""Analysis name -> the function adding its ``effvid analyze`` subparser (in ``--help`` order)."""

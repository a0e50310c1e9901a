"""``effvid export CHECKPOINT --format torchscript|onnx|exported``: a deployable file, checked.

The checkpoint's network is captured at its spec's input shape, written (default: beside the
checkpoint, ``.torchscript.pt``, ``.onnx`` or ``.pt2``), loaded back and run against the
eager model; the max difference is printed, and an export that does not match is an error.
See :mod:`effvid.engine.export`.
"""

from __future__ import annotations

import argparse

from effvid.commands import info, print_json

FORMAT_CHOICES = ("torchscript", "onnx", "exported")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export",
        help="export a checkpoint to TorchScript, ONNX or torch.export, checked against eager",
        description="Export a static checkpoint (a PAS-reduced one included) at its spec's input shape, load the "
        "export back and compare it with the eager model on a clip. Dynamic models: TorchScript is refused; "
        "torch.export (and ONNX, built on it) says in one line when it cannot capture data-dependent control flow.",
    )
    parser.add_argument("checkpoint", metavar="CHECKPOINT", help="checkpoint (.safetensors, .json, stem or run dir)")
    parser.add_argument("--format", required=True, choices=FORMAT_CHOICES,
                        help="torchscript (torch.jit.trace), onnx (torch.onnx.export; needs onnx), "
                        "exported (torch.export, .pt2)")
    parser.add_argument("--out", metavar="PATH", help="output file (default: beside the checkpoint, the format's suffix)")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from effvid.cost.static import format_shape
    from effvid.engine.export import export_checkpoint

    result = export_checkpoint(args.checkpoint, args.format, args.out)
    if args.json:
        print_json(result)
        return 0
    for note in result["notes"]:
        info(f"note: {note}")
    print(f"{result['checkpoint']} ({result['model']}) -> {result['out']} ({result['format']}, "
          f"{result['bytes'] / 1e6:.2f} MB)")
    print(f"reloaded export matches eager at input {format_shape(result['input_shape'])}: max |diff| "
          f"{result['max_abs_diff']:.3g} (relative {result['max_rel_diff']:.3g}, tolerance {result['tolerance']:g})")
    return 0

"""``effvid flops MODEL_OR_CHECKPOINT``: GMACs per view and parameters, optionally per layer and
after a sequence of PAS reduction operators (``--reduce s,t,c``).

The cost is one view at the spec's test input (its test crop: SlowFast is trained at 224 and
priced at 256, as papers report it); ``--size S`` sets both crops to ``S``. With ``--reduce``
every step is priced the same way, so ``effvid flops r2plus1d_18 --reduce c,f,t,t,t`` and
``effvid flops slowfast_4x16_r50 --reduce c,s,t,s,f`` print the PAS paper's Table 1 sequences.

A checkpoint (its stem or any of its files, see :mod:`effvid.engine.checkpoint`) is priced from
the ArchSpec in its JSON sidecar; the weights are not loaded (the cost does not depend on them),
but their checksum is verified, so a truncated or altered checkpoint is refused as everywhere else.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from effvid.commands import positive_float, positive_int, print_json
from effvid.errors import CheckpointError

if TYPE_CHECKING:
    from effvid.spec import ArchSpec

_OVERRIDES = {"frames": "num_frames", "classes": "num_classes", "width": "width_mult", "depth": "depth_mult"}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "flops",
        help="GMACs per view and parameters of a model or checkpoint",
        description="GMACs of conv, linear and matmul per view (what papers call GFLOPs) at the stated input, "
        "counted on the meta device, and parameters.",
    )
    parser.add_argument("model", metavar="MODEL_OR_CHECKPOINT", help="a registered model name, or a .safetensors/.json checkpoint")
    parser.add_argument("--frames", type=positive_int, help="clip frames T (fast-pathway frames for SlowFast; 1 for the per-frame cost of 2D models)")
    parser.add_argument("--size", type=positive_int, help="crop size S for training and testing (input S x S); "
                        "without it, the spec's crops, priced at its test crop")
    parser.add_argument("--classes", type=positive_int, help="number of classes")
    parser.add_argument("--width", type=positive_float, help="width multiplier")
    parser.add_argument("--depth", type=positive_float, help="depth multiplier")
    parser.add_argument("--per-layer", action="store_true", help="also list the cost of every layer")
    parser.add_argument("--with-bn", action="store_true", help="count BatchNorm too (5 MACs per element, PyTorchVideo's convention)")
    parser.add_argument("--reduce", metavar="OPS", help="comma-separated PAS operators from s,t,f,c,l; prints the cost after each step")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from effvid.cost.static import count_spec, format_shape
    from effvid.methods.pas.operators import Reduced, apply_sequence, parse_operators

    overrides = {field: getattr(args, flag) for flag, field in _OVERRIDES.items() if getattr(args, flag) is not None}
    if args.size is not None:
        overrides.update(crop_size=args.size, test_crop_size=None)
    spec = resolve_spec(args.model).replace(**overrides)
    operators = parse_operators(args.reduce) if args.reduce else None
    report = count_spec(spec, with_bn=args.with_bn, per_layer=args.per_layer)
    out: dict[str, Any] = {**report.to_dict(), "spec": spec.to_dict()}
    if operators is not None:
        steps = []
        for step, (operator, result) in enumerate(zip(operators, apply_sequence(spec, operators)), start=1):
            row: dict[str, Any] = {"step": step, "operator": operator}
            if isinstance(result, Reduced):
                cost = count_spec(result.spec, with_bn=args.with_bn)
                row.update(pruned=False, spec=_summary(result.spec), input_shape=list(cost.input_shape), gmacs=cost.gmacs,
                           params=cost.params, ratio=cost.gmacs / report.gmacs, factors=dict(result.factors))
            else:
                row.update(pruned=True, reason=result.reason)
            steps.append(row)
        out["reduce"] = steps
    if args.json:
        print_json(out)
        return 0
    bn = " incl. BN" if args.with_bn else ""
    dense = " (dynamic: dense, every decision at its largest; `effvid eval` measures the mean)" if report.dynamic else ""
    print(f"{report.model}: {report.gmacs:.3f} GMACs{bn}{dense} per view at input {format_shape(report.input_shape)} (B,C,T,H,W), "
          f"{report.params:,} params")
    if args.per_layer:
        width = max(len(row["module"]) for row in report.layers)
        for row in report.layers:
            print(f"  {row['module']:<{width}}  {row['op']:<12} {row['gmacs']:10.4f}")
    if operators is not None:
        print(f"{'step':>4} {'op':>2}  {'input (B,C,T,H,W)':<20} {'train':>5} {'stride':>6} {'width':>6} {'depth':>6} "
              f"{'GMACs':>9} {'ratio':>6} {'params':>12}")
        for row in out["reduce"]:
            if row["pruned"]:
                print(f"{row['step']:>4} {row['operator']:>2}  pruned: {row['reason']}")
                continue
            s = row["spec"]
            print(f"{row['step']:>4} {row['operator']:>2}  {format_shape(row['input_shape']):<20} {s['crop_size']:>5} {s['frame_stride']:>6} "
                  f"{s['width_mult']:>6.3f} {s['depth_mult']:>6.3f} {row['gmacs']:>9.3f} {row['ratio']:>6.3f} {row['params']:>12,}")
    return 0


def resolve_spec(model_or_checkpoint: str) -> ArchSpec:
    """The spec of a registered model name, or the one in a checkpoint's JSON sidecar."""
    from effvid.engine.checkpoint import verify_weights
    from effvid.models import default_spec, list_models

    if model_or_checkpoint in list_models():
        return default_spec(model_or_checkpoint)
    path = Path(model_or_checkpoint)
    if not (path.suffix in (".safetensors", ".json") or path.exists() or Path(f"{path}.json").exists()):
        return default_spec(model_or_checkpoint)  # raises, listing the known models
    meta = verify_weights(path)  # a truncated or altered checkpoint is refused here too, not priced
    if meta.get("spec") is None:
        raise CheckpointError(f"{path}: the checkpoint's sidecar holds no model spec")
    from effvid.spec import ArchSpec

    return ArchSpec.from_dict(meta["spec"])


def _summary(spec: ArchSpec) -> dict[str, Any]:
    keys = ("num_frames", "frame_stride", "crop_size", "width_mult", "depth_mult")
    return {**{key: getattr(spec, key) for key in keys}, "test_crop": spec.test_crop, "clip_span": spec.clip_span}

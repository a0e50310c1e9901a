"""``effvid bench MODEL_OR_CHECKPOINT``: measured latency, throughput and achieved GMAC/s.

A registered model name is built from its default spec with random weights (``--frames``,
``--size``, ``--width``, ``--depth``, ``--classes`` change the spec as in ``effvid flops``:
``--size S`` sets both the training and the test crop to ``S``); a
checkpoint (stem, any of its files, or a run directory) is loaded, and ``--frames``/``--size``
rebuild it at another input. The model is prepared with
:func:`~effvid.models.inference.prepare_for_inference` (default variant) and timed on
``--device`` with ``--threads`` torch threads: per batch size, ``--warmup`` untimed and
``--repeats`` timed forwards of a random clip, the median reported. GMACs per view come from
the static counter (what ``effvid flops`` prints).

A dynamic model's work depends on its input, so it is timed on real clips: the first
``--clips`` validation clips (``--data``, default the checkpoint's recorded validation
annotation) through ``forward_output`` at batch 1, with the mean cost they reported beside
the mean time.

The 1-minute load average is recorded before and after, and the cores other processes kept
busy during the measurement; a load average above the threads + 0.5 (or other processes
above a tenth of a core) gets a warning: another process competed, and the figures are not
quiet-machine figures.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from effvid.commands import info, positive_float, positive_int, print_json

if TYPE_CHECKING:
    import torch
    from torch import nn

    from effvid.spec import ArchSpec

_NAME_OVERRIDES = {"frames": "num_frames", "size": "crop_size", "classes": "num_classes", "width": "width_mult",
                   "depth": "depth_mult"}
_INPUT_FIELDS = frozenset({"num_frames", "crop_size", "test_crop_size"})
"""Spec fields a checkpoint may be rebuilt with: its input, not its architecture."""


def batch_list(text: str) -> list[int]:
    """An argparse ``type=`` for ``1,8``: comma-separated batch sizes >= 1."""
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"must be comma-separated integers >= 1, e.g. 1,8; got {text!r}")
    return list(dict.fromkeys(values))


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="measured latency, throughput and GMAC/s of a model or checkpoint",
        description="Median latency (ms) and throughput (clips/s) per batch size after warm-up, on the model "
        "prepared for inference, with GMACs per view, achieved GMAC/s, threads, device and the 1-minute load "
        "average before and after. A dynamic checkpoint is timed on real validation clips at batch 1.",
    )
    parser.add_argument("model", metavar="MODEL_OR_CHECKPOINT",
                        help="a registered model name (random weights), or a checkpoint (.safetensors/.json, stem, run dir)")
    parser.add_argument("--device", choices=("cpu", "cuda"), help="device to time on (default: cuda when available)")
    parser.add_argument("--batch", type=batch_list, metavar="B,B", help="batch sizes (default 1,8; a dynamic model: 1)")
    parser.add_argument("--threads", type=positive_int, help="torch threads (default: torch's current count)")
    parser.add_argument("--repeats", type=positive_int, default=5, help="timed forwards per batch size (default 5)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed forwards before timing (default 1)")
    parser.add_argument("--per-layer", action="store_true",
                        help="also split the batch-1 forward time and the GMACs over the conv/linear layers "
                             "(a dynamic layer or block as one)")
    parser.add_argument("--frames", type=positive_int, help="clip frames T")
    parser.add_argument("--size", type=positive_int, help="crop size S for training and testing (input S x S); "
                        "without it, the spec's test crop")
    parser.add_argument("--classes", type=positive_int, help="number of classes (model names only)")
    parser.add_argument("--width", type=positive_float, help="width multiplier (model names only)")
    parser.add_argument("--depth", type=positive_float, help="depth multiplier (model names only)")
    parser.add_argument("--data", metavar="ANNOTATION",
                        help="dynamic models: validation clips to time (default: the checkpoint's recorded validation set)")
    parser.add_argument("--root", metavar="DIR", help="folder the annotation's video paths are relative to")
    parser.add_argument("--clips", type=positive_int, default=16, help="dynamic models: clips to time (default 16)")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from effvid.cost.latency import CpuWatch, load_record, machine_load, torch_threads
    from effvid.errors import ConfigError
    from effvid.models.inference import resolve_device

    if args.warmup < 0:
        raise ConfigError(f"--warmup must be >= 0, got {args.warmup}")
    device = resolve_device(args.device or "auto")
    threads = args.threads or torch.get_num_threads()
    before = machine_load()
    with torch_threads(threads):
        model, spec, source = _resolve_model(args)
        with CpuWatch() as cpu:
            result = _bench(model, spec, source, args, device=device, threads=threads)
    result.update(load_record(before, machine_load(), threads, other_cores=cpu.other_cores))
    if result["warning"]:
        info(f"warning: {result['warning']}")
    if args.json:
        print_json(result)
        return 0
    _print(result)
    return 0


def _resolve_model(args: argparse.Namespace) -> tuple[nn.Module, ArchSpec, dict[str, Any]]:
    """The model (on the CPU, eval mode), its spec, and where it came from."""
    import torch

    from effvid.engine.checkpoint import load_model, read_sidecar, resolve_checkpoint
    from effvid.errors import CheckpointError, ConfigError
    from effvid.models import create_from_spec, default_spec, list_models

    name = args.model
    overrides = _spec_overrides(args)
    path = Path(name)
    if name in list_models() or not (path.suffix in (".safetensors", ".json") or path.exists()
                                     or Path(f"{name}.json").exists()):
        spec = default_spec(name).replace(**overrides)  # an unknown name raises, listing the known models
        torch.manual_seed(0)
        return create_from_spec(spec).eval(), spec, {"model": spec.name, "checkpoint": None, "meta": {}}
    refused = sorted(set(overrides) - _INPUT_FIELDS)
    if refused:
        flags = ", ".join(f"--{flag}" for flag, field in _NAME_OVERRIDES.items() if field in refused)
        raise ConfigError(f"{flags}: a checkpoint's architecture is fixed by its weights; only --frames and --size "
                          "change its input")
    stem = resolve_checkpoint(name)
    meta = read_sidecar(stem)
    model = load_model(stem)
    spec = model.spec
    if overrides:
        spec = spec.replace(**overrides)
        rebuilt = create_from_spec(spec)
        try:
            rebuilt.load_state_dict(model.state_dict(), strict=True)
        except RuntimeError as exc:
            raise CheckpointError(f"{stem}: its weights do not fit the model at --frames/--size "
                                  f"({str(exc).splitlines()[0]})") from None
        model = rebuilt.eval()
    return model, spec, {"model": spec.name, "checkpoint": str(stem), "meta": meta}


def _spec_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The spec fields the flags given set; ``--size S`` sets both crops to ``S``
    (``test_crop_size=None``), as ``effvid flops --size`` does."""
    overrides = {field: getattr(args, flag) for flag, field in _NAME_OVERRIDES.items() if getattr(args, flag) is not None}
    if args.size is not None:
        overrides["test_crop_size"] = None
    return overrides


def _bench(model: nn.Module, spec: ArchSpec, source: dict[str, Any], args: argparse.Namespace, *,
           device: torch.device, threads: int) -> dict[str, Any]:
    from effvid.cost.latency import time_batches
    from effvid.cost.static import count_spec
    from effvid.models import prepare_for_inference
    from effvid.models.base import is_dynamic
    from effvid.models.inference import DEFAULT_VARIANT

    cost = count_spec(spec)
    dynamic = is_dynamic(model)
    model = prepare_for_inference(model.to(device))
    result: dict[str, Any] = {
        "model": source["model"], "checkpoint": source["checkpoint"], "dynamic": dynamic,
        "input_shape": list(cost.input_shape), "gmacs": cost.gmacs, "params": cost.params,
        "device": str(device), "threads": threads, "variant": DEFAULT_VARIANT, "repeats": args.repeats,
        "warmup": args.warmup, "spec": spec.to_dict(),
    }
    if dynamic:
        result["gmacs_dense"] = cost.gmacs
        result.update(_bench_dynamic(model, spec, source, args, device=device))
        return result
    batches = args.batch or [1, 8]
    result["batches"] = time_batches(model, cost.input_shape, batches, gmacs=cost.gmacs, repeats=args.repeats,
                                     warmup=args.warmup, device=device)
    if args.per_layer:
        result["per_layer"] = _per_layer_static(model, spec, args, device=device)
    return result


def _per_layer_static(model: nn.Module, spec: ArchSpec, args: argparse.Namespace, *, device: torch.device) -> dict[str, Any]:
    import torch

    from effvid.cost.latency import layer_table, leaf_layers, static_layer_gmacs, time_layers
    from effvid.cost.static import count_spec, spec_input_shape

    cost = count_spec(spec, per_layer=True)
    clip = torch.randn(spec_input_shape(spec), generator=torch.Generator().manual_seed(0))
    times = time_layers(model, [clip], repeats=args.repeats, warmup=args.warmup, device=device)
    types = {name: type(module).__name__ for name, module in leaf_layers(model).items()}
    rows = layer_table(times, static_layer_gmacs(cost.layers), cost.gmacs, types)
    return {"batch": 1, "runs": times.runs, "forward_ms": times.total * 1000.0 / times.runs, "gmacs": cost.gmacs,
            "gmacs_from": "static", "rows": rows}


def _bench_dynamic(model: nn.Module, spec: ArchSpec, source: dict[str, Any], args: argparse.Namespace, *,
                   device: torch.device) -> dict[str, Any]:
    from effvid.cost.latency import executed_layer_gmacs, layer_table, leaf_layers, time_clips, time_layers
    from effvid.errors import ConfigError

    if args.batch and args.batch != [1]:
        raise ConfigError(f"{source['model']} is dynamic: it is timed on real clips at batch 1 (its work depends on "
                          "each clip), so --batch takes only 1")
    clips, data = _validation_clips(spec, source, args)
    out: dict[str, Any] = {"data": data, "clip_source": "validation clips through forward_output, batch 1",
                           "clips": time_clips(model, clips, repeats=args.repeats, warmup=args.warmup, device=device)}
    if args.per_layer:
        forward = model.forward_output
        times = time_layers(model, clips, forward=forward, repeats=args.repeats, warmup=args.warmup, device=device)
        gmacs, total = executed_layer_gmacs(model, clips, forward=forward, device=device)
        types = {name: type(module).__name__ for name, module in leaf_layers(model).items()}
        out["per_layer"] = {"batch": 1, "runs": times.runs, "forward_ms": times.total * 1000.0 / times.runs,
                            "gmacs": total, "gmacs_from": "executed (mean over the clips)",
                            "rows": layer_table(times, gmacs, total, types)}
    return out


def _validation_clips(spec: ArchSpec, source: dict[str, Any], args: argparse.Namespace) -> tuple[list[Any], str]:
    """The first ``--clips`` test-transformed clips of the validation annotation, each ``(1, C, T, H, W)``."""
    from effvid.data.annotations import load_annotations
    from effvid.data.dataset import VideoDataset
    from effvid.errors import ConfigError

    meta = source["meta"]
    recorded = (meta.get("extra") or {}).get("data") or {}
    data, root = args.data, args.root
    if data is None:
        data, root = recorded.get("val"), root or recorded.get("root")
        if data is None:
            where = f"{source['checkpoint']}.json records no validation annotation" if source["checkpoint"] \
                else f"{source['model']} is a model name"
            raise ConfigError(f"{where}; a dynamic model is timed on real clips: give --data ANNOTATION")
    transforms = meta.get("transforms") or {}
    annotation = load_annotations(data, root=root, subset="test")
    dataset = VideoDataset(annotation, spec=spec, train=False, backend=transforms.get("backend", "pyav"),
                           target_fps=transforms.get("target_fps"))
    count = min(args.clips, len(dataset))
    return [dataset[i]["clip"].unsqueeze(0) for i in range(count)], str(data)


def _print(result: dict[str, Any]) -> None:
    from effvid.cost.static import format_shape

    what = result["checkpoint"] or f"{result['model']} (random weights)"
    dense = " dense (every decision at its largest)" if result["dynamic"] else ""
    print(f"{what}: {result['gmacs']:.3f} GMACs{dense} per view at input {format_shape(result['input_shape'])} "
          f"(B,C,T,H,W), {result['params']:,} params")
    print(f"{result['device']}, {result['threads']} threads, {result['variant']}, median of {result['repeats']} runs "
          f"after {result['warmup']} warm-up")
    if result["dynamic"]:
        c = result["clips"]
        print(f"{c['clips']} clips of {result['data']} at batch 1: {c['latency_ms_mean']:.2f} ms mean "
              f"({c['latency_ms_median']:.2f} median), {c['clips_per_s']:.2f} clips/s, "
              f"{c['gmacs_mean']:.4f} GMACs mean cost (min {c['gmacs_min']:.4f}, max {c['gmacs_max']:.4f}), "
              f"{c['gmac_per_s']:.2f} GMAC/s")
    else:
        print(f"{'batch':>5} {'latency ms':>11} {'clips/s':>9} {'GMAC/s':>9}")
        for row in result["batches"]:
            print(f"{row['batch']:>5} {row['latency_ms']:>11.2f} {row['clips_per_s']:>9.2f} {row['gmac_per_s']:>9.2f}")
    others = "" if result["other_cpu_cores"] is None else f"; other processes used {result['other_cpu_cores']:.2f} cores"
    print(f"load average (1 min): {result['load_average_before']:.2f} before, {result['load_average_after']:.2f} after"
          f"{others}")
    per_layer = result.get("per_layer")
    if per_layer:
        print(f"per layer at batch 1 ({per_layer['runs']} runs, {per_layer['forward_ms']:.2f} ms per forward, "
              f"GMACs {per_layer['gmacs_from']}), by time:")
        width = max(len(row["module"]) for row in per_layer["rows"])
        print(f"  {'module':<{width}} {'type':<8} {'GMACs':>9} {'GMACs %':>8} {'ms':>9} {'time %':>7}")
        for row in per_layer["rows"]:
            print(f"  {row['module']:<{width}} {row['type']:<8} {row['gmacs']:>9.4f} {100 * row['gmacs_share']:>8.2f} "
                  f"{row['time_ms']:>9.3f} {100 * row['time_share']:>7.2f}")

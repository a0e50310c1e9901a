"""D-STEP benchmark on SynthActions-small (writes JSON; not a test).

Trains the dense TSM-R18 (``configs/dstep/synth_tsm_r18.yaml``, width 1/4, 8 segments of 64 px),
then from its best checkpoint D-STEP at D = 0.8, 0.6, 0.4 (``synth_dstep_d0{80,60,40}.yaml``) and
the Table-3 ablations at D = 0.6 (``synth_tsn_dynamic_shift``, ``synth_tsm_dcp``,
``synth_adafuse``, ``synth_spatial_only``), every run resumable in ``--run-dir``, and reports:

1. per target D, the mean GMACs per video against D x the dense TSM-R18's (relative error);
2. video top-1 of every row, and D = 0.6 against the dense TSM-R18;
3. the Table-3 rows with their top-1 and mean/min/max GMACs per video;
4. batch-1 CPU latency per video of D-STEP at D = 0.6 against the dense TSM-R18, both prepared
   for inference the same way and timed on the same validation clips, interleaved
   (:func:`effvid.engine.compare.compare_models`), with the ratio wall-clock saving / GMACs saving;
5. the same split per ResNet stage (time from forward hooks, GMACs from the decisions, and the
   share of frames whose blocks fell back to dense execution), showing where gathering tiles pays;
   and the same latency comparison at the paper's scale (:func:`paper_scale_latency`: TSM-R18 at
   full width, 8 frames of 224 px, each block forced to the tile masks and channel actions the
   trained D = 0.6 model chose on its median-cost validation clip), where the convolutions are large enough for the per-op overhead not to
   decide the figure;
6. the slimmed bound (:func:`slimmed_bound`), at this input and at the paper's: the dense
   TSM-R18 against a static copy whose blocks compute 60% of their middle channels, no
   decisions at all, i.e. the largest ratio of time saved to GMACs saved that decisions at
   D = 0.6 could reach if they cost nothing;
7. the reported cost against the executed-op count on every validation clip, per D-STEP model.

Expected (issue 12), reported either way: mean cost within 5% of D x dense at each D; top-1 at
D = 0.6 within 2 points of the dense TSM-R18; latency saving / GMACs saving >= 0.7 at D = 0.6;
executed == reported on every clip.

    nice .venv/bin/python benchmarks/dstep_synth.py [--data data/bench] [--run-dir runs/bench-dstep-synth] \\
        [--out benchmarks/results/dstep_synth.json] [--tsm-epochs N] [--latency-clips 80] \\
        [--paper-clips 3]

Run it on a quiet machine: the latencies are only meaningful when nothing else runs (the load
average before and after is recorded, with a warning when another process competed).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from effvid.cost.executed import count_executed
from effvid.cost.latency import (
    compare_on_clips,
    load_record,
    machine_load,
    random_input_saving,
    saving_ratio,
    torch_threads,
)
from effvid.cost.static import count_spec
from effvid.data.synthetic import ensure_synthactions
from effvid.engine.checkpoint import load_model
from effvid.engine.compare import compare_models, executed_on_dataset, validation_clips
from effvid.engine.evaluate import evaluate
from effvid.engine.train_config import load_train_config
from effvid.engine.trainer import train
from effvid.methods.dstep.model import DStep
from effvid.methods.dstep.sparse import runs_dense
from effvid.models import create_from_spec, default_spec, prepare_for_inference
from effvid.models.layers import BasicBlock, conv2d
from effvid.spec import ArchSpec, MethodSpec, spec_input_shape

CONFIG_DIR = Path(__file__).resolve().parents[1] / "effvid" / "configs" / "dstep"
TARGETS = {0.8: "synth_dstep_d080", 0.6: "synth_dstep_d060", 0.4: "synth_dstep_d040"}
ABLATIONS = {
    "TSN + dynamic TS + DCP": "synth_tsn_dynamic_shift",
    "TSM + DCP": "synth_tsm_dcp",
    "TSM + dynamic TS + DCP (AdaFuse-like)": "synth_adafuse",
    "TSM + spatial only": "synth_spatial_only",
}
"""Table 3's rows beside the dense TSM-R18 and D-STEP (TSM + dynamic TS + DCP + spatial) at D = 0.6."""


def train_run(config: str, run_dir: Path, data: Sequence[str], extra: Sequence[str] = ()) -> Path:
    """Train (or resume, or return at once) ``config`` into ``run_dir``; its best checkpoint's stem."""
    cfg = load_train_config(CONFIG_DIR / f"{config}.yaml", [f"run_dir={run_dir}", *data, *extra])
    result = train(cfg, progress=False)
    return result.best_checkpoint or result.last_checkpoint


def stage_split(dense: torch.nn.Module, dstep: DStep, clips: Sequence[torch.Tensor], *, threads: int,
                repeats: int = 2) -> list[dict[str, Any]]:
    """Per ResNet stage, batch-1 time of the dense network and of D-STEP on ``clips`` (forward
    hooks on the stage modules, both prepared for inference, interleaved clip by clip), their
    GMACs, the ratio wall-clock saving / GMACs saving, and D-STEP's share of block frames that
    ran densely (``dense_above``)."""
    names = list(dstep.stage_names)
    times = {which: dict.fromkeys(names, 0.0) for which in ("dense", "dstep")}
    dstep_gmacs = dict.fromkeys(names, 0.0)
    fallback = {name: [0, 0] for name in names}
    hooks = []
    started: dict[str, float] = {}
    for which, model in (("dense", dense), ("dstep", dstep)):
        for name in names:
            stage = model.get_submodule(name)
            hooks.append(stage.register_forward_pre_hook(lambda *_, n=name: started.__setitem__(n, time.perf_counter())))
            hooks.append(stage.register_forward_hook(
                lambda *_, n=name, w=which: times[w].__setitem__(n, times[w][n] + time.perf_counter() - started[n])))
    size = (clips[0].shape[-2], clips[0].shape[-1])
    in_size = dstep._frame_fixed_macs(size)[1]
    dense_gmacs = dict.fromkeys(names, 0.0)
    for block_name, block in zip(dstep.block_names, dstep.blocks()):
        dense_gmacs[block_name.split(".")[0]] += clips[0].shape[2] * block.dense_macs(in_size)[1] / 1e9
        in_size = block.out_size(*in_size)
    prepared = {"dense": prepare_for_inference(dense), "dstep": prepare_for_inference(dstep)}
    try:
        with torch_threads(threads), torch.no_grad():
            for clip in clips[:2]:  # warm-up
                for model in prepared.values():
                    model(clip)
            for which in times:
                times[which] = dict.fromkeys(names, 0.0)
            for _ in range(repeats):
                for clip in clips:
                    prepared["dense"](clip)
                    out = dstep.forward_output(clip)
                    for i, (block_name, block) in enumerate(zip(dstep.block_names, dstep.blocks())):
                        stage = block_name.split(".")[0]
                        dstep_gmacs[stage] += float(out.decisions["block_gmacs"][0, i]) / repeats
                        mask = block.last.mask
                        ran_dense = runs_dense(mask.flatten(1).sum(dim=1), mask[0].numel(), block.dense_above)
                        fallback[stage][0] += int(ran_dense.sum())
                        fallback[stage][1] += len(ran_dense)
    finally:
        for hook in hooks:
            hook.remove()
    runs = repeats * len(clips)
    rows = []
    for name in names:
        base_ms, ms = 1e3 * times["dense"][name] / runs, 1e3 * times["dstep"][name] / runs
        gmacs = dstep_gmacs[name] / len(clips)
        saved = 1.0 - gmacs / dense_gmacs[name]
        rows.append({"stage": name, "dense_ms": base_ms, "dstep_ms": ms, "dense_gmacs": dense_gmacs[name],
                     "dstep_gmacs": gmacs, "gmacs_saving": saved, "time_saving": 1.0 - ms / base_ms,
                     "latency_saving_per_gmacs_saving": (1.0 - ms / base_ms) / saved if saved > 0 else None,
                     "dense_fallback_share": fallback[name][0] / max(1, fallback[name][1])})
    return rows


def decision_pattern(dstep: DStep, clips: Sequence[torch.Tensor]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per block of a trained D-STEP, the tile mask ``(T, rows, cols)`` and the channel actions
    ``(T, C)`` (slot indices) it chose on the clip of median cost among ``clips``: a real
    pattern, with the temporal correlation of a trained policy."""
    with torch.no_grad():
        costs = [float(dstep.eval().forward_output(clip).cost[0]) for clip in clips]
        median = sorted(range(len(clips)), key=costs.__getitem__)[len(clips) // 2]
        dstep.forward_output(clips[median])
    return [(block.last.mask.clone(), block.last.decisions.argmax(dim=-1)) for block in dstep.blocks()]  # type: ignore[union-attr]


def _drawn_once(run: Any, draw: Any) -> Any:
    """A forward that runs ``run`` (its work stays timed and counted) and returns ``draw(shape,
    *args)`` of its output's shape, drawn once per shape."""
    drawn: dict[tuple[int, ...], torch.Tensor] = {}

    def forward(*args: Any) -> torch.Tensor:
        shape = tuple(run(*args).shape)
        if shape not in drawn:
            drawn[shape] = draw(shape, *args)
        return drawn[shape]

    return forward


def force_decisions(dstep: DStep, pattern: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> None:
    """Make every block of ``dstep`` decide as ``pattern`` (:func:`decision_pattern`, from a
    smaller network) says: each frame's tile mask resized to the block's grid (nearest), channel
    ``j`` of ``C`` taking the actions of the pattern's channel ``j * C_pattern // C``; the mask
    and policy networks still run, so their time and MACs stay in the figures."""
    for block, (tiles, actions) in zip(dstep.blocks(), pattern):

        def mask(shape: tuple[int, ...], x: torch.Tensor, _: Any, t: torch.Tensor = tiles) -> torch.Tensor:
            return torch.nn.functional.interpolate(t[None].float(), size=shape[1:], mode="nearest")[0].to(x.dtype)

        def policy(shape: tuple[int, ...], pooled: torch.Tensor, _: int, a: torch.Tensor = actions) -> torch.Tensor:
            source = torch.arange(shape[1]) * a.shape[1] // shape[1]
            return torch.nn.functional.one_hot(a[:, source], 3).to(pooled.dtype)

        block.mask.forward = _drawn_once(block.mask.forward, mask)  # type: ignore[method-assign]
        block.policy.forward = _drawn_once(block.policy.forward, policy)  # type: ignore[method-assign]


def paper_scale_latency(pattern: Sequence[tuple[torch.Tensor, torch.Tensor]], *, clips: int, repeats: int,
                        threads: int, frames: int = 8, size: int = 224) -> dict[str, Any]:
    """Batch-1 latency of D-STEP on the paper's TSM-R18 (full width, ``frames`` at ``size`` px,
    tiles of 32 input pixels, random weights) against the plain TSM-R18 prepared the same way,
    each block forced to the masks and channel actions ``pattern`` the trained model chose on a
    real clip (:func:`force_decisions`): the decision pattern of a trained model, not decisions
    trained at this scale. Also the per-stage split (:func:`stage_split`)."""
    torch.manual_seed(0)
    spec = default_spec("tsm_r18", num_classes=174, crop_size=size, num_frames=frames,
                        method=MethodSpec("dstep", {}))
    dstep = create_from_spec(spec)
    assert isinstance(dstep, DStep)
    force_decisions(dstep, pattern)
    dense = create_from_spec(spec.replace(method=None))
    inputs = [torch.randn(1, 3, frames, size, size) for _ in range(clips)]
    saving = random_input_saving(dense, dstep, inputs, base_gmacs=count_spec(spec.replace(method=None)).gmacs,
                                 repeats=repeats, threads=threads)
    stages = stage_split(dense, dstep, inputs, threads=threads, repeats=1)
    return {"input": f"{frames}x{size}x{size}", "clips": clips, "repeats": repeats, "threads": threads,
            "dense_gmacs": saving["base_gmacs"], "dstep_gmacs": saving["dynamic_gmacs"],
            "gmacs_saving": saving["gmacs_saving"], "dense_latency_ms": saving["base_latency_ms"],
            "dstep_latency_ms": saving["dynamic_latency_ms"], "latency_saving": saving["latency_saving"],
            "latency_saving_per_gmacs_saving": saving["latency_saving_per_gmacs_saving"],
            "stages": stages}


def slimmed(model: nn.Module, keep: float) -> nn.Module:
    """``model`` (in place) with the middle channels of every BasicBlock (``conv1``'s outputs,
    ``conv2``'s inputs) cut to ``keep`` of their number, freshly initialised."""
    for block in model.modules():
        if isinstance(block, BasicBlock):
            c1, c2 = block.conv1, block.conv2
            k = max(1, round(c1.out_channels * keep))
            block.conv1 = conv2d(c1.in_channels, k, c1.kernel_size[0], stride=c1.stride[0])
            block.bn1 = nn.BatchNorm2d(k)
            block.conv2 = conv2d(k, c2.out_channels, c2.kernel_size[0], stride=c2.stride[0])
    return model


def slimmed_bound(spec: ArchSpec, *, keep: float, clips: int, repeats: int, threads: int) -> dict[str, Any]:
    """The dense network of ``spec`` (random weights) against :func:`slimmed` copies of it, each
    prepared for inference, timed interleaved at batch 1 on random clips of the spec's input:
    static networks whose blocks compute ``keep`` of their middle channels (``keep`` of their
    MACs) with no mask, policy, gather or scatter, i.e. the most that D-STEP's decisions at
    that density could turn into time at this input if they cost nothing. The GMACs are the
    executed-op count."""
    torch.manual_seed(0)
    dense = prepare_for_inference(create_from_spec(spec))
    thin = prepare_for_inference(slimmed(create_from_spec(spec), keep))
    inputs = [torch.randn(spec_input_shape(spec)) for _ in range(clips)]
    dense_gmacs = count_executed(dense, inputs[0]).per_sample_gmacs.item()
    thin_gmacs = count_executed(thin, inputs[0]).per_sample_gmacs.item()
    with torch_threads(threads):
        rows = compare_on_clips({"dense": dense, "slimmed": thin}, inputs, repeats=repeats, warmup=1)
    dense_ms, thin_ms = rows["dense"]["latency_ms_mean"], rows["slimmed"]["latency_ms_mean"]
    return {"input": "x".join(str(n) for n in spec_input_shape(spec)[2:]), "width_mult": spec.width_mult,
            "keep": keep, "clips": clips, "repeats": repeats, "threads": threads, "dense_gmacs": dense_gmacs,
            "slimmed_gmacs": thin_gmacs, "gmacs_saving": 1 - thin_gmacs / dense_gmacs,
            "dense_latency_ms": dense_ms, "slimmed_latency_ms": thin_ms, "latency_saving": 1 - thin_ms / dense_ms,
            "latency_saving_per_gmacs_saving": saving_ratio(latency=thin_ms, base_latency=dense_ms,
                                                            gmacs=thin_gmacs, base_gmacs=dense_gmacs)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("data/bench"), help="cache for SynthActions-small")
    parser.add_argument("--run-dir", type=Path, default=Path("runs/bench-dstep-synth"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/dstep_synth.json"))
    parser.add_argument("--tsm-epochs", type=int, help="TSM-R18 epochs (default: the config's 10)")
    parser.add_argument("--latency-clips", type=int, default=80, help="validation clips timed per model")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for the latency figures")
    parser.add_argument("--paper-clips", type=int, default=3,
                        help="clips of the paper-scale latency figure (TSM-R18, 8x224x224; 0 skips it)")
    args = parser.parse_args()

    manifest = ensure_synthactions(args.data / "synthactions-small", "small")
    val = manifest.annotations["val"]
    data = [f"data.train={manifest.annotations['train']}", f"data.val={val}"]
    start = time.perf_counter()
    epochs = [f"epochs={args.tsm_epochs}", f"eval_every={args.tsm_epochs}"] if args.tsm_epochs else []
    base = train_run("synth_tsm_r18", args.run_dir / "tsm_r18", data, epochs)
    init = [f"init_from={base}"]
    stems = {target: train_run(config, args.run_dir / config, data, init) for target, config in TARGETS.items()}
    ablation_stems = {row: train_run(config, args.run_dir / config, data, init) for row, config in ABLATIONS.items()}
    train_s = time.perf_counter() - start

    dense = evaluate(base, val, views=(1, 1), num_workers=1).to_dict()
    dense_gmacs = dense["gmacs_per_video"]
    targets = {}
    for target, stem in stems.items():
        row = evaluate(stem, val, views=(1, 1), num_workers=1).to_dict()
        expected = target * dense_gmacs
        targets[str(target)] = {**row, "expected_gmacs_per_video": expected,
                                "cost_relative_error": abs(row["gmacs_per_video"] - expected) / expected}
    table3 = [{"row": "TSM (dense)", **dense},
              {"row": "TSM + dynamic TS + DCP + spatial (D-STEP)", **targets["0.6"]}]
    table3 += [{"row": row, **evaluate(stem, val, views=(1, 1), num_workers=1).to_dict()}
               for row, stem in ablation_stems.items()]
    executed = {str(target): {k: v for k, v in executed_on_dataset(load_model(stem).eval(), val).items()
                              if k != "reported_gmacs"} for target, stem in stems.items()}

    load_before = machine_load()
    rows = compare_models({"TSM-R18": base, "D-STEP D=0.6": stems[0.6]}, val, baseline="TSM-R18",
                          views=(1, 1), latency_clips=args.latency_clips, threads=args.threads)
    dense_model, dstep_model = load_model(base), load_model(stems[0.6])
    stages = stage_split(dense_model, dstep_model, validation_clips(dstep_model.spec, val, min(args.latency_clips, 32)),
                         threads=args.threads)
    pattern = decision_pattern(dstep_model, validation_clips(dstep_model.spec, val, min(args.latency_clips, 32)))
    paper = (paper_scale_latency(pattern, clips=args.paper_clips, repeats=2, threads=args.threads)
             if args.paper_clips else None)
    paper_spec = default_spec("tsm_r18", num_classes=174, crop_size=224, num_frames=8)
    bounds = {"synthactions": slimmed_bound(dense_model.spec, keep=0.6, clips=args.latency_clips, repeats=3,
                                            threads=args.threads),
              "paper_scale": slimmed_bound(paper_spec, keep=0.6, clips=max(args.paper_clips, 1), repeats=2,
                                           threads=args.threads)}
    load = load_record(load_before, machine_load(), args.threads)
    if load["warning"]:
        print(f"warning: {load['warning']}", file=sys.stderr)

    by_name = {r["model"]: r for r in rows}
    d060 = by_name["D-STEP D=0.6"]
    result = {
        "benchmark": "dstep_synth", "machine": {"platform": platform.platform(), "processor": platform.processor()},
        "run_dir": str(args.run_dir), "train_wall_time_s": train_s, "load": load, "tsm_epochs": args.tsm_epochs,
        "checkpoints": {"TSM-R18": str(base), **{f"D={t}": str(s) for t, s in stems.items()},
                        **{row: str(s) for row, s in ablation_stems.items()}},
        "dense": dense, "targets": targets, "table3": table3, "executed_vs_reported": executed,
        "latency_rows": rows, "stages": stages, "paper_scale": paper, "slimmed_bound": bounds,
        "summary": {
            "dense_top1": dense["video_top1"], "dense_gmacs_per_video": dense_gmacs,
            "cost_vs_target": {t: {"gmacs_per_video": r["gmacs_per_video"],
                                   "expected": r["expected_gmacs_per_video"],
                                   "relative_error": r["cost_relative_error"]} for t, r in targets.items()},
            "top1_per_target": {t: r["video_top1"] for t, r in targets.items()},
            "top1_drop_at_0.6_points": 100 * (dense["video_top1"] - targets["0.6"]["video_top1"]),
            "table3": [{"row": r["row"], "video_top1": r["video_top1"], "gmacs_per_video": r["gmacs_per_video"],
                        "min": r["gmacs_per_video_min"], "max": r["gmacs_per_video_max"]} for r in table3],
            "latency_ms": {r["model"]: r["latency_ms"] for r in rows},
            "latency_saving_per_gmacs_saving": d060["latency_saving_per_gmacs_saving"],
            "stage_latency_saving_per_gmacs_saving": {s["stage"]: s["latency_saving_per_gmacs_saving"]
                                                      for s in stages},
            "executed_equals_reported": {t: e["all_equal"] for t, e in executed.items()},
            "paper_scale_latency_saving_per_gmacs_saving": paper and paper["latency_saving_per_gmacs_saving"],
            "slimmed_bound_latency_saving_per_gmacs_saving": {k: b["latency_saving_per_gmacs_saving"]
                                                              for k, b in bounds.items()},
        },
    }
    s = result["summary"]
    result["expectations"] = {
        "cost_within_5pct_of_target": all(r["relative_error"] <= 0.05 for r in s["cost_vs_target"].values()),
        "top1_within_2_points_at_0.6": s["top1_drop_at_0.6_points"] <= 2.0,
        "latency_ratio_at_least_0.7_at_0.6": (s["latency_saving_per_gmacs_saving"] or 0) >= 0.7,
        "executed_equals_reported_on_every_clip": all(s["executed_equals_reported"].values()),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps({"summary": s, "expectations": result["expectations"]}, indent=1))


if __name__ == "__main__":
    main()

"""Data throughput benchmark: how fast effvid turns videos into clips (writes JSON; not a test).

Measures, for the PyAV and decord backends:

1. decoding alone (one process): random 32-frame clips at stride 2 from SynthActions-small, and
   from a 60 s 1080p H.264 video generated here (keyframe every 2 s, B-frames): a clip from the
   first second, a random clip from the last 20 s with keyframe seeking, and (PyAV) the same late
   clips decoded from the start of the file without seeking;
2. the full pipeline (VideoDataset + build_loader: decode, sample, resize, crop, normalise) with
   1 and N DataLoader workers, on both sources;
3. the training speed of the demo's base model (``configs/demo/r2plus1d_synth_small.yaml``:
   forward + backward + SGD step on the CPU at its batch size), at its own clip shape, against
   the loader's clips per second at that shape and batch size.

The 1-minute load average is recorded before and after (``load``), with a warning when another
process competed (above the torch threads + 0.5): such figures are not quiet-machine figures.

Targets (issue 2): a late clip of the long video costs at most 3x a first-second clip; two
workers feed at least 5x the clips per second the demo model trains on.

    .venv/bin/python benchmarks/data_throughput.py [--workers 2] [--out benchmarks/results/data_throughput.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import av
import numpy as np
import torch

from effvid.cost.latency import load_record, machine_load
from effvid.data.annotations import Annotation, VideoRecord, load_annotations
from effvid.data.dataset import VideoDataset
from effvid.data.decode import open_video
from effvid.data.loader import build_loader
from effvid.data.sampling import ClipSampler
from effvid.data.synthetic import ensure_synthactions
from effvid.data.video_writer import write_video
from effvid.engine.train_config import load_train_config
from effvid.models.registry import create_from_spec, default_spec

CLIP_LEN, STRIDE = 32, 2
LONG_SECONDS, LONG_FPS, LONG_GOP = 60, 30, 60
DEMO_CONFIG = Path(__file__).resolve().parents[1] / "effvid" / "configs" / "demo" / "r2plus1d_synth_small.yaml"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2, help="N for the N-worker loader (default 2)")
    parser.add_argument("--data", type=Path, default=Path("data/bench"), help="cache for the generated videos")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/data_throughput.json"))
    parser.add_argument("--backends", default="pyav,decord")
    parser.add_argument("--synth-clips", type=int, default=96, help="clips per SynthActions measurement")
    parser.add_argument("--long-clips", type=int, default=6, help="clips per long-video measurement")
    parser.add_argument("--demo-config", type=Path, default=DEMO_CONFIG,
                        help="training config of the model the loader must keep fed (default: the demo's base)")
    args = parser.parse_args(argv)
    backends = [b for b in args.backends.split(",") if b != "decord" or _has_decord()]
    demo_cfg = load_train_config(args.demo_config)
    demo_spec = demo_cfg.model.to_spec(16)

    load_before = machine_load()
    start = time.perf_counter()
    synth = ensure_synthactions(args.data / "synthactions-small", "small", seed=0, workers=args.workers)
    long_video = _long_video(args.data / "long_1080p.mp4")
    synth_train = load_annotations(synth.annotations["train"])
    result: dict = {
        "command": " ".join([Path(sys.argv[0]).name] + (argv if argv is not None else sys.argv[1:])),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "torch": torch.__version__, "torch_threads": torch.get_num_threads(), "av": av.__version__},
        "settings": {"clip_len": CLIP_LEN, "stride": STRIDE, "workers": args.workers,
                     "long_video": {"seconds": LONG_SECONDS, "fps": LONG_FPS, "size": "1920x1080", "gop": LONG_GOP},
                     "demo_model": demo_spec.to_dict()},
        "setup_seconds": None, "decode": {}, "loader": {}, "demo_model": {}, "targets": {},
    }
    result["setup_seconds"] = round(time.perf_counter() - start, 1)
    rng = np.random.default_rng(0)
    bench_spec = default_spec(demo_spec.name, num_classes=16, num_frames=CLIP_LEN, frame_stride=STRIDE, crop_size=56)
    long_spec = bench_spec.replace(crop_size=224, train_resize=None, test_resize=None)
    long_annotation = Annotation(records=tuple(VideoRecord(str(long_video), 0, f"long{i}") for i in range(64)),
                                 class_names=("long",), multilabel=False, format="mmaction")
    for backend in backends:
        _log(f"decode {backend}")
        result["decode"][backend] = {
            "synth_small_clips_per_s": _decode_rate([r.path for r in synth_train.records], backend, args.synth_clips, rng),
            "long_1080p": _long_clip_costs(long_video, backend, args.long_clips, rng),
        }
        result["loader"][backend] = {}
        for name, annotation, spec, batch, clips in (
                ("synth_small", synth_train, bench_spec, 4, args.synth_clips),
                ("synth_small_demo_shape", synth_train, demo_spec, demo_cfg.batch_size, args.synth_clips * 2),
                ("long_1080p", long_annotation, long_spec, 1, args.long_clips * 2)):
            for workers in sorted({1, args.workers}):
                _log(f"loader {backend} {name} workers={workers}")
                result["loader"][backend][f"{name}_workers{workers}_clips_per_s"] = _loader_rate(
                    annotation, spec, backend, workers, batch, clips)
    _log("demo model")
    result["demo_model"] = _train_rate(demo_spec, batch=demo_cfg.batch_size)
    result["targets"] = _targets(result, args.workers)
    result["total_seconds"] = round(time.perf_counter() - start, 1)
    result["load"] = load_record(load_before, machine_load(), torch.get_num_threads())
    if result["load"]["warning"]:
        _log(f"warning: {result['load']['warning']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result["targets"], indent=1))
    _log(f"wrote {args.out}")
    return 0


def _long_video(path: Path) -> Path:
    """A 60 s 1080p H.264 video, generated once and cached: a textured background panning a few
    pixels per frame (16-pixel blocks, about 3-4 Mbit/s, so decoding does real work) and a moving
    square; x264 superfast (CABAC, B-frames), keyframe every 2 s as streaming encodes use."""
    if path.is_file():
        return path
    _log(f"writing {path} (once)")
    h, w, margin = 1080, 1920, 256
    rng = np.random.default_rng(0)
    texture = np.repeat(np.repeat(rng.integers(0, 256, ((h + margin) // 16, (w + margin) // 16, 3), dtype=np.uint8),
                                  16, axis=0), 16, axis=1)

    def frames():
        for i in range(LONG_SECONDS * LONG_FPS):
            dy, dx = (2 * i) % margin, (3 * i) % margin
            frame = texture[dy:dy + h, dx:dx + w].copy()
            x, y = (40 + 7 * i) % (w - 200), (60 + 3 * i) % (h - 200)
            frame[y:y + 200, x:x + 200] = (255 - i % 256, i % 256, 128)
            yield frame

    write_video(path, frames(), fps=LONG_FPS, gop=LONG_GOP, crf=23, threads=0, preset="superfast")
    return path


def _clip(num_frames: int, fps: float, rng: np.random.Generator) -> np.ndarray:
    return ClipSampler("dense", CLIP_LEN, STRIDE).train(num_frames, fps, rng)


def _decode_rate(paths: list[str], backend: str, clips: int, rng: np.random.Generator) -> float:
    """Random clips per second, opening each video as the dataset does."""
    chosen = rng.choice(len(paths), clips)
    start = time.perf_counter()
    for i in chosen:
        with open_video(paths[i], backend) as reader:
            reader.get_frames(_clip(reader.info.num_frames, reader.info.fps, rng))
    return round(clips / (time.perf_counter() - start), 1)


def _long_clip_costs(path: Path, backend: str, clips: int, rng: np.random.Generator) -> dict:
    """Seconds per clip (open + decode) from the first second and from the last 20 s."""
    with open_video(path, backend) as reader:
        n, fps = reader.info.num_frames, reader.info.fps
    span = (CLIP_LEN - 1) * STRIDE
    early = [int(rng.integers(0, int(fps))) for _ in range(clips)]
    late = [int(rng.integers(n - int(20 * fps), n - span)) for _ in range(clips)]
    costs = {}
    for name, starts in (("first_second", early), ("late", late)):
        seconds = []
        for s in starts:
            t = time.perf_counter()
            with open_video(path, backend) as reader:
                reader.get_frames(s + STRIDE * np.arange(CLIP_LEN))
            seconds.append(time.perf_counter() - t)
        costs[f"{name}_s_per_clip"] = round(float(np.mean(seconds)), 3)
    costs["late_over_first_second"] = round(costs["late_s_per_clip"] / costs["first_second_s_per_clip"], 2)
    if backend == "pyav":
        t = time.perf_counter()
        for s in late[:2]:
            _decode_from_start(path, s + STRIDE * np.arange(CLIP_LEN))
        costs["late_from_start_s_per_clip"] = round((time.perf_counter() - t) / 2, 3)
        costs["seek_speedup_late"] = round(costs["late_from_start_s_per_clip"] / costs["late_s_per_clip"], 1)
    return costs


def _decode_from_start(path: Path, indices: np.ndarray) -> list[np.ndarray]:
    """The baseline without seeking: decode every frame from the first up to the last wanted one."""
    wanted, out = set(indices.tolist()), []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for index, frame in enumerate(container.decode(stream)):
            if index in wanted:
                out.append(frame.to_ndarray(format="rgb24"))
            if index >= indices[-1]:
                break
    return out


def _loader_rate(annotation: Annotation, spec, backend: str, workers: int, batch: int, clips: int) -> float:
    """Clips per second out of a training DataLoader of ``batch`` clips, after its first batch (worker start-up)."""
    dataset = VideoDataset(annotation, spec=spec, train=True, backend=backend, seed=0)
    loader = build_loader(dataset, batch_size=batch, num_workers=workers, shuffle=True, seed=0, drop_last=True)
    batches = iter(loader)
    next(batches)
    start = time.perf_counter()
    done = 0
    while done < clips:
        done += len(next(batches)["label"])
    rate = done / (time.perf_counter() - start)
    del batches, loader
    return round(rate, 1)


def _train_rate(spec, *, batch: int, steps: int = 6) -> dict:
    """Training clips per second of ``spec`` on the CPU (forward, backward, SGD step)."""
    model = create_from_spec(spec).train()
    optimiser = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    clips = torch.randn(batch, 3, spec.num_frames, spec.crop_size, spec.crop_size)
    labels = torch.randint(0, spec.num_classes, (batch,))
    for step in range(steps + 1):
        if step == 1:
            start = time.perf_counter()
        optimiser.zero_grad()
        torch.nn.functional.cross_entropy(model(clips), labels).backward()
        optimiser.step()
    return {"train_clips_per_s": round(batch * steps / (time.perf_counter() - start), 1), "batch": batch,
            "params": sum(p.numel() for p in model.parameters())}


def _targets(result: dict, workers: int) -> dict:
    targets = {}
    for backend, decode in result["decode"].items():
        ratio = decode["long_1080p"]["late_over_first_second"]
        targets[f"{backend}_late_clip_cost_ratio"] = {"value": ratio, "target": "<= 3", "met": ratio <= 3}
        feed = result["loader"][backend].get(f"synth_small_demo_shape_workers{workers}_clips_per_s")
        need = result["demo_model"]["train_clips_per_s"]
        targets[f"{backend}_{workers}_workers_feed_over_demo_training"] = {
            "value": round(feed / need, 1), "target": ">= 5", "met": feed / need >= 5}
    return targets


def _has_decord() -> bool:
    try:
        import decord  # noqa: F401
    except ImportError:
        return False
    return True


def _log(message: str) -> None:
    print(f"[data_throughput] {message}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())

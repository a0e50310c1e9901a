"""Writing SynthActions to disk: presets, splits, parallel rendering, annotation files, card, manifest.

Layout of an output folder ``OUT``::

    OUT/{split}/{class}/{split}{index:05d}_000000_{end:06d}.mp4   videos (Kinetics layout)
    OUT/train.txt, val.txt, test.txt                              mmaction lists: ``path label``
    OUT/kinetics_train.csv, kinetics_val.csv, kinetics_test.csv   Kinetics CSVs (default template)
    OUT/classes.txt                                               class names, one per line, index order
    OUT/README.md                                                 the dataset card
    OUT/manifest.json                                             preset, seed, counts, version

Paths in both annotation kinds are relative to ``OUT``, so
``load_annotations(OUT / "train.txt")`` and ``load_annotations(OUT / "kinetics_train.csv")``
read the same videos with the same labels. The manifest is written last: a folder with a
matching manifest is complete, and generation into it returns at once; a folder without one
is completed (videos already written are kept, since each is written atomically).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from effvid.data.synthetic.classes import CLASS_NAMES, CLASSES, NUISANCES, REDUNDANCY
from effvid.data.synthetic.render import Stretch, render_video
from effvid.data.video_writer import write_video
from effvid.errors import EffvidError
from effvid.io import write_text

GENERATOR_VERSION = "1"
SPLITS: tuple[str, ...] = ("train", "val", "test")
SPLIT_FRACTIONS = (0.70, 0.15, 0.15)
MANIFEST = "manifest.json"
PENDING = ".synthactions-pending.json"


@dataclass(frozen=True)
class SynthPreset:
    """How much SynthActions to generate: videos per class (all splits), square frame size,
    frame count range (each video draws its length uniformly), fps and H.264 settings."""

    name: str
    videos_per_class: int
    size: int
    min_frames: int
    max_frames: int
    fps: float = 25.0
    gop: int = 16
    crf: int = 18

    def __post_init__(self) -> None:
        if self.size % 8 or self.size < 16:
            raise EffvidError(f"SynthActions preset {self.name!r}: size must be a multiple of 8 and >= 16, got {self.size}")
        if not 16 <= self.min_frames <= self.max_frames:
            raise EffvidError(f"SynthActions preset {self.name!r}: need 16 <= min_frames <= max_frames, "
                              f"got {self.min_frames}..{self.max_frames}")
        if self.videos_per_class < 3:
            raise EffvidError(f"SynthActions preset {self.name!r}: videos_per_class must be >= 3 (one per split)")

    def replace(self, **changes) -> SynthPreset:
        return dataclasses.replace(self, **changes)

    def per_class(self) -> dict[str, int]:
        """Videos per class in each split (70/15/15, at least one each)."""
        train = max(1, round(self.videos_per_class * SPLIT_FRACTIONS[0]))
        val = max(1, round(self.videos_per_class * SPLIT_FRACTIONS[1]))
        return {"train": train, "val": val, "test": self.videos_per_class - train - val}


PRESETS: dict[str, SynthPreset] = {
    "tiny": SynthPreset("tiny", videos_per_class=12, size=32, min_frames=24, max_frames=32),
    "small": SynthPreset("small", videos_per_class=100, size=64, min_frames=48, max_frames=64),
    "large": SynthPreset("large", videos_per_class=1000, size=128, min_frames=64, max_frames=96),
}


@dataclass(frozen=True)
class SynthManifest:
    """A generated SynthActions folder: where its annotation files are, its classes and counts.

    ``annotations`` and ``kinetics`` map each split to its mmaction list and Kinetics CSV;
    ``counts`` maps each split to its number of videos; ``generated`` is how many videos the
    call that returned this manifest wrote (0 when the folder was already complete).
    """

    root: Path
    preset: SynthPreset
    seed: int
    class_names: tuple[str, ...]
    counts: dict[str, int]
    annotations: dict[str, Path]
    kinetics: dict[str, Path]
    classes_file: Path
    card: Path
    version: str = GENERATOR_VERSION
    generated: int = 0

    def to_dict(self) -> dict:
        """JSON-ready summary (paths as strings)."""
        return {"root": str(self.root), "preset": dataclasses.asdict(self.preset), "seed": self.seed,
                "version": self.version, "class_names": list(self.class_names), "num_classes": len(self.class_names),
                "counts": dict(self.counts), "annotations": {k: str(v) for k, v in self.annotations.items()},
                "kinetics": {k: str(v) for k, v in self.kinetics.items()}, "classes_file": str(self.classes_file),
                "card": str(self.card), "generated": self.generated}


@dataclass(frozen=True)
class _Job:
    split: str
    index: int
    label: int
    frames: int
    relpath: str


def generate(out_dir: str | os.PathLike, *, preset: str | SynthPreset = "small", seed: int = 0,
             workers: int | None = None) -> SynthManifest:
    """Generate SynthActions ``preset`` with ``seed`` into ``out_dir`` and return its manifest.

    Deterministic: each video depends only on ``(seed, split, index)``, so the result does not
    depend on ``workers`` (default: the CPU count). Idempotent and resumable: a complete folder
    with the same preset and seed returns at once; a partial one is completed. A folder holding
    another preset or seed raises :class:`EffvidError`.
    """
    preset = _resolve_preset(preset)
    root = Path(out_dir)
    params = {"generator": "effvid.synthactions", "version": GENERATOR_VERSION, "preset": dataclasses.asdict(preset),
              "seed": int(seed)}
    jobs = plan(preset, seed)
    _check_folder(root, params)
    if (root / MANIFEST).is_file() and all((root / job.relpath).is_file() for job in jobs):
        return load_manifest(root)
    root.mkdir(parents=True, exist_ok=True)
    write_text(root / PENDING, json.dumps(params, indent=1))
    todo = [job for job in jobs if not (root / job.relpath).is_file()]
    _render_all(root, preset, seed, todo, workers or os.cpu_count() or 1)
    _write_annotations(root, preset, jobs)
    write_text(root / "README.md", dataset_card(preset, seed, jobs))
    counts = {split: sum(job.split == split for job in jobs) for split in SPLITS}
    manifest = dict(params, class_names=list(CLASS_NAMES), counts=counts,
                    annotations={s: f"{s}.txt" for s in SPLITS}, kinetics={s: f"kinetics_{s}.csv" for s in SPLITS},
                    classes_file="classes.txt", card="README.md",
                    layout="{split}/{class}/{split}{index:05d}_000000_{end:06d}.mp4 (Kinetics default template)")
    write_text(root / MANIFEST, json.dumps(manifest, indent=1))
    (root / PENDING).unlink()
    return dataclasses.replace(load_manifest(root), generated=len(todo))


def ensure_synthactions(out_dir: str | os.PathLike, preset: str | SynthPreset = "small", seed: int = 0, *,
                        workers: int | None = None) -> SynthManifest:
    """The SynthActions folder at ``out_dir``, generated first if it is missing or incomplete."""
    return generate(out_dir, preset=preset, seed=seed, workers=workers)


def load_manifest(out_dir: str | os.PathLike) -> SynthManifest:
    """Read the manifest of a generated folder; :class:`EffvidError` if there is none."""
    root = Path(out_dir).absolute()
    path = root / MANIFEST
    try:
        data = json.loads(path.read_text())
        return SynthManifest(
            root=root, preset=SynthPreset(**data["preset"]), seed=int(data["seed"]),
            class_names=tuple(data["class_names"]), counts=dict(data["counts"]),
            annotations={s: root / p for s, p in data["annotations"].items()},
            kinetics={s: root / p for s, p in data["kinetics"].items()},
            classes_file=root / data["classes_file"], card=root / data["card"], version=data["version"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise EffvidError(f"{path}: not a SynthActions manifest ({exc})") from exc


def plan(preset: SynthPreset, seed: int) -> list[_Job]:
    """Every video of ``preset``/``seed``: split, index, label, frame count and relative path.

    Labels are balanced within each split and shuffled by ``seed``.
    """
    jobs = []
    per_class = preset.per_class()
    for split_id, split in enumerate(SPLITS):
        count = per_class[split] * len(CLASSES)
        labels = np.random.default_rng([seed, split_id, 1 << 20]).permutation(np.arange(count) % len(CLASSES))
        for index, label in enumerate(labels.tolist()):
            frames = video_length(preset, seed, split, index)
            end = math.ceil(frames / preset.fps)
            relpath = f"{split}/{CLASS_NAMES[label]}/{split}{index:05d}_{0:06d}_{end:06d}.mp4"
            jobs.append(_Job(split, index, label, frames, relpath))
    return jobs


def video_length(preset: SynthPreset, seed: int, split: str, index: int) -> int:
    """Frame count of video ``index`` of ``split`` (drawn from its own random stream)."""
    rng = np.random.default_rng([seed, SPLITS.index(split), index, 1])
    return int(rng.integers(preset.min_frames, preset.max_frames + 1))


def render_job(preset: SynthPreset, seed: int, split: str, index: int, label: int) -> np.ndarray:
    """The frames of video ``index`` of ``split``, ``(T, size, size, 3)`` uint8, before encoding."""
    return _render(preset, seed, split, index, label)[0]


def job_stretch(preset: SynthPreset, seed: int, split: str, index: int, label: int) -> Stretch | None:
    """The stretch of uninformative frames of video ``index`` of ``split`` (``None``: it has none),
    found by rendering the video again: every video depends only on ``(seed, split, index)``."""
    return _render(preset, seed, split, index, label)[1]


def _render(preset: SynthPreset, seed: int, split: str, index: int, label: int) -> tuple[np.ndarray, Stretch | None]:
    rng = np.random.default_rng([seed, SPLITS.index(split), index])
    return render_video(label, rng, frames=video_length(preset, seed, split, index), size=preset.size)


def _resolve_preset(preset: str | SynthPreset) -> SynthPreset:
    if isinstance(preset, SynthPreset):
        return preset
    if preset not in PRESETS:
        raise EffvidError(f"unknown SynthActions preset {preset!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[preset]


def _check_folder(root: Path, params: dict) -> None:
    """Refuse an output path that is (or lies under) a file, and a folder that holds (or is being
    filled with) a different preset, seed or version."""
    for folder in (root, *root.parents):
        if folder.exists():
            if folder == root and not root.is_dir():
                raise EffvidError(f"{root}: is an existing file, not a folder; choose a folder for SynthActions")
            if not folder.is_dir():
                raise EffvidError(f"{root}: cannot be made a folder, {folder} is an existing file")
            break
    for name in (MANIFEST, PENDING):
        path = root / name
        if not path.is_file():
            continue
        try:
            found = json.loads(path.read_text())
            found = {key: found[key] for key in params}
        except (ValueError, KeyError, TypeError):
            raise EffvidError(f"{path}: exists but is not a SynthActions manifest; choose an empty folder") from None
        if found != params:
            raise EffvidError(f"{root} already holds SynthActions preset {found['preset'].get('name')!r} seed "
                              f"{found['seed']} (version {found['version']}); asked for preset "
                              f"{params['preset']['name']!r} seed {params['seed']}: choose another folder or delete it")


def _render_all(root: Path, preset: SynthPreset, seed: int, jobs: list[_Job], workers: int) -> None:
    if not jobs:
        return
    workers = max(1, min(workers, len(jobs)))
    chunks = [jobs[i::workers * 4] for i in range(min(len(jobs), workers * 4))]
    progress = _progress(len(jobs))
    if workers == 1:
        for chunk in chunks:
            progress.update(_render_chunk(root, preset, seed, chunk))
    else:
        with ProcessPoolExecutor(workers) as pool:
            for done in pool.map(_render_chunk, [root] * len(chunks), [preset] * len(chunks),
                                 [seed] * len(chunks), chunks):
                progress.update(done)
    progress.close()


def _render_chunk(root: Path, preset: SynthPreset, seed: int, jobs: list[_Job]) -> int:
    for job in jobs:
        frames = render_job(preset, seed, job.split, job.index, job.label)
        write_video(root / job.relpath, frames, fps=preset.fps, crf=preset.crf, gop=preset.gop)
    return len(jobs)


def _progress(total: int):
    from tqdm import tqdm

    return tqdm(total=total, desc="SynthActions", unit="video", disable=not sys.stderr.isatty())


def _write_annotations(root: Path, preset: SynthPreset, jobs: list[_Job]) -> None:
    write_text(root / "classes.txt", "".join(f"{name}\n" for name in CLASS_NAMES))
    for split in SPLITS:
        mine = [job for job in jobs if job.split == split]
        write_text(root / f"{split}.txt", "".join(f"{job.relpath} {job.label}\n" for job in mine))
        rows = ["label,youtube_id,time_start,time_end,split"]
        for job in mine:
            rows.append(f"{CLASS_NAMES[job.label]},{split}{job.index:05d},0,{math.ceil(job.frames / preset.fps)},{split}")
        write_text(root / f"kinetics_{split}.csv", "\n".join(rows) + "\n")


def dataset_card(preset: SynthPreset, seed: int, jobs: list[_Job]) -> str:
    """The README.md of a generated folder: what each class tests and how to load the data."""
    per_class = preset.per_class()
    lines = [
        "# SynthActions", "",
        f"Procedural action-recognition benchmark generated by effvid (generator version {GENERATOR_VERSION}), "
        f"preset `{preset.name}`, seed {seed}: {len(CLASSES)} classes, {len(jobs)} H.264 MP4 videos of "
        f"{preset.size}x{preset.size} pixels, {preset.min_frames}-{preset.max_frames} frames at {preset.fps:g} fps "
        f"(keyframe every {preset.gop} frames). Per class: {per_class['train']} train, {per_class['val']} val, "
        f"{per_class['test']} test videos. The same preset and seed always give the same videos.", "",
        "Do not train with horizontal flips: flipping turns `move_left` into `move_right`, "
        "`rotate_cw` into `rotate_ccw`.", "",
        "## Classes", "",
        "| index | class | group | the video shows |", "|---|---|---|---|",
    ]
    lines += [f"| {i} | `{c.name}` | {c.group} | {c.shows} |" for i, c in enumerate(CLASSES)]
    lines += ["", "## What each group tests", ""]
    for group in dict.fromkeys(c.group for c in CLASSES):
        members = ", ".join(f"`{c.name}`" for c in CLASSES if c.group == group)
        lines.append(f"- **{group}** ({members}): {next(c.stresses for c in CLASSES if c.group == group)}.")
    lines += [
        f"- **redundancy**: {REDUNDANCY}",
        f"- **nuisances**: {NUISANCES}", "",
        "## Files", "",
        "- `train.txt`, `val.txt`, `test.txt`: mmaction lists, `relative/path.mp4 label`.",
        "- `kinetics_{train,val,test}.csv`: Kinetics CSVs (`label,youtube_id,time_start,time_end,split`); "
        "videos sit at the default Kinetics template `{split}/{label}/{youtube_id}_{start:06d}_{end:06d}.mp4` "
        "under this folder.",
        "- `classes.txt`: class names in index order. `manifest.json`: preset, seed, counts, version.", "",
        "Load with `effvid.data.annotations.load_annotations(\"<this folder>/train.txt\")` "
        "(class names come from `classes.txt`).", "",
    ]
    return "\n".join(lines)

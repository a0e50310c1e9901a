"""AR-Net's recipe on a dataset, for the demo and the benchmark: the Uniform baseline, AR-Net
started from it, and their comparison on the validation split.

:func:`train_pair` trains the Uniform baseline (``configs/arnet/synth_uniform*.yaml``: the first
branch's network on every frame at full resolution), then AR-Net (``synth_arnet*.yaml``) with its
first branch loaded from the baseline's best checkpoint. :func:`compare` evaluates checkpoints
on one centre view per video (the paper's protocol) and times them at batch 1 on the same
decoded validation clips, interleaved, prepared for inference as users run them.
:func:`random_policy` is the Random Policy baseline with AR-Net's own weights.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import torch

from effvid.cost.latency import compare_on_clips, saving_ratio, torch_threads
from effvid.data.annotations import load_annotations
from effvid.data.dataset import VideoDataset
from effvid.engine.checkpoint import load_model
from effvid.engine.evaluate import evaluate
from effvid.engine.train_config import load_train_config
from effvid.engine.trainer import TrainResult, train
from effvid.errors import ConfigError
from effvid.methods.arnet.model import ARNet
from effvid.models import create_from_spec, prepare_for_inference
from effvid.spec import MethodSpec

logger = logging.getLogger(__name__)

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs" / "arnet"
"""AR-Net's configs, shipped inside the package."""

Preset = Literal["tiny", "small"]


def config_path(kind: Literal["uniform", "arnet"], preset: Preset) -> Path:
    """The shipped SynthActions config of the Uniform baseline or of AR-Net for ``preset``."""
    if preset not in ("tiny", "small"):
        raise ConfigError(f"AR-Net SynthActions preset {preset!r}: choose tiny or small")
    return CONFIG_DIR / f"synth_{kind}{'' if preset == 'small' else '_tiny'}.yaml"


def train_pair(*, train_list: str | Path, val_list: str | Path, out_dir: str | Path, preset: Preset = "small",
               uniform_overrides: Sequence[str] = (), arnet_overrides: Sequence[str] = (),
               progress: bool | None = None) -> tuple[TrainResult, TrainResult]:
    """Train the Uniform baseline into ``out_dir/uniform``, then AR-Net from it into ``out_dir/arnet``
    (each resumes, or returns at once, when its run folder already holds it)."""
    out = Path(out_dir)
    data = [f"data.train={train_list}", f"data.val={val_list}"]
    uniform_cfg = load_train_config(config_path("uniform", preset), [f"run_dir={out / 'uniform'}", *data,
                                                                   *uniform_overrides])
    logger.info(f"AR-Net: training the Uniform baseline ({uniform_cfg.epochs} epochs) in {uniform_cfg.run_dir}")
    uniform = train(uniform_cfg, progress=progress)
    start = uniform.best_checkpoint or uniform.last_checkpoint
    arnet_cfg = load_train_config(config_path("arnet", preset), [
        f"run_dir={out / 'arnet'}", *data,
        f"model.pretrained=[{{path: '{start}', into: branches.0, replace_head: false}}]", *arnet_overrides])
    logger.info(f"AR-Net: training AR-Net ({arnet_cfg.epochs} epochs) from {start} in {arnet_cfg.run_dir}")
    return uniform, train(arnet_cfg, progress=progress)


def random_policy(model: ARNet, probs: Sequence[float] | None = None) -> ARNet:
    """The Random Policy baseline: ``model``'s branches and weights, actions drawn from ``probs``
    (one weight per action; uniform when ``None``) at every decision."""
    settings = {**model.spec.method.settings, "mode": "random", "random_probs": list(probs) if probs else None}
    baseline = create_from_spec(model.spec.replace(method=MethodSpec("arnet", settings)))
    baseline.load_state_dict(model.state_dict())
    return baseline.eval()


def validation_clips(spec: Any, val_list: str | Path, count: int) -> list[torch.Tensor]:
    """The first ``count`` validation videos' centre views, decoded as evaluation decodes them, each ``(1, C, T, H, W)``."""
    dataset = VideoDataset(load_annotations(val_list), spec=spec, train=False, num_clips=1, num_crops=1)
    return [dataset[i]["clip"].unsqueeze(0) for i in range(min(count, len(dataset)))]


def compare(models: Mapping[str, torch.nn.Module | str | Path], val_list: str | Path, *, baseline: str,
            latency_clips: int = 48, threads: int = 1, repeats: int = 3) -> list[dict[str, Any]]:
    """One row per model (a module or a checkpoint): its evaluation on ``val_list`` (one centre
    view per video) and its batch-1 latency on ``latency_clips`` validation clips with ``threads``
    torch threads, timed interleaved with the others; ``latency_saving_per_gmacs_saving`` is the
    wall-clock saving against ``baseline`` over its GMACs saving."""
    built = {name: load_model(m) if isinstance(m, (str, Path)) else m for name, m in models.items()}
    specs = {(m.spec.num_frames, m.spec.crop_size, m.spec.sampling, tuple(m.spec.mean), tuple(m.spec.std))
             for m in built.values()}
    if len(specs) != 1:
        raise ConfigError(f"compare: the models read different inputs ({sorted(specs)}); compare models of one geometry")
    rows = []
    for name, model in built.items():
        result = evaluate(model, val_list, views=(1, 1), num_workers=1).to_dict()
        rows.append({"model": name, **result})
    clips = validation_clips(next(iter(built.values())).spec, val_list, latency_clips)
    with torch_threads(threads):
        prepared = {name: prepare_for_inference(model) for name, model in built.items()}
        timing = compare_on_clips(prepared, clips, repeats=repeats)
    base = next(r for r in rows if r["model"] == baseline)
    for row in rows:
        row["latency_ms"] = timing[row["model"]]["latency_ms_mean"]
        row["latency_threads"] = threads
        row["latency_clips"] = len(clips)
    for row in rows:
        row["latency_saving_per_gmacs_saving"] = saving_ratio(
            latency=row["latency_ms"], base_latency=base["latency_ms"], gmacs=row["gmacs_per_video"],
            base_gmacs=base["gmacs_per_video"])
    return rows

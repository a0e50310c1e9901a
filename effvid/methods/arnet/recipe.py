"""AR-Net's recipe on a dataset, for the demo and the benchmark: the Uniform baseline, AR-Net
started from it, and their comparison on the validation split.

:func:`train_pair` trains the Uniform baseline (``configs/arnet/synth_uniform*.yaml``: the first
branch's network on every frame at full resolution), then AR-Net (``synth_arnet*.yaml``) with its
first branch loaded from the baseline's best checkpoint; they are compared with
:func:`effvid.engine.compare.compare_models` on one centre view per video (the paper's protocol).
:func:`random_policy` is the Random Policy baseline with AR-Net's own weights.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from effvid.engine.train_config import load_train_config
from effvid.engine.trainer import TrainResult, train
from effvid.errors import ConfigError
from effvid.methods.arnet.model import ARNet
from effvid.models import create_from_spec
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

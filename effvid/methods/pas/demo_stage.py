"""The PAS stage of ``effvid demo``: shrink the demo's trained base on SynthActions and summarise it."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from effvid.config import from_dict
from effvid.errors import ConfigError
from effvid.methods.pas.config import ShrinkConfig
from effvid.methods.pas.report import table_markdown
from effvid.methods.pas.search import run_search

logger = logging.getLogger(__name__)


DEMO_RECIPES: dict[str, dict[str, Any]] = {
    "tiny": {"epochs": 1, "batch_size": 8, "max_steps_per_epoch": 4, "device": "cpu",
             "optim": {"name": "adamw", "lr": 0.001}, "schedule": {"decay": "constant"}},
    "small": {"epochs": 3, "batch_size": 8, "device": "cpu", "optim": {"name": "adamw", "lr": 0.001,
                                                                        "weight_decay": 0.0001},
              "schedule": {"warmup_epochs": 0.2, "decay": "cosine", "final_factor": 0.02}, "eval_every": 3},
}
"""The training recipe of every hypothesis and control, per SynthActions preset (sized for 2 CPU cores).

``small``: three epochs (420 steps of 8 clips), AdamW at the base's rate 1e-3. Measured on the
PAS-2 epsilon_t hypothesis of the 16-frame demo base (92.5% top-1): 1e-4 (the paper's lr / 10)
reached 82.5% after 210 steps and 83.8% after 420; 1e-3 reached 86.7% and 88.8%. AdamW's step
does not grow with the loss, so the paper's tenfold cut leaves a 16-class network little room to
adapt in a few hundred steps: the demo fine-tunes at the full rate (``finetune_lr_scale: 1``).
"""

DEMO_SEARCH: dict[str, dict[str, Any]] = {
    "tiny": {"operators": ["s", "t", "f", "c", "l"], "finetune_lr_scale": 0.1},
    "small": {"operators": ["s", "t"], "finetune_lr_scale": 1.0,
              "distillation": {"teacher_input": "base"}, "control": True},
}
"""The search settings per preset. ``small`` explores epsilon_s and epsilon_t and trains the
without-PAS control, within the demo's 10 minutes for data, base and PAS on 2 CPU cores. On
the same kind of base the benchmark (``benchmarks/pas_synth.py``: all five operators, 4 epochs
each) measured epsilon_f at 82.1, 82.5 and 76.7% and epsilon_c (random weights) at 50.0, 43.8 and
42.1% at iterations 1-3, against 84.2-94.2% for s and t: never selected, so leaving
them out changes no selection there, and each would add half again to the stage's time. The
teacher sees the base's own clip over the student's time window (``teacher_input: base``): 86.7%
against 82.5% with the student's clip on the same hypothesis, because a student that starts as
a copy of the teacher otherwise gets no KD signal.
"""


def run_demo_stage(base_checkpoint: str | Path, data: dict[str, Any], out_dir: str | Path, *, iterations: int,
                   preset: str, log: Callable[[str], None] = logger.info) -> dict[str, Any]:
    """Run PAS for ``iterations`` from ``base_checkpoint`` on ``data`` (a ``data:`` block: train, val, ...).

    Writes the run into ``out_dir`` (resumable like ``effvid shrink``) and returns the report
    summary plus ``table_markdown`` (the Table-1-style table) and ``ledger`` (its path).
    """

    if preset not in DEMO_RECIPES:
        raise ConfigError(f"PAS demo preset {preset!r}: choose one of {', '.join(DEMO_RECIPES)}")
    cfg = from_dict(ShrinkConfig, {
        "run_dir": str(out_dir), "base": {"checkpoint": str(base_checkpoint)}, "data": dict(data),
        "iterations": iterations, "train": DEMO_RECIPES[preset], "resources": {"num_cpus": 1},
        "latency_repeats": 5, **DEMO_SEARCH[preset]}, source="PAS demo stage")
    summary = run_search(cfg, log=log)
    return {**summary, "table_markdown": table_markdown(summary)}

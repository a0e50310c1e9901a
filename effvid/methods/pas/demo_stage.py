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
    "small": {"epochs": 1, "batch_size": 16, "max_steps_per_epoch": 25, "device": "cpu",
              "optim": {"name": "adamw", "lr": 0.001}, "schedule": {"decay": "cosine"}},
}
"""The per-hypothesis training recipe for each SynthActions preset (sized for 2 CPU cores).

AdamW, as for the demo's base: the KD term (alpha t^2 = 12,500 times the KL) makes SGD's step
size depend on the loss scale, and the small R(2+1)D stays near chance under SGD at 0.05-0.1.
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
        "latency_repeats": 5}, source="PAS demo stage")
    summary = run_search(cfg, log=log)
    return {**summary, "table_markdown": table_markdown(summary)}

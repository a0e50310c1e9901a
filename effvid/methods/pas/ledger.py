"""The PAS ledger: one JSON file in the run directory recording every network the search touched.

``RUN_DIR/ledger.json`` holds ``meta`` (``config``: the resolved config of the last run),
``entries`` (one per network, by id) and ``selections`` (one per finished iteration: the
selected id, the rule, every candidate's score and cost ratio, and the ids tied with the best).
An entry records its ``kind`` (``base``, ``hypothesis``, ``control`` or ``ablation``),
``iteration``, ``operator``, the reduced state (``spec``, cumulative ``factors``, the
``operators`` applied), ``init`` (``checkpoint``, ``from-previous`` or ``random``),
``init_from``, ``teacher``, ``gmacs`` (per view), ``params``, ``top1``, ``top5``,
``checkpoint``, ``run_dir``, ``wall_time_s``, ``status`` (:data:`STATUSES`), ``error``,
``reason`` (why a hypothesis was pruned) and ``attempts`` (how many times training started).
A base given as a checkpoint also records ``weights_sha256`` (of its ``.safetensors`` file), so
a resumed run notices a replaced base. An ablation entry (Table 4) records its ``variant``
(:data:`ABLATION_VARIANTS`) and ``of``, the hypothesis it retrains differently.

Only the driver writes it, and every write is atomic (temporary file, then rename), so a kill
at any moment leaves the previous or the new ledger, never a torn one. Re-running reads it
back: ``done`` and ``pruned`` entries are final, ``running`` ones were interrupted and resume.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from effvid.errors import ConfigError
from effvid.io import atomic_write

LEDGER_FILE = "ledger.json"
LEDGER_VERSION = 1
STATUSES = ("pending", "running", "done", "failed", "pruned")

ABLATION_VARIANTS: dict[str, tuple[bool, bool]] = {"nokd": (False, True), "scratch": (True, False)}
"""Table 4's retrainings of a hypothesis: variant -> (distilled from B, fine-tuned from R_{k-1})."""


def hypothesis_id(iteration: int, operator: str) -> str:
    """The ledger id of the hypothesis ``operator`` at ``iteration`` (1-based)."""
    return f"it{iteration}-{operator}"


def control_id(iteration: int) -> str:
    """The ledger id of the without-PAS control of iteration ``iteration``'s selected architecture."""
    return f"control-{iteration}"


def ablation_id(iteration: int, operator: str, variant: str) -> str:
    """The ledger id of the Table-4 ``variant`` (:data:`ABLATION_VARIANTS`) of hypothesis ``operator`` at ``iteration``."""
    return f"{hypothesis_id(iteration, operator)}-{variant}"


BASE_ID = "base"


class Ledger:
    """The entries and selections of one PAS run, saved to ``path`` after every change."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.entries: dict[str, dict[str, Any]] = {}
        self.selections: list[dict[str, Any]] = []
        self.meta: dict[str, Any] = {}
        if self.path.exists():
            self._load()

    @classmethod
    def in_run_dir(cls, run_dir: str | Path) -> Ledger:
        """The ledger of ``run_dir`` (empty when the run has not started)."""
        return cls(Path(run_dir) / LEDGER_FILE)

    def _load(self) -> None:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{self.path}: unreadable PAS ledger ({type(exc).__name__})") from None
        if not isinstance(data, dict) or data.get("version") != LEDGER_VERSION:
            raise ConfigError(f"{self.path}: not a PAS ledger of version {LEDGER_VERSION}")
        self.entries = {e["id"]: e for e in data.get("entries", [])}
        self.selections = list(data.get("selections", []))
        self.meta = dict(data.get("meta", {}))

    def save(self) -> None:
        """Write the ledger atomically."""
        data = {"version": LEDGER_VERSION, "meta": self.meta, "entries": list(self.entries.values()),
                "selections": self.selections}
        text = json.dumps(data, indent=1, allow_nan=True)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(self.path, lambda f: f.write(text.encode()))

    def get(self, entry_id: str) -> dict[str, Any] | None:
        return self.entries.get(entry_id)

    def add(self, entry: dict[str, Any]) -> dict[str, Any]:
        """Record a new entry (defaults filled in) and save; an existing id is kept as it is."""
        if entry["id"] in self.entries:
            return self.entries[entry["id"]]
        full = {"status": "pending", "attempts": 0, "error": None, "top1": None, "top5": None, "checkpoint": None,
                "wall_time_s": 0.0, **entry}
        if full["status"] not in STATUSES:
            raise ValueError(f"unknown ledger status {full['status']!r}")
        self.entries[entry["id"]] = full
        self.save()
        return full

    def update(self, entry_id: str, **fields: Any) -> dict[str, Any]:
        """Change fields of an entry and save."""
        entry = self.entries[entry_id]
        if "status" in fields and fields["status"] not in STATUSES:
            raise ValueError(f"unknown ledger status {fields['status']!r}")
        entry.update(fields)
        self.save()
        return entry

    def select(self, iteration: int, entry_id: str, rule: str, scores: dict[str, float]) -> None:
        """Record the hypothesis selected at ``iteration`` (replacing a previous record of it)."""
        self.selections = [s for s in self.selections if s["iteration"] != iteration]
        self.selections.append({"iteration": iteration, "id": entry_id, "rule": rule, "scores": scores})
        self.selections.sort(key=lambda s: s["iteration"])
        self.save()

    def iteration(self, iteration: int, kind: str = "hypothesis") -> list[dict[str, Any]]:
        """The entries of ``kind`` at ``iteration``, in the order they were recorded."""
        return [e for e in self.entries.values() if e["kind"] == kind and e["iteration"] == iteration]

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.entries.values() if e["kind"] == kind]

    def selected(self) -> list[dict[str, Any]]:
        """The selected entries, iteration 1 first."""
        return [self.entries[s["id"]] for s in self.selections]

    def with_status(self, statuses: Iterable[str]) -> list[dict[str, Any]]:
        wanted = set(statuses)
        return [e for e in self.entries.values() if e["status"] in wanted]


def ablation_rows(ledger: Ledger) -> list[dict[str, Any]]:
    """Table 4 from ``ledger``: for each ablated iteration, the full-PAS hypotheses and each
    variant of :data:`ABLATION_VARIANTS`, one row each, with a cell per ablated operator.

    A row is ``{"iteration", "variant" ("full", "nokd", "scratch"), "kd", "finetune",
    "operators": {op: {"id", "status", "top1", "top5"}}}``; empty when nothing was ablated.
    """
    ablations = ledger.of_kind("ablation")
    variants = {"full": (True, True), **ABLATION_VARIANTS}
    rows = []
    for iteration in sorted({e["iteration"] for e in ablations}):
        operators = list(dict.fromkeys(e["operator"] for e in ablations if e["iteration"] == iteration))
        for variant, (kd, finetune) in variants.items():
            cells = {}
            for op in operators:
                entry_id = hypothesis_id(iteration, op) if variant == "full" else ablation_id(iteration, op, variant)
                entry = ledger.get(entry_id) or {}
                cells[op] = {"id": entry_id, "status": entry.get("status"), "top1": entry.get("top1"),
                             "top5": entry.get("top5")}
            rows.append({"iteration": iteration, "variant": variant, "kd": kd, "finetune": finetune,
                         "operators": cells})
    return rows

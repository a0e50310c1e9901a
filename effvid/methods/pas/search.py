"""PAS search (Algorithm 1): hypotheses per iteration, the selection rules, stopping, and the loop.

Each iteration applies every configured operator to the network selected at the previous
iteration R_{tau-1} (R_0 = the base B). A hypothesis that cannot exist is recorded as
``pruned`` with its reason. The others train in parallel (:mod:`effvid.methods.pas.runner`) with
CE + KD from B (Eq. 7); ``s``/``t``/``f`` start from R_{tau-1}'s weights at the learning rate
times ``finetune_lr_scale`` (section 3.4), ``c``/``l`` from random weights.

Selection (:func:`select_hypothesis`):

* **Eq. (3)** when the cost ratios C(h)/C(R_{tau-1}) of the trained hypotheses agree, i.e.
  ``max / min <= 1 + cost_tolerance``: the highest top-1.
* **Eq. (1)** otherwise: the largest ``(C(B) - C(h)) / (Acc(B) - Acc(h))``. A hypothesis at
  least as accurate as B (denominator <= 0) scores +infinity: it loses nothing for the cost it
  saves. Such hypotheses rank above every finite score and among themselves by top-1.
* Ties (equal score, or equal top-1 under Eq. 3) go to the higher top-5 (section 4.3), then to
  the lower cost.

The search stops after ``iterations`` iterations, once the selected network's GMACs per view
are at or below ``target_gmacs``, or when every hypothesis of an iteration is pruned.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from effvid.config import to_dict
from effvid.cost.static import count_spec
from effvid.engine.checkpoint import read_sidecar, resolve_checkpoint
from effvid.engine.evaluate import evaluate
from effvid.errors import EffvidError
from effvid.methods.pas.config import ShrinkConfig
from effvid.methods.pas.ledger import BASE_ID, Ledger, control_id, hypothesis_id
from effvid.methods.pas.operators import Pruned, Reduced, apply_operator
from effvid.methods.pas.report import summarise
from effvid.methods.pas.report import write_report as write
from effvid.spec import ArchSpec

logger = logging.getLogger(__name__)

INPUT_OPERATORS = ("s", "t", "f")
"""Operators that keep every weight's shape, so their hypotheses can start from R_{tau-1}'s weights."""


@dataclass(frozen=True)
class Selection:
    """The hypothesis chosen at one iteration: its ``id``, the ``rule`` (``eq3``/``eq1``), every
    candidate's ``score`` (top-1 for Eq. 3; Eq. 1's ratio, ``None`` standing for +infinity) and
    every candidate's cost ratio to R_{tau-1}."""

    id: str
    rule: str
    scores: dict[str, float | None] = field(default_factory=dict)
    ratios: dict[str, float] = field(default_factory=dict)


def generate_hypotheses(state: Reduced, operators: Sequence[str], gammas: Mapping[str, float]) -> dict[str, Reduced | Pruned]:
    """One hypothesis per operator applied to ``state`` (R_{tau-1}), pruned ones included."""
    return {op: apply_operator(state, op, gammas[op]) for op in operators}


def cost_ratios(candidates: Sequence[Mapping[str, Any]], prev_gmacs: float) -> dict[str, float]:
    """C(h) / C(R_{tau-1}) of each candidate, by id."""
    return {c["id"]: c["gmacs"] / prev_gmacs for c in candidates}


def ratios_agree(ratios: Mapping[str, float], tolerance: float) -> bool:
    """Whether the cost ratios agree within ``tolerance`` (``max / min <= 1 + tolerance``)."""
    values = list(ratios.values())
    return max(values) <= min(values) * (1.0 + tolerance)


def eq1_score(candidate: Mapping[str, Any], base: Mapping[str, Any]) -> float:
    """Eq. (1): cost saved over accuracy lost relative to the base; ``inf`` when nothing is lost."""
    lost = base["top1"] - candidate["top1"]
    if lost <= 0:
        return math.inf
    return (base["gmacs"] - candidate["gmacs"]) / lost


def select_hypothesis(candidates: Sequence[Mapping[str, Any]], *, base: Mapping[str, Any], prev_gmacs: float,
                      tolerance: float) -> Selection:
    """The best of the trained ``candidates`` (each with ``id``, ``top1``, ``top5``, ``gmacs``) by the module's rules."""
    if not candidates:
        raise ValueError("select_hypothesis needs at least one trained hypothesis")
    ratios = cost_ratios(candidates, prev_gmacs)

    def top5(c: Mapping[str, Any]) -> float:
        return c["top5"] if c.get("top5") is not None else -math.inf

    if ratios_agree(ratios, tolerance):
        best = max(candidates, key=lambda c: (c["top1"], top5(c), -c["gmacs"]))
        return Selection(best["id"], "eq3", {c["id"]: c["top1"] for c in candidates}, ratios)
    scores = {c["id"]: eq1_score(c, base) for c in candidates}

    def key(c: Mapping[str, Any]) -> tuple:
        score = scores[c["id"]]
        if math.isinf(score):
            return (1, c["top1"], top5(c), -c["gmacs"])
        return (0, score, top5(c), -c["gmacs"])

    best = max(candidates, key=key)
    return Selection(best["id"], "eq1", {k: (None if math.isinf(v) else v) for k, v in scores.items()}, ratios)


def should_stop(selected_gmacs: float, target_gmacs: float | None) -> bool:
    """Whether the selected network already meets the cost target."""
    return target_gmacs is not None and selected_gmacs <= target_gmacs


# ---------------------------------------------------------------------------------------------
# The loop


def run_search(cfg: ShrinkConfig, *, ray_address: str | None = None, log: Callable[[str], None] = logger.info,
               write_report: bool = True) -> dict[str, Any]:
    """Run (or resume) the PAS search of ``cfg``; returns the summary that ``report.json`` holds.

    Every network is recorded in ``RUN_DIR/ledger.json`` as it goes, so running the same config
    again continues where a crash or kill left off. A hypothesis still failing after
    ``retries`` retries stops the search with an :class:`EffvidError` naming it (after the
    report of what finished is written).
    """
    from effvid.methods.pas.runner import RayRunner

    run_dir = Path(cfg.run_dir)
    ledger = Ledger.in_run_dir(run_dir)
    ledger.meta.update(config=to_dict(cfg))
    ledger.save()

    try:
        with RayRunner(cfg.resources, cfg.ray, address=ray_address, log=log) as runner:
            _Search(cfg, ledger, runner, log).run()
    except EffvidError:
        if write_report:
            write(run_dir, log=log)  # what finished, before the error reaches the user
        raise
    return write(run_dir, log=log) if write_report else summarise(ledger)


class _Search:
    def __init__(self, cfg: ShrinkConfig, ledger: Ledger, runner: Any, log: Callable[[str], None]) -> None:
        self.cfg, self.ledger, self.runner, self.log = cfg, ledger, runner, log
        self.run_dir = Path(cfg.run_dir)

    def run(self) -> None:
        base = self._base()
        state, prev = Reduced.from_dict(base), base
        for iteration in range(1, self.cfg.iterations + 1):
            if should_stop(prev["gmacs"], self.cfg.target_gmacs):
                self.log(f"PAS: {prev['id']} has {prev['gmacs']:.3f} GMACs <= target {self.cfg.target_gmacs}; stopping")
                break
            selected = self._iteration(iteration, state, prev, base)
            if selected is None:
                self.log(f"PAS: every hypothesis of iteration {iteration} is pruned; stopping")
                break
            prev = selected
            state = Reduced.from_dict(selected)
        if self.cfg.control:
            self._controls()

    # -- the base network B ------------------------------------------------------------------

    def _base(self) -> dict[str, Any]:
        entry = self.ledger.get(BASE_ID)
        if entry is not None and entry["status"] == "done":
            return entry
        cfg = self.cfg
        if cfg.base.checkpoint is not None:
            return self._evaluate_base(cfg.base.checkpoint)
        run_dir = self.run_dir / "base"
        train_cfg = cfg.train_config(run_dir, model=cfg.base.model, recipe=cfg.base.train)
        self.ledger.add({"id": BASE_ID, "kind": "base", "iteration": 0, "operator": None, "init": "random",
                         "init_from": None, "teacher": None, "run_dir": str(run_dir), "spec": None,
                         "factors": None, "operators": [], "gmacs": None, "params": None})
        self._train_all({BASE_ID: train_cfg})
        entry = self.ledger.get(BASE_ID)
        if entry["status"] != "done":
            raise EffvidError(f"{self.ledger.path}: the base network failed to train: {entry['error']}")
        return entry

    def _evaluate_base(self, checkpoint: str) -> dict[str, Any]:
        stem = resolve_checkpoint(checkpoint)
        spec = _sidecar_spec(read_sidecar(stem), stem)
        data = self.cfg.data
        self.log(f"PAS: evaluating the base {stem} on {data.val} (on the driver's best device)")
        result = evaluate(str(stem), data.val, root=data.root, format=data.format, views=data.val_views,
                          batch_size=data.val_batch_size or 8, num_workers=data.num_workers, backend=data.backend,
                          target_fps=data.target_fps, count_cost=False, device="auto", distributed=False)
        entry = {"id": BASE_ID, "kind": "base", "iteration": 0, "operator": None, "init": "checkpoint",
                 "init_from": None, "teacher": None, "run_dir": None, **_reduced_fields(Reduced.base(spec)),
                 **_cost_fields(spec), "status": "done", "top1": result.video_top1, "top5": result.video_top5,
                 "checkpoint": str(stem)}
        self.ledger.entries.pop(BASE_ID, None)
        return self.ledger.add(entry)

    # -- one iteration -------------------------------------------------------------------------

    def _iteration(self, iteration: int, state: Reduced, prev: dict[str, Any], base: dict[str, Any]
                   ) -> dict[str, Any] | None:
        cfg = self.cfg
        hypotheses = generate_hypotheses(state, cfg.operators, {op: cfg.gamma(op) for op in cfg.operators})
        jobs = {}
        for op, hyp in hypotheses.items():
            entry_id = hypothesis_id(iteration, op)
            entry = self.ledger.get(entry_id) or self.ledger.add(self._new_entry(entry_id, iteration, op, hyp, prev, base))
            if entry["status"] not in ("done", "pruned"):
                jobs[entry_id] = self._hypothesis_config(entry)
        pruned = [e for e in self.ledger.iteration(iteration) if e["status"] == "pruned"]
        for e in pruned:
            self.log(f"PAS iteration {iteration}: epsilon_{e['operator']} pruned ({e['reason']})")
        self._train_all(jobs)
        entries = [self.ledger.get(hypothesis_id(iteration, op)) for op in hypotheses]
        failed = [e for e in entries if e["status"] == "failed"]
        if failed:
            names = "; ".join(f"{e['id']}: {e['error']}" for e in failed)
            raise EffvidError(f"{self.ledger.path}: PAS iteration {iteration} stopped, hypotheses failed after "
                              f"{cfg.retries} retries ({names}); run the same command again to retry them")
        trained = [e for e in entries if e["status"] == "done"]
        if not trained:
            return None
        selection = select_hypothesis(trained, base=base, prev_gmacs=prev["gmacs"], tolerance=cfg.cost_tolerance)
        self.ledger.select(iteration, selection.id, selection.rule,
                           {"scores": selection.scores, "ratios": selection.ratios})
        chosen = self.ledger.get(selection.id)
        self.log(f"PAS iteration {iteration}: selected epsilon_{chosen['operator']} by {selection.rule} "
                 f"(top-1 {chosen['top1']:.4f}, {chosen['gmacs']:.3f} GMACs/view)")
        return chosen

    def _new_entry(self, entry_id: str, iteration: int, op: str, hyp: Reduced | Pruned, prev: dict[str, Any],
                   base: dict[str, Any]) -> dict[str, Any]:
        entry: dict[str, Any] = {"id": entry_id, "kind": "hypothesis", "iteration": iteration, "operator": op,
                                 "parent": prev["id"]}
        if isinstance(hyp, Pruned):
            return {**entry, "status": "pruned", "reason": hyp.reason, "init": None, "spec": None}
        inherit = self.cfg.finetune and op in INPUT_OPERATORS
        return {**entry, **_reduced_fields(hyp), **_cost_fields(hyp.spec),
                "init": "from-previous" if inherit else "random",
                "init_from": prev["checkpoint"] if inherit else None,
                "teacher": base["checkpoint"] if self.cfg.distill else None,
                "run_dir": str(self.run_dir / "hypotheses" / entry_id)}

    def _hypothesis_config(self, entry: dict[str, Any]) -> Any:
        return self.cfg.train_config(entry["run_dir"], spec=ArchSpec.from_dict(entry["spec"]), teacher=entry["teacher"],
                                     init_from=entry["init_from"])

    # -- controls (Table 2) ----------------------------------------------------------------------

    def _controls(self) -> None:
        jobs = {}
        for selection in self.ledger.selections:
            chosen = self.ledger.get(selection["id"])
            entry_id = control_id(selection["iteration"])
            entry = self.ledger.get(entry_id) or self.ledger.add(
                {"id": entry_id, "kind": "control", "iteration": selection["iteration"], "operator": chosen["operator"],
                 "of": chosen["id"], "init": "random", "init_from": None, "teacher": None,
                 "spec": chosen["spec"], "factors": chosen["factors"], "operators": chosen["operators"],
                 "gmacs": chosen["gmacs"], "params": chosen["params"],
                 "run_dir": str(self.run_dir / "controls" / entry_id)})
            if entry["status"] != "done":
                jobs[entry_id] = self.cfg.train_config(entry["run_dir"], spec=ArchSpec.from_dict(entry["spec"]),
                                                       recipe=self.cfg.control_train)
        self._train_all(jobs)
        failed = [e for e in self.ledger.of_kind("control") if e["status"] == "failed"]
        if failed:
            raise EffvidError(f"{self.ledger.path}: without-PAS controls failed: "
                              + "; ".join(f"{e['id']}: {e['error']}" for e in failed))

    # -- training through the runner -------------------------------------------------------------

    def _train_all(self, jobs: dict[str, Any]) -> None:
        """Train ``jobs`` (ledger id -> TrainConfig) in parallel, recording each outcome as it arrives."""
        failures = dict.fromkeys(jobs, 0)
        for entry_id, train_cfg in jobs.items():
            self._start(entry_id, train_cfg)
        while self.runner.pending:
            entry_id, result, error = self.runner.next_result()
            entry = self.ledger.get(entry_id)
            if error is None:
                fields = {"status": "done", "error": None, "top1": result["top1"], "top5": result["top5"],
                          "checkpoint": result["checkpoint"], "wall_time_s": entry["wall_time_s"] + result["wall_time_s"]}
                if entry["spec"] is None:
                    fields.update(_checkpoint_fields(result["checkpoint"]))
                self.ledger.update(entry_id, **fields)
                self.log(f"PAS: {entry_id} done: top-1 {result['top1']:.4f}, top-5 {result['top5']:.4f}, "
                         f"{result['wall_time_s']:.1f}s")
                continue
            failures[entry_id] += 1
            self.ledger.update(entry_id, status="failed", error=error)
            if failures[entry_id] <= self.cfg.retries:
                self.log(f"PAS: {entry_id} failed ({error}); retry {failures[entry_id]} of {self.cfg.retries}")
                self._start(entry_id, jobs[entry_id])
            else:
                self.log(f"PAS: {entry_id} failed ({error})")

    def _start(self, entry_id: str, train_cfg: Any) -> None:
        entry = self.ledger.get(entry_id)
        self.ledger.update(entry_id, status="running", attempts=entry["attempts"] + 1)
        self.runner.submit(entry_id, train_cfg)


def _reduced_fields(state: Reduced) -> dict[str, Any]:
    return state.to_dict()


def _cost_fields(spec: Any) -> dict[str, Any]:
    report = count_spec(spec)
    return {"gmacs": report.gmacs, "params": report.params, "input_shape": list(report.input_shape)}


def _sidecar_spec(meta: Mapping[str, Any], stem: Any) -> Any:
    if meta.get("spec") is None:
        raise EffvidError(f"{stem}.json: the base checkpoint has no ArchSpec; PAS needs one to reduce")
    return ArchSpec.from_dict(meta["spec"])


def _checkpoint_fields(checkpoint: str) -> dict[str, Any]:
    """Spec, factors and cost of a network known only by its checkpoint (a base trained by PAS)."""

    spec = _sidecar_spec(read_sidecar(checkpoint), checkpoint)
    return {**_reduced_fields(Reduced.base(spec)), **_cost_fields(spec)}

"""PAS search (Algorithm 1): hypotheses per iteration, the selection rules, stopping, resuming, and the loop.

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
* **Ties** (section 4.3), with ``tie_tolerance`` (top-1 differences up to it are noise): the
  leader is the best by the rule; tied with it are the hypotheses whose top-1 is within the
  tolerance of the leader's (Eq. 3, or Eq. 1 when the leader scores +infinity), or whose Eq. (1)
  score with top-1 raised by the tolerance reaches the leader's. The highest top-5 among the
  tied wins, then the lower cost. The band is anchored at the leader, so the choice does not
  depend on the order of the candidates.

The search stops after ``iterations`` iterations, once the selected network's GMACs per view
are at or below ``target_gmacs``, or when every hypothesis of an iteration is pruned. Then, if
asked, come the without-PAS controls (Table 2) and the single-iteration ablation (Table 4,
``ablation``): the input-operator hypotheses of one iteration trained again without KD but from
R_{k-1}'s weights (``it3-s-nokd``) and with KD from random weights (``it3-s-scratch``), recorded
as ``ablation`` entries that never take part in selection
(:func:`~effvid.methods.pas.ledger.ablation_rows` gives their table).

Resuming: running a config again continues from ``RUN_DIR/ledger.json``. :func:`check_resume`
first refuses, with a :class:`~effvid.errors.ConfigError` naming the ledger and the first
differing key, a config that would change what the finished networks are
(:meth:`~effvid.methods.pas.config.ShrinkConfig.result_settings`; ``control_train`` once a
control exists), and a base checkpoint whose weights changed since it was evaluated. Raising
``iterations``, moving ``target_gmacs``, adding controls or an ablation, and changing retries,
latency settings, resources or Ray are accepted.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from effvid.config import from_dict, to_dict
from effvid.cost.static import count_spec
from effvid.engine.checkpoint import read_sidecar, resolve_checkpoint, weights_sha256
from effvid.engine.evaluate import evaluate
from effvid.errors import ConfigError, EffvidError
from effvid.methods.pas.config import INPUT_OPERATORS, ShrinkConfig
from effvid.methods.pas.ledger import ABLATION_VARIANTS, BASE_ID, Ledger, ablation_id, control_id, hypothesis_id
from effvid.methods.pas.operators import Pruned, Reduced, apply_operator
from effvid.methods.pas.report import summarise
from effvid.methods.pas.report import write_report as write
from effvid.spec import ArchSpec

logger = logging.getLogger(__name__)

ARCH_FIELDS = ("spec", "factors", "operators", "gmacs", "params", "input_shape")
"""The ledger fields that describe a network's architecture and cost (copied to its control and ablations)."""


@dataclass(frozen=True)
class Selection:
    """The hypothesis chosen at one iteration: its ``id``, the ``rule`` (``eq3``/``eq1``), every
    candidate's ``score`` (top-1 for Eq. 3; Eq. 1's ratio, ``None`` standing for +infinity),
    every candidate's cost ratio to R_{tau-1}, and the ids ``tied`` with the leader (the
    chosen one among them)."""

    id: str
    rule: str
    scores: dict[str, float | None] = field(default_factory=dict)
    ratios: dict[str, float] = field(default_factory=dict)
    tied: tuple[str, ...] = ()


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


def eq1_score(candidate: Mapping[str, Any], base: Mapping[str, Any], slack: float = 0.0) -> float:
    """Eq. (1): cost saved over accuracy lost relative to the base, with the candidate's top-1
    raised by ``slack``; ``inf`` when nothing is lost."""
    lost = base["top1"] - (candidate["top1"] + slack)
    if lost <= 0:
        return math.inf
    return (base["gmacs"] - candidate["gmacs"]) / lost


def select_hypothesis(candidates: Sequence[Mapping[str, Any]], *, base: Mapping[str, Any], prev_gmacs: float,
                      tolerance: float, tie_tolerance: float) -> Selection:
    """The best of the trained ``candidates`` (each with ``id``, ``top1``, ``top5``, ``gmacs``) by
    the module's rules: ``tolerance`` on cost ratios picks the rule, ``tie_tolerance`` on top-1
    decides which candidates tie."""
    if not candidates:
        raise ValueError("select_hypothesis needs at least one trained hypothesis")
    ratios = cost_ratios(candidates, prev_gmacs)
    if ratios_agree(ratios, tolerance):
        rule, scores = "eq3", {c["id"]: c["top1"] for c in candidates}
        tied = _tied_by_top1(candidates, tie_tolerance)
    else:
        rule, eq1 = "eq1", {c["id"]: eq1_score(c, base) for c in candidates}
        scores = {k: (None if math.isinf(v) else v) for k, v in eq1.items()}
        tied = _tied_by_eq1(candidates, base, eq1, tie_tolerance)
    best = max(tied, key=lambda c: (_top5(c), -c["gmacs"]))
    return Selection(best["id"], rule, scores, ratios, tuple(c["id"] for c in tied))


def _top5(candidate: Mapping[str, Any]) -> float:
    return candidate["top5"] if candidate.get("top5") is not None else -math.inf


def _reaches(value: float, bound: float) -> bool:
    """``value >= bound``, counting a float rounding error as reaching it."""
    return value >= bound or math.isclose(value, bound, rel_tol=1e-9, abs_tol=1e-12)


def _tied_by_top1(candidates: Sequence[Mapping[str, Any]], tie_tolerance: float) -> list[Mapping[str, Any]]:
    """The candidates whose top-1 is within ``tie_tolerance`` of the highest."""
    leader = max(c["top1"] for c in candidates)
    return [c for c in candidates if _reaches(c["top1"], leader - tie_tolerance)]


def _tied_by_eq1(candidates: Sequence[Mapping[str, Any]], base: Mapping[str, Any], scores: Mapping[str, float],
                 tie_tolerance: float) -> list[Mapping[str, Any]]:
    """The candidates tied with the Eq. (1) leader: by top-1 when it loses nothing (a lossless
    candidate has the highest top-1), else those whose score with ``tie_tolerance`` more top-1
    reaches the leader's."""
    leader = max(scores.values())
    if math.isinf(leader):
        return _tied_by_top1(candidates, tie_tolerance)
    return [c for c in candidates if _reaches(eq1_score(c, base, tie_tolerance), leader)]


def should_stop(selected_gmacs: float, target_gmacs: float | None) -> bool:
    """Whether the selected network already meets the cost target."""
    return target_gmacs is not None and selected_gmacs <= target_gmacs


# ---------------------------------------------------------------------------------------------
# Resuming

_UNSET = object()
_CONTROL_PREFIX = "control_train."


def check_resume(ledger: Ledger, cfg: ShrinkConfig) -> None:
    """Refuse (:class:`ConfigError`, one line naming the ledger) to continue the run in ``ledger``
    with ``cfg`` when that would change its results (see the module docstring).

    A ledger without entries accepts any config. A base checkpoint's weights are compared by
    SHA-256; a ledger from before that was recorded records it now.
    """
    if not ledger.entries:
        return
    stored = ledger.meta.get("config")
    if stored is not None:
        _check_settings(ledger, stored, cfg)
    _check_base_weights(ledger)


def _check_settings(ledger: Ledger, stored: Mapping[str, Any], cfg: ShrinkConfig) -> None:
    """Refuse ``cfg`` when its result settings differ from those of the ``stored`` config, naming the first key."""
    try:
        before = from_dict(ShrinkConfig, stored, source=str(ledger.path)).result_settings()
    except ConfigError as err:
        raise ConfigError(f"{ledger.path}: the config recorded for this run no longer validates ({err}); "
                          "use a new run_dir") from None
    now = cfg.result_settings()
    if not ledger.of_kind("control"):
        before, now = _without(before, _CONTROL_PREFIX), _without(now, _CONTROL_PREFIX)
    for key in [*now, *(k for k in before if k not in now)]:
        old, new = before.get(key, _UNSET), now.get(key, _UNSET)
        if old != new:
            raise ConfigError(f"{ledger.path}: this run was made with {key}={_show(old)}, the config now says "
                              f"{_show(new)}; use a new run_dir or restore the config")


def _without(settings: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    return {k: v for k, v in settings.items() if not k.startswith(prefix)}


def _show(value: Any) -> str:
    if value is _UNSET:
        return "(unset)"
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_base_weights(ledger: Ledger) -> None:
    """Refuse a base checkpoint whose weights differ from those recorded when it was evaluated."""
    base = ledger.get(BASE_ID)
    if base is None or base["status"] != "done" or base["init"] != "checkpoint":
        return
    digest = weights_sha256(base["checkpoint"])
    if base.get("weights_sha256") is None:
        ledger.update(BASE_ID, weights_sha256=digest)
    elif digest != base["weights_sha256"]:
        raise ConfigError(f"{ledger.path}: the base checkpoint {base['checkpoint']} has other weights than when this "
                          "run evaluated it (SHA-256 differs); use a new run_dir or restore the checkpoint")


# ---------------------------------------------------------------------------------------------
# The loop


def run_search(cfg: ShrinkConfig, *, ray_address: str | None = None, log: Callable[[str], None] = logger.info,
               write_report: bool = True) -> dict[str, Any]:
    """Run (or resume) the PAS search of ``cfg``; returns the summary that ``report.json`` holds.

    Every network is recorded in ``RUN_DIR/ledger.json`` as it goes, so running the same config
    again continues where a crash or kill left off; a config or base that would change the
    finished results is refused first (:func:`check_resume`). A hypothesis still failing after
    ``retries`` retries stops the search with an :class:`EffvidError` naming it (after the
    report of what finished is written).
    """
    from effvid.methods.pas.runner import RayRunner

    run_dir = Path(cfg.run_dir)
    ledger = Ledger.in_run_dir(run_dir)
    check_resume(ledger, cfg)
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
        if self.cfg.ablation is not None:
            self._ablation(base)

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
                 "checkpoint": str(stem), "weights_sha256": weights_sha256(stem)}
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
        selection = select_hypothesis(trained, base=base, prev_gmacs=prev["gmacs"], tolerance=cfg.cost_tolerance,
                                      tie_tolerance=cfg.tie_tolerance)
        self.ledger.select(iteration, selection.id, selection.rule,
                           {"scores": selection.scores, "ratios": selection.ratios, "tied": list(selection.tied)})
        chosen = self.ledger.get(selection.id)
        tied = f", tied with {', '.join(i for i in selection.tied if i != selection.id)}" if len(selection.tied) > 1 else ""
        self.log(f"PAS iteration {iteration}: selected epsilon_{chosen['operator']} by {selection.rule} "
                 f"(top-1 {100 * chosen['top1']:.1f}%, {chosen['gmacs']:.3f} GMACs/view{tied})")
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
                 **{key: chosen.get(key) for key in ARCH_FIELDS},
                 "run_dir": str(self.run_dir / "controls" / entry_id)})
            if entry["status"] != "done":
                jobs[entry_id] = self.cfg.control_config(entry["run_dir"], ArchSpec.from_dict(entry["spec"]))
        self._train_all(jobs)
        self._raise_failed("control", "without-PAS controls")

    # -- the single-iteration ablation (Table 4) -------------------------------------------------

    def _ablation(self, base: dict[str, Any]) -> None:
        """Train the :data:`ABLATION_VARIANTS` of the configured iteration's input-operator hypotheses."""
        ablation = self.cfg.ablation
        iteration = ablation.iteration
        if not self.ledger.iteration(iteration):
            searched = max((e["iteration"] for e in self.ledger.of_kind("hypothesis")), default=0)
            raise EffvidError(f"{self.ledger.path}: ablation.iteration={iteration}: the search stopped after "
                              f"iteration {searched}; ablate an iteration it ran")
        jobs = {}
        for op in ablation.operators:
            hypothesis = self.ledger.get(hypothesis_id(iteration, op))
            for variant in ABLATION_VARIANTS:
                entry_id = ablation_id(iteration, op, variant)
                entry = self.ledger.get(entry_id) or self.ledger.add(
                    self._ablation_entry(entry_id, hypothesis, variant, base))
                if entry["status"] not in ("done", "pruned"):
                    jobs[entry_id] = self._hypothesis_config(entry)
        self._train_all(jobs)
        self._raise_failed("ablation", f"ablation runs of iteration {iteration}")

    def _ablation_entry(self, entry_id: str, hypothesis: dict[str, Any], variant: str, base: dict[str, Any]
                        ) -> dict[str, Any]:
        """The ledger entry of ``hypothesis`` trained as ``variant``: its architecture, another training."""
        distilled, finetuned = ABLATION_VARIANTS[variant]
        entry: dict[str, Any] = {"id": entry_id, "kind": "ablation", "iteration": hypothesis["iteration"],
                                 "operator": hypothesis["operator"], "variant": variant, "of": hypothesis["id"],
                                 "parent": hypothesis["parent"]}
        if hypothesis["status"] == "pruned":
            return {**entry, "status": "pruned", "reason": hypothesis["reason"], "init": None, "spec": None}
        parent = self.ledger.get(hypothesis["parent"])
        return {**entry, **{key: hypothesis.get(key) for key in ARCH_FIELDS},
                "init": "from-previous" if finetuned else "random",
                "init_from": parent["checkpoint"] if finetuned else None,
                "teacher": base["checkpoint"] if distilled else None,
                "run_dir": str(self.run_dir / "ablations" / entry_id)}

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
                self.log(f"PAS: {entry_id} done: top-1 {100 * result['top1']:.1f}%, top-5 {100 * result['top5']:.1f}%, "
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

    def _raise_failed(self, kind: str, what: str) -> None:
        """An :class:`EffvidError` naming the failed entries of ``kind``, if any."""
        failed = [e for e in self.ledger.of_kind(kind) if e["status"] == "failed"]
        if failed:
            raise EffvidError(f"{self.ledger.path}: {what} failed: "
                              + "; ".join(f"{e['id']}: {e['error']}" for e in failed))


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

"""PAS selection: hypotheses per iteration, Eq. (1) / Eq. (3), ties within a tolerance, a hypothesis better than
the base, the control's recipe, config checks."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from effvid.config import from_dict
from effvid.cost.static import count_spec
from effvid.errors import ConfigError
from effvid.methods.pas.config import ResourcesConfig, ShrinkConfig
from effvid.methods.pas.ledger import Ledger, hypothesis_id
from effvid.methods.pas.operators import DEFAULT_GAMMAS, Pruned, Reduced
from effvid.methods.pas.runner import scaling_config, task_options
from effvid.methods.pas.search import cost_ratios, eq1_score, generate_hypotheses, ratios_agree, select_hypothesis
from effvid.models import default_spec

BASE = {"id": "base", "top1": 0.70, "top5": 0.90, "gmacs": 40.0}
TIE = 0.001  # the default tie_tolerance


def hyp(op: str, top1: float, top5: float, gmacs: float) -> dict:
    return {"id": hypothesis_id(1, op), "operator": op, "top1": top1, "top5": top5, "gmacs": gmacs}


def _first_iteration(name: str) -> tuple[float, dict[str, float]]:
    spec = default_spec(name)
    base = count_spec(spec).gmacs
    hypotheses = generate_hypotheses(Reduced.base(spec), "stfcl", DEFAULT_GAMMAS)
    assert set(hypotheses) == set("stfcl") and all(isinstance(h, Reduced) for h in hypotheses.values())
    assert all(h.operators == (op,) and h.factors[op] == DEFAULT_GAMMAS[op] for op, h in hypotheses.items())
    cands = [{"id": op, "gmacs": count_spec(h.spec).gmacs} for op, h in hypotheses.items()]
    return base, cost_ratios(cands, base)


def test_r2plus1d_hypotheses_roughly_halve_the_cost_so_eq3_applies():
    base, ratios = _first_iteration("r2plus1d_18")
    assert 40.0 < base < 41.5  # the paper's 40.8 GFLOPs at 16x112x112
    assert all(0.45 < r < 0.55 for r in ratios.values()), ratios
    assert ratios_agree(ratios, 0.10)


def test_slowfast_layer_reduction_saves_less_so_eq1_applies():
    _, ratios = _first_iteration("slowfast_4x16_r50")
    assert all(0.45 < ratios[op] < 0.55 for op in "stfc"), ratios
    assert ratios["l"] > 0.6  # res2..res5 of 3,4,6,3 blocks do not halve evenly
    assert not ratios_agree(ratios, 0.10)


def test_pruned_hypotheses_are_returned_with_their_reason():
    spec = default_spec("r2plus1d_18", depth_mult=0.5, num_frames=1)
    hypotheses = generate_hypotheses(Reduced.base(spec), "tl", DEFAULT_GAMMAS)
    assert isinstance(hypotheses["t"], Pruned) and "frame" in hypotheses["t"].reason
    assert isinstance(hypotheses["l"], Pruned) and "layer" in hypotheses["l"].reason


def test_eq3_picks_the_highest_top1_when_ratios_agree():
    cands = [hyp("s", 0.60, 0.85, 20.4), hyp("t", 0.66, 0.86, 20.0), hyp("c", 0.64, 0.88, 20.8)]
    sel = select_hypothesis(cands, base=BASE, prev_gmacs=40.0, tolerance=0.10, tie_tolerance=TIE)
    assert (sel.id, sel.rule) == ("it1-t", "eq3")
    assert sel.ratios["it1-c"] == pytest.approx(0.52)


def test_eq1_trades_cost_saved_against_accuracy_lost_when_ratios_differ():
    # l saves little cost (ratio 0.8) but loses almost nothing; s saves half and loses more
    cands = [hyp("s", 0.66, 0.88, 20.0), hyp("l", 0.69, 0.89, 32.0)]
    sel = select_hypothesis(cands, base=BASE, prev_gmacs=40.0, tolerance=0.10, tie_tolerance=TIE)
    assert sel.rule == "eq1"
    assert sel.scores["it1-s"] == pytest.approx(20.0 / 0.04)
    assert sel.scores["it1-l"] == pytest.approx(8.0 / 0.01)
    assert sel.id == "it1-l"
    # the same hypotheses with equal ratios would be judged on top-1 alone: still l
    assert select_hypothesis(cands, base=BASE, prev_gmacs=40.0, tolerance=1.0, tie_tolerance=TIE).rule == "eq3"


def test_a_hypothesis_at_least_as_accurate_as_the_base_scores_infinity_and_wins():
    assert eq1_score({"top1": 0.70, "gmacs": 30.0}, BASE) == math.inf
    cands = [hyp("s", 0.69, 0.95, 10.0), hyp("t", 0.70, 0.80, 30.0), hyp("f", 0.72, 0.80, 35.0)]
    sel = select_hypothesis(cands, base=BASE, prev_gmacs=40.0, tolerance=0.10, tie_tolerance=TIE)
    # both t and f lose nothing (+inf); among them the higher top-1 wins; inf is stored as None
    assert (sel.id, sel.rule) == ("it1-f", "eq1")
    assert sel.scores["it1-t"] is None and sel.scores["it1-f"] is None and sel.scores["it1-s"] > 0


def test_ties_go_to_top5_then_to_the_lower_cost():
    cands = [hyp("s", 0.66, 0.86, 20.0), hyp("t", 0.66, 0.88, 20.0), hyp("f", 0.66, 0.88, 19.9)]
    assert select_hypothesis(cands, base=BASE, prev_gmacs=40.0, tolerance=0.10, tie_tolerance=TIE).id == "it1-f"
    cands = cands[:2]
    assert select_hypothesis(cands, base=BASE, prev_gmacs=40.0, tolerance=0.10, tie_tolerance=TIE).id == "it1-t"
    # Eq. (1) ties the same way: equal score, then top-5
    eq1 = [hyp("s", 0.60, 0.86, 20.0), hyp("t", 0.60, 0.87, 20.0), hyp("l", 0.69, 0.80, 39.9)]
    sel = select_hypothesis(eq1, base=BASE, prev_gmacs=40.0, tolerance=0.10, tie_tolerance=TIE)
    assert sel.rule == "eq1" and sel.id == "it1-t"



def test_top1_within_the_tie_tolerance_of_the_best_ties_then_top5_decides():
    cands = [hyp("s", 0.660, 0.80, 20.0), hyp("t", 0.6592, 0.85, 20.0), hyp("f", 0.6584, 0.90, 20.0)]
    sel = select_hypothesis(cands, base=BASE, prev_gmacs=40.0, tolerance=0.10, tie_tolerance=TIE)
    # f is within 0.001 of t but not of the leader s: the band is anchored at the best top-1
    assert (sel.id, sel.tied) == ("it1-t", ("it1-s", "it1-t"))
    for order in ([2, 1, 0], [1, 2, 0], [0, 2, 1]):
        assert select_hypothesis([cands[i] for i in order], base=BASE, prev_gmacs=40.0, tolerance=0.10,
                                 tie_tolerance=TIE).id == "it1-t"
    assert select_hypothesis(cands, base=BASE, prev_gmacs=40.0, tolerance=0.10, tie_tolerance=0.0).id == "it1-s"
    # the tolerance is inclusive, whatever the float rounding of 0.660 - 0.001
    edge = [hyp("s", 0.660, 0.80, 20.0), hyp("t", 0.659, 0.85, 20.0)]
    assert select_hypothesis(edge, base=BASE, prev_gmacs=40.0, tolerance=0.10, tie_tolerance=TIE).id == "it1-t"
    # one video of 240 (0.0042) is more than the default tolerance: a real difference, not a tie
    one_video = [hyp("s", 100 / 240, 0.80, 20.0), hyp("t", 99 / 240, 0.95, 20.0)]
    assert select_hypothesis(one_video, base=BASE, prev_gmacs=40.0, tolerance=0.10, tie_tolerance=TIE).id == "it1-s"


def test_eq1_scores_tie_when_the_tolerance_on_top1_would_close_the_gap():
    # s: 20 GMACs saved for 0.04 lost (500); l: 10 saved for 0.0205 lost (488), 513 with 0.001 more top-1
    cands = [hyp("s", 0.66, 0.85, 20.0), hyp("l", 0.6795, 0.88, 30.0)]
    sel = select_hypothesis(cands, base=BASE, prev_gmacs=40.0, tolerance=0.10, tie_tolerance=TIE)
    assert sel.rule == "eq1" and sel.tied == ("it1-s", "it1-l") and sel.id == "it1-l"
    assert select_hypothesis(cands, base=BASE, prev_gmacs=40.0, tolerance=0.10, tie_tolerance=0.0).id == "it1-s"
    # a lossless leader (+inf) ties by top-1, with lossy hypotheses within the tolerance too
    lossless = [hyp("t", 0.72, 0.80, 20.0), hyp("f", 0.7195, 0.90, 20.0), hyp("l", 0.69, 0.99, 30.0)]
    sel = select_hypothesis(lossless, base=BASE, prev_gmacs=40.0, tolerance=0.10, tie_tolerance=TIE)
    assert sel.rule == "eq1" and sel.tied == ("it1-t", "it1-f") and sel.id == "it1-f"
    at_base = [hyp("t", 0.70, 0.80, 20.0), hyp("f", 0.6995, 0.90, 20.0), hyp("l", 0.60, 0.99, 30.0)]
    sel = select_hypothesis(at_base, base=BASE, prev_gmacs=40.0, tolerance=0.10, tie_tolerance=TIE)
    assert sel.scores["it1-t"] is None and sel.scores["it1-f"] is not None and sel.id == "it1-f"

def test_selection_on_a_hand_made_ledger_round_trip(tmp_path):
    ledger = Ledger.in_run_dir(tmp_path)
    ledger.add({"id": "base", "kind": "base", "iteration": 0, "status": "done", **BASE})
    for h in [hyp("s", 0.62, 0.85, 20.0), hyp("t", 0.65, 0.86, 20.0)]:
        ledger.add({**h, "kind": "hypothesis", "iteration": 1, "status": "done"})
    ledger.add({"id": "it1-l", "kind": "hypothesis", "iteration": 1, "operator": "l", "status": "pruned",
                "reason": "no layer left"})
    again = Ledger.in_run_dir(tmp_path)
    trained = [e for e in again.iteration(1) if e["status"] == "done"]
    sel = select_hypothesis(trained, base=again.get("base"), prev_gmacs=40.0, tolerance=0.1, tie_tolerance=TIE)
    again.select(1, sel.id, sel.rule, {"scores": sel.scores})
    final = Ledger.in_run_dir(tmp_path)
    assert [e["id"] for e in final.selected()] == ["it1-t"]
    assert final.get("it1-l")["status"] == "pruned" and final.get("it1-l")["reason"] == "no layer left"
    assert final.get("it1-s")["attempts"] == 0


def _config(**changes) -> dict:
    data = {"run_dir": "r", "data": {"train": "a.txt", "val": "b.txt"}, "base": {"checkpoint": "b"},
            "train": {"epochs": 1, "batch_size": 2}}
    data.update(changes)
    return data


def test_config_rejects_what_pas_sets_itself_and_needs_validation_data():
    cfg = from_dict(ShrinkConfig, _config())
    assert cfg.operators == list("stfcl") and cfg.distillation.temperature == 5 and cfg.distillation.alpha == "auto"
    assert cfg.distillation.teacher_bn == "train" and cfg.finetune_lr_scale == 0.1 and cfg.iterations == 5
    with pytest.raises(ConfigError, match="init_from"):
        from_dict(ShrinkConfig, _config(train={"epochs": 1, "batch_size": 2, "init_from": "x"}))
    with pytest.raises(ConfigError, match="data.val"):
        from_dict(ShrinkConfig, _config(data={"train": "a.txt"}))
    with pytest.raises(ConfigError, match="unknown reduction operator"):
        from_dict(ShrinkConfig, _config(operators=["s", "x"]))
    with pytest.raises(ConfigError, match="optim"):
        from_dict(ShrinkConfig, _config(train={"epochs": 1, "batch_size": 2, "optim": {"lr": -1}}))


def test_hypothesis_training_config_carries_distillation_and_finetuning():
    cfg = from_dict(ShrinkConfig, _config(distillation={"teacher_bn": "eval", "feature": "mse"}))
    spec = default_spec("r2plus1d_18", num_classes=16)
    train = cfg.train_config("r/h", spec=spec, teacher="base/best", init_from="prev/best")
    assert train.distill.teacher == "base/best" and train.distill.teacher_bn == "eval"
    assert train.distill.feature == "mse" and train.distill.alpha == "auto"
    assert train.init_from == "prev/best" and train.init_lr_scale == 0.1 and train.resume == "auto"
    assert train.model.to_spec(16) == spec
    plain = cfg.train_config("r/c", spec=spec)
    assert plain.distill is None and plain.init_from is None



def test_the_control_trains_with_the_hypotheses_recipe_unless_control_train_is_given():
    cfg = from_dict(ShrinkConfig, _config(control=True))
    spec = default_spec("r2plus1d_18", num_classes=16)
    control = cfg.control_config("r/c", spec)
    assert control == cfg.train_config("r/c", spec=spec)
    # the same TrainConfig as a hypothesis, less KD and fine-tuning: same epochs, full learning rate
    hypothesis = cfg.train_config("r/c", spec=spec, teacher="base/best", init_from="prev/best")
    assert hypothesis.init_lr_scale == 0.1
    assert replace(hypothesis, distill=None, init_from=None, init_lr_scale=1.0) == control
    assert control.epochs == 1 and control.init_lr_scale == 1.0 and control.distill is None
    longer = from_dict(ShrinkConfig, _config(control_train={"epochs": 45, "batch_size": 2}))
    assert longer.control_config("r/c", spec).epochs == 45


def test_tie_tolerance_defaults_to_a_tenth_of_a_point_and_is_checked():
    assert from_dict(ShrinkConfig, _config()).tie_tolerance == 0.001
    assert from_dict(ShrinkConfig, _config(tie_tolerance=0)).tie_tolerance == 0.0
    for bad in (-0.01, 1.0):
        with pytest.raises(ConfigError, match="tie_tolerance"):
            from_dict(ShrinkConfig, _config(tie_tolerance=bad))

def test_several_gpus_per_hypothesis_train_with_ray_train_ddp():
    ddp = ResourcesConfig(num_cpus=8, num_gpus=4)
    scaling = scaling_config(ddp)
    assert scaling.num_workers == 4 and scaling.use_gpu
    assert scaling.resources_per_worker == {"CPU": 2.0, "GPU": 1}
    assert task_options(ddp)["num_gpus"] == 0  # the GPUs are reserved by Ray Train's workers
    single = task_options(ResourcesConfig(num_cpus=2, num_gpus=1))
    assert single["num_cpus"] == 2 and single["num_gpus"] == 1 and not ResourcesConfig(num_gpus=1).distributed

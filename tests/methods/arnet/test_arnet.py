"""AR-Net: the skip counter, Gumbel decisions, routed inference against the dense formulation,
the cost table against ``effvid flops``, the executed-op check, stage freezing, and a tiny run
through ``effvid train``, ``eval --json`` and ``predict``."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import yaml

from effvid.cli import main
from effvid.cost.executed import check_reported_cost
from effvid.engine.checkpoint import load_checkpoint, save_checkpoint
from effvid.methods.arnet.actions import frame_actions
from effvid.methods.common.gumbel import exp_decay_temperature, gumbel_noise, gumbel_softmax_st
from effvid.models import create_from_spec, default_spec
from effvid.spec import MethodSpec

# resolutions 32 / 24 and the policy's MobileNetV2 at 16 as the lowest branch; skips 1, 2, 4 (7 actions)
SETTINGS = {"branches": [{"name": "resnet18", "resolution": 32, "width_mult": 0.25},
                         {"name": "resnet18", "resolution": 24, "width_mult": 0.25, "depth_mult": 0.5}],
            "policy": {"resolution": 16, "width_mult": 0.25, "hidden": 32}}
SKIP1, SKIP2, SKIP4 = 3, 4, 5


def _spec(frames: int = 6, **settings):
    return default_spec("resnet18", num_classes=16, crop_size=32, num_frames=frames, width_mult=0.25,
                        train_resize=(32, 32), test_resize=32,
                        method=MethodSpec("arnet", {**SETTINGS, **settings}))


def _decisive(model):
    """An untrained policy that makes varied decisions: its extractor's BatchNorm statistics
    estimated on noise (at initialisation the features are about 1e-9) and a sharper action layer."""
    norms = [m for m in model.policy.extractor.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for norm in norms:
        norm.momentum = None
    with torch.no_grad():
        model.policy.train().features(torch.randn(32, 3, 16, 16))
        model.policy.actions.weight.normal_(0.0, 1.0)
    for norm in norms:
        norm.momentum = 0.1
    return model


def test_skip_k_covers_exactly_k_frames_and_a_skip_ends_at_the_last_frame():
    assert frame_actions([SKIP4, 0, 1], 6, [1, 2, 4], 3) == [SKIP4] * 4 + [0, 1]
    assert frame_actions([SKIP1, SKIP2, 2, 0], 5, [1, 2, 4], 3) == [SKIP1, SKIP2, SKIP2, 2, 0]
    assert frame_actions([1, 1, SKIP4], 4, [1, 2, 4], 3) == [1, 1, SKIP4, SKIP4]


def test_straight_through_gumbel_is_one_hot_forward_with_the_soft_samples_gradient():
    logits = torch.randn(5, 7, requires_grad=True)
    weights = torch.randn(7)
    hard = gumbel_softmax_st(logits, 0.7, generator=torch.Generator().manual_seed(3))
    assert torch.equal(hard.detach().sum(-1), torch.ones(5)) and set(hard.detach().unique().tolist()) == {0.0, 1.0}
    (hard * weights).sum().backward()
    reference = logits.detach().clone().requires_grad_(True)
    noise = gumbel_noise(reference, generator=torch.Generator().manual_seed(3))
    soft = torch.softmax((reference + noise) / 0.7, dim=-1)
    (soft * weights).sum().backward()
    assert torch.allclose(logits.grad, reference.grad, atol=1e-6)
    assert torch.equal(hard.detach().argmax(-1), soft.detach().argmax(-1))


def test_the_temperature_anneals_by_exp_minus_0045_per_epoch():
    model = create_from_spec(_spec())
    assert model.tau == 5.0
    model.set_epoch(10, 50)
    assert model.tau == pytest.approx(5.0 * math.exp(-0.45))
    assert exp_decay_temperature(46, initial=5.0, rate=-0.045) == pytest.approx(0.6309, abs=1e-4)


def test_routed_inference_gives_the_dense_formulations_logits_for_the_same_decisions():
    model = _decisive(create_from_spec(_spec())).eval()
    x = torch.randn(4, 3, 6, 32, 32)
    frames = x.transpose(1, 2).reshape(24, 3, 32, 32)
    by_hand = torch.tensor([[0, 1, 2, SKIP2, SKIP2, 0], [2, 2, 2, 2, 2, 2], [SKIP4] * 4 + [1, SKIP1], [SKIP1] * 6])
    with torch.no_grad():
        features = model.policy.features(model.resize(frames, 16))
        from_policy = model.forward_output(x).decisions["actions"]
        per_frame = model.frame_logits(frames, features).view(4, 6, 3, 16)
        for actions in (by_hand, from_policy):
            dense = model.dense_logits(per_frame, torch.nn.functional.one_hot(actions, 7).float())
            assert torch.allclose(model.routed_logits(frames, features, actions), dense, atol=1e-5)
        routed = model.routed_logits(frames, features, by_hand)
    assert torch.equal(routed[3], torch.zeros(16))  # every frame skipped: a uniform prediction
    assert len(from_policy.unique()) >= 3


def test_the_cost_table_is_effvid_flops_of_each_backbone_at_its_resolution(capsys):
    model = create_from_spec(_spec())
    for branch, (size, depth) in zip(model.costs.branches, [(32, "1"), (24, "0.5")]):
        assert main(["flops", "resnet18", "--frames", "1", "--size", str(size), "--width", "0.25", "--depth", depth,
                     "--classes", "16", "--json"]) == 0
        assert branch == pytest.approx(json.loads(capsys.readouterr().out)["gmacs"], rel=1e-12)
    assert main(["flops", "mobilenet_v2", "--frames", "1", "--size", "16", "--width", "0.25", "--classes", "16",
                 "--json"]) == 0
    extractor = json.loads(capsys.readouterr().out)["gmacs"]
    assert model.costs.extractor + model.costs.lite_head == pytest.approx(extractor, rel=1e-12)
    assert model.action_costs.tolist() == pytest.approx([*model.costs.branches, model.costs.lite_head, 0, 0, 0])


@pytest.mark.parametrize("settings", [{}, {"skip_state": "integrate"}, {"mode": "random"}, {"mode": "multiscale"},
                                      {"mode": "lstm"}])
def test_reported_cost_is_what_executed_on_real_clips(settings, synth_micro):
    from effvid.data.annotations import load_annotations
    from effvid.data.dataset import VideoDataset

    spec = _spec(**settings)
    model = _decisive(create_from_spec(spec)).eval()
    dataset = VideoDataset(load_annotations(synth_micro.annotations["val"]), spec=spec, train=False)
    clips = torch.stack([dataset[i]["clip"] for i in range(8)])
    executed = check_reported_cost(model, clips)
    assert float(executed.per_sample_gmacs.max()) <= model.dense_gmacs() * (1 + 1e-9)
    if settings.get("mode") == "random":  # drawn decisions: the clips' costs differ
        assert executed.per_sample_gmacs.min() < executed.per_sample_gmacs.max()


def test_held_lstm_state_makes_the_skipped_frames_invisible_to_the_policy():
    model = _decisive(create_from_spec(_spec(frames=12))).eval()
    torch.manual_seed(5)
    x = torch.randn(6, 3, 12, 32, 32)
    with torch.no_grad():
        out = model.forward_output(x)
        unseen = ~out.decisions["decided"]  # frames covered by a skip decided on an earlier frame
        assert unseen.any()
        changed = torch.where(unseen[:, None, :, None, None], torch.randn_like(x), x)
        again = model.forward_output(changed)
    assert torch.equal(again.decisions["actions"], out.decisions["actions"])
    assert torch.allclose(again.logits, out.logits, atol=1e-6) and torch.equal(again.cost, out.cost)


def test_policy_lstm_steps_are_the_decisions_or_every_frame_when_integrating():
    from effvid.methods.arnet.actions import SkipCounter

    for state, expected in (("hold", None), ("integrate", 12)):
        model = _decisive(create_from_spec(_spec(frames=12, skip_state=state))).eval()
        features = torch.randn(5, 12, model.policy.extractor.num_features)
        counter = SkipCounter(5, [1, 2, 4], 3, torch.device("cpu"))
        with torch.no_grad():
            d = model.policy.decide(features, tau=1.0, sample=False, counter=counter,
                                    integrate_skipped=state == "integrate")
        steps = d.decided.sum(1) if expected is None else torch.full((5,), expected)
        assert torch.equal(d.lstm_steps, steps)


def test_training_decisions_carry_gradients_to_the_policy_through_the_losses():
    model = create_from_spec(_spec()).train()
    out = model.forward_output(torch.randn(2, 3, 6, 32, 32))
    from effvid.engine.losses import LossContext

    ctx = LossContext(logits=out.logits, targets=torch.tensor([0, 1]), decisions=out.decisions)
    terms = model.loss_terms()
    total = torch.nn.functional.cross_entropy(out.logits, ctx.targets) + terms["flops"](ctx) + terms["uniform"](ctx)
    total.backward(retain_graph=True)
    assert model.policy.actions.weight.grad.abs().sum() > 0 and model.policy.lstm.weight_ih.grad.abs().sum() > 0
    model.zero_grad()
    terms["branch_ce"](ctx).backward()  # the warm-up term trains every branch, not the policy's decisions
    assert all(float(b.fc.weight.grad.abs().sum()) > 0 for b in model.branches)
    assert model.policy.extractor.get_classifier().weight.grad.abs().sum() > 0
    assert model.policy.actions.weight.grad is None or not model.policy.actions.weight.grad.any()
    assert 0.0 <= float(terms["flops"](ctx).detach()) <= 1.0


WARMUP = {"name": "warmup", "epochs": 1, "freeze": ["policy.lstm.*", "policy.actions.*"], "losses": ["branch_ce"]}
JOINT = {"name": "joint", "epochs": 1, "losses": ["ce", "flops", "uniform"]}
FINETUNE = {"name": "finetune", "epochs": 1, "losses": ["ce"], "freeze": ["policy.*"]}


def _config(tmp_path: Path, train: Path, val: Path, stages: list[dict], name: str, **changes) -> Path:
    cfg = {"run_dir": str(tmp_path / name), "epochs": len(stages), "batch_size": 4, "seed": 0, "log_every": 1,
           "model": {"spec": _spec(frames=4).to_dict()},
           "data": {"train": str(train), "val": str(val), "num_workers": 0, "val_views": [1, 1]},
           "optim": {"name": "adamw", "lr": 0.003, "weight_decay": 0.0},
           "losses": [{"name": "ce", "weight": 0.9}, {"name": "flops", "weight": 0.1},
                      {"name": "uniform", "weight": 0.3}, {"name": "branch_ce"}],
           "stages": stages, **changes}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_warm_up_and_fine_tuning_leave_the_policy_as_it_was(synth_micro, tmp_path):
    start = create_from_spec(_spec(frames=4))
    save_checkpoint(tmp_path / "start", model=start, spec=start.spec)
    config = _config(tmp_path, synth_micro.annotations["train"], synth_micro.annotations["val"], [WARMUP, FINETUNE],
                     "frozen", init_from=str(tmp_path / "start"))
    assert main(["train", str(config)]) == 0
    final, _ = load_checkpoint(tmp_path / "frozen" / "checkpoints" / "epoch_0002")
    initial = start.state_dict()
    for name in ("policy.lstm.weight_ih", "policy.lstm.weight_hh", "policy.actions.weight", "policy.actions.bias"):
        assert torch.equal(final[name], initial[name]), name
    for name in ("branches.0.conv1.weight", "branches.1.fc.weight", "policy.extractor.classifier.1.weight"):
        assert not torch.equal(final[name], initial[name]), name


def test_a_tiny_arnet_trains_in_three_stages_evaluates_and_predicts(synth_micro, tmp_path, capsys):
    train, val = synth_micro.annotations["train"], synth_micro.annotations["val"]
    assert main(["train", str(_config(tmp_path, train, val, [WARMUP, JOINT, FINETUNE], "run"))]) == 0
    run = tmp_path / "run"
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["stage"] for r in records if "stage" in r] == ["warmup", "joint", "finetune"]
    assert "flops" not in records[0]["train"] and "branch_ce" in records[0]["train"]
    assert "flops" in records[1]["train"] and "branch_ce" not in records[1]["train"]

    capsys.readouterr()
    assert main(["eval", str(run / "checkpoints" / "best"), "--json", "--workers", "0"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["dynamic"] is True
    assert result["gmacs_per_view_min"] <= result["gmacs_per_view"] <= result["gmacs_per_view_max"]
    assert result["gmacs_per_view_max"] <= result["dense_gmacs_per_view"]
    video = synth_micro.root / val.read_text().split()[0]
    assert main(["predict", str(run / "checkpoints" / "best"), str(video), "--json"]) == 0
    prediction = json.loads(capsys.readouterr().out)
    assert prediction["dynamic"] is True and 0 <= prediction["gmacs"] <= result["dense_gmacs_per_view"]


def test_the_policys_lstm_step_is_lstm_cell_arithmetic_with_the_input_projection_batched():
    policy = create_from_spec(_spec()).policy
    features = torch.randn(3, 5, policy.extractor.num_features)
    h, c = torch.randn(3, 32), torch.randn(3, 32)
    inputs = policy.input_gates(features)
    for t in range(5):
        expected = policy.lstm(features[:, t], (h, c))
        h, c = policy.step(inputs[:, t], h, c)
        # float32 rounding of the split projection (1e-6 of the O(1) gates on an AVX-512 CPU) is allowed;
        # a wrong gate order or a missing bias differs by far more
        torch.testing.assert_close(h, expected[0], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(c, expected[1], rtol=1e-5, atol=1e-5)


def test_every_shipped_arnet_config_loads_and_builds_its_model():
    from effvid.engine.train_config import load_train_config
    from effvid.methods.arnet.recipe import CONFIG_DIR

    configs = sorted(CONFIG_DIR.glob("*.yaml"))
    assert len(configs) >= 15
    for path in configs:  # paper_resnet.yaml is the datasets' base: it names no data and no run folder
        cfg = load_train_config(path, ["run_dir=runs/x", "data.train=train.txt"])
        model = create_from_spec(cfg.model.to_spec(16))
        if model.dynamic:
            assert {term.name for term in cfg.losses} <= {"ce", *model.loss_terms()}, path.name
        assert sum(stage.epochs for stage in cfg.stage_plan()) == cfg.epochs, path.name


@pytest.mark.parametrize("mode", ["random", "multiscale"])
def test_the_baselines_train_with_the_warm_up_and_classification_losses(mode):
    from effvid.engine.losses import LossContext

    model = create_from_spec(_spec(mode=mode)).train()
    out = model.forward_output(torch.randn(2, 3, 6, 32, 32))
    ctx = LossContext(logits=out.logits, targets=torch.tensor([0, 1]), decisions=out.decisions)
    (torch.nn.functional.cross_entropy(out.logits, ctx.targets) + model.loss_terms()["branch_ce"](ctx)).backward()
    assert all(float(b.fc.weight.grad.abs().sum()) > 0 for b in model.branches)
    assert model.policy.actions.weight.grad is None  # the policy does not run in either baseline

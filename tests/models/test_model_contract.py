"""Every registered model meets the model contract through ModelBase: one reset_classifier for all."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from effvid.models import create, create_from_spec, default_spec, list_models
from effvid.models.base import ModelBase, VideoModel


def expected_classifier(name: str) -> str:
    if name.startswith("slowfast"):
        return "blocks.6.proj"
    if name.startswith("x3d"):
        return "blocks.5.proj"
    if name.startswith(("mobilenet", "efficientnet", "tsm_mobilenet")):
        return "classifier.1"
    return "fc"


@pytest.mark.parametrize("name", list_models())
def test_every_model_meets_the_contract_and_resets_its_classifier(name):
    spec = default_spec(name, num_classes=5, width_mult=0.25)
    with torch.device("meta"):
        model = create_from_spec(spec)
    assert isinstance(model, VideoModel) and isinstance(model, ModelBase)
    assert type(model).reset_classifier is ModelBase.reset_classifier
    assert type(model).get_classifier is ModelBase.get_classifier
    assert model.classifier_name == expected_classifier(name)
    keys = list(model.state_dict())
    old = model.get_classifier()
    assert isinstance(old, nn.Linear) and old.out_features == 5

    model.reset_classifier(7)

    new = model.get_classifier()
    assert new is not old and (new.in_features, new.out_features) == (old.in_features, 7)
    assert new.weight.device.type == "meta"
    assert model.spec == spec.replace(num_classes=7)
    assert list(model.state_dict()) == keys


@pytest.mark.parametrize(("name", "frames"), [("resnet18", 2), ("mobilenet_v2", 2), ("x3d_xs", 4)])
def test_logits_after_reset_classifier_have_the_new_class_count(name, frames):
    torch.manual_seed(0)
    model = create(name, num_classes=5, width_mult=0.25, depth_mult=0.25).eval()
    model.reset_classifier(7)
    classifier = model.get_classifier()
    assert torch.equal(classifier.bias, torch.zeros(7)) and 0.0 < float(classifier.weight.detach().std()) < 0.02
    with torch.no_grad():
        logits = model(torch.randn(2, 3, frames, 32, 32))
    assert logits.shape == (2, 7)
    assert model.forward_output(torch.randn(1, 3, frames, 32, 32)).logits.shape == (1, 7)

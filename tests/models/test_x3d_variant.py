"""The VA-RED2 thesis's X3D: swish removed except inside SE, switched on by ``spec.family``."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from effvid.cost.executed import check_reported_cost
from effvid.cost.static import count_cost
from effvid.errors import ConfigError
from effvid.models import create_from_spec, default_spec
from effvid.models.x3d import SqueezeExcitation3d
from effvid.spec import ArchSpec, MethodSpec

THESIS = {"activation": "relu_except_se"}


def tiny(family: dict, **overrides) -> ArchSpec:
    return default_spec("x3d_m", num_classes=5, num_frames=4, crop_size=32, width_mult=0.25, depth_mult=0.2,
                        family=family, **overrides)


def test_the_variant_has_no_swish_and_keeps_every_squeeze_excitation():
    with torch.device("meta"):
        published = create_from_spec(default_spec("x3d_m"))
        thesis = create_from_spec(default_spec("x3d_m", family=THESIS))
    assert sum(isinstance(m, nn.SiLU) for m in published.modules()) == 26  # one per bottleneck
    assert not any(isinstance(m, nn.SiLU) for m in thesis.modules())
    blocks = [name for name, _ in thesis.named_modules() if name.endswith("branch2")]
    assert len(blocks) == 26
    for name in blocks:
        assert isinstance(thesis.get_submodule(f"{name}.act_b"), nn.ReLU)
    se = [m for m in thesis.modules() if isinstance(m, SqueezeExcitation3d)]
    assert len(se) == 15 and len(se) == sum(isinstance(m, SqueezeExcitation3d) for m in published.modules())
    for module in se:
        assert [type(m) for m in module.block] == [nn.Conv3d, nn.ReLU, nn.Conv3d, nn.Sigmoid]


def test_same_keys_parameters_and_cost_as_the_published_x3d():
    published, thesis = default_spec("x3d_m"), default_spec("x3d_m", family=THESIS)
    with torch.device("meta"):
        a, b = create_from_spec(published), create_from_spec(thesis)
    assert {k: v.shape for k, v in a.state_dict().items()} == {k: v.shape for k, v in b.state_dict().items()}
    assert count_cost(thesis, (16, 256, 256)).gmacs == pytest.approx(count_cost(published, (16, 256, 256)).gmacs)
    assert count_cost(thesis, (16, 256, 256)).gmacs == pytest.approx(6.19, rel=0.005)  # thesis Table 4.2: 6.20


def test_a_published_checkpoint_loads_and_the_activation_changes_the_output():
    torch.manual_seed(0)
    published = create_from_spec(tiny({})).eval()
    with torch.no_grad():
        for module in published.modules():  # undo the zero-initialised last BN so branches matter
            if isinstance(module, nn.BatchNorm3d):
                module.weight.fill_(1.0)
        thesis = create_from_spec(tiny(THESIS)).eval()
        thesis.load_state_dict(published.state_dict(), strict=True)
        x = torch.randn(2, 3, 4, 32, 32)
        assert not torch.allclose(published(x), thesis(x))


def test_forward_backward_and_vared2_on_the_variant():
    torch.manual_seed(0)
    model = create_from_spec(tiny(THESIS)).train()
    model(torch.randn(2, 3, 4, 32, 32)).sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    dynamic = create_from_spec(tiny(THESIS, method=MethodSpec("vared2", {})))
    assert not any(isinstance(m, nn.SiLU) for m in dynamic.modules())
    check_reported_cost(dynamic, torch.randn(2, 3, 4, 32, 32))


@pytest.mark.parametrize(("family", "named"), [({"activation": "relu"}, "activation"), ({"swish": False}, "swish")])
def test_a_bad_family_setting_is_a_config_error_naming_it(family, named):
    with pytest.raises(ConfigError, match=named):
        create_from_spec(tiny(family))

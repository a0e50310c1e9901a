"""prepare_for_inference: the default variant is in eval mode, frozen, and computes what eager does;
large activations reuse freed pages."""

import platform
import resource

import pytest
import torch

from effvid.models import create, prepare_for_inference
from effvid.models.inference import VARIANTS


@pytest.mark.parametrize("name", ["r2plus1d_18", "resnet18", "x3d_xs"])
@pytest.mark.parametrize("variant", [v for v in VARIANTS if v != "compile"])
def test_variant_matches_eager_and_is_frozen(name, variant):
    model = create(name, num_classes=5, width_mult=0.25, num_frames=4, crop_size=32).eval()
    clip = torch.randn(2, 3, 4, 32, 32)
    with torch.no_grad():
        expected = model(clip)
    prepared = prepare_for_inference(model, variant=variant)
    assert not prepared.training
    assert not any(p.requires_grad for p in prepared.parameters())
    with torch.no_grad():
        torch.testing.assert_close(prepared(clip), expected, rtol=1e-4, atol=1e-5)


def test_default_variant_is_one_of_the_measured_ones():
    from effvid.models.inference import DEFAULT_VARIANT

    assert DEFAULT_VARIANT in VARIANTS


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc's malloc only")
def test_after_keep_freed_memory_a_large_activation_reuses_its_pages():
    from effvid.models.inference import keep_freed_memory

    assert keep_freed_memory() and keep_freed_memory()
    torch.empty(10_000_000).fill_(1.0)  # 40 MB, above glibc's largest mmap threshold, touched and freed
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(4):
        torch.empty(10_000_000).fill_(1.0)
    # fresh pages every time would fault in 4 x 9,766 pages (measured: 39,064); reused, one at most
    assert resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before < 2 * 9_766

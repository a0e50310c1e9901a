"""Small D-STEP models for the tests, with untrained masks and policies made decisive."""

from __future__ import annotations

import torch

from effvid.models import create_from_spec, default_spec
from effvid.spec import MethodSpec

SETTINGS = {"hidden": 16, "mask_bias": 0.0, "tile_sizes": [2, 1, 1, 1], "dense_above": [0.8, 0.8, 0.8, 0.8]}


def dstep_spec(name: str = "tsm_r18", *, frames: int = 4, crop: int = 32, **settings):
    return default_spec(name, num_classes=16, crop_size=crop, num_frames=frames, width_mult=0.25,
                        train_resize=(crop, crop), test_resize=crop,
                        method=MethodSpec("dstep", {**SETTINGS, **settings}))


def decisive(model):
    """Random mask and policy weights large enough that tiles and actions vary."""
    with torch.no_grad():
        for block in model.blocks():
            block.mask.conv.weight.normal_(0.0, 1.0)
            block.policy.fc2.weight.normal_(0.0, 1.0)
    return model


def dstep_model(name: str = "tsm_r18", **kwargs):
    return decisive(create_from_spec(dstep_spec(name, **kwargs)))

"""Evaluation opens each video once for all its K x C views and scores exactly what per-view decoding
scored."""

from __future__ import annotations

import pytest
import torch

from effvid.data.annotations import load_annotations
from effvid.data.dataset import VideoDataset
from effvid.engine.evaluate import evaluate
from effvid.models import create_from_spec


@pytest.fixture
def model(tiny_spec):
    torch.manual_seed(5)
    return create_from_spec(tiny_spec(16).replace(crop_size=24)).eval()


def test_each_video_is_opened_once_for_all_views(model, synth_micro, opens):
    annotation = load_annotations(synth_micro.annotations["val"])
    result = evaluate(model, annotation, views=(3, 3), num_workers=0, batch_size=4, count_cost=False)
    assert result.num_videos == len(annotation.records)
    assert sorted(opens) == sorted(r.path for r in annotation.records)  # once each, 9 views


def test_scores_are_those_of_per_view_decoding(model, synth_micro):
    annotation = load_annotations(synth_micro.annotations["val"])
    result = evaluate(model, annotation, views=(3, 3), num_workers=0, batch_size=9, count_cost=False)
    dataset = VideoDataset(annotation, spec=model.spec, train=False, num_clips=3, num_crops=3)
    with torch.no_grad():
        for video in range(len(annotation.records)):
            views = torch.stack([dataset[video * 9 + view]["clip"] for view in range(9)])
            expected = torch.softmax(model(views), dim=-1).mean(dim=0)
            assert torch.allclose(result.video_probs[video], expected, atol=1e-6), video
    assert result.video_targets.tolist() == [r.label for r in annotation.records]


def test_forward_batches_do_not_change_the_result_and_workers_load_whole_videos(model, synth_micro):
    annotation = load_annotations(synth_micro.annotations["val"])
    one = evaluate(model, annotation, views=(2, 3), num_workers=0, batch_size=5, count_cost=False)
    two = evaluate(model, annotation, views=(2, 3), num_workers=2, batch_size=13, count_cost=False)
    assert torch.allclose(one.video_probs, two.video_probs, atol=1e-6)
    assert (one.video_top1, one.clip_top1, one.num_videos) == (two.video_top1, two.clip_top1, two.num_videos)

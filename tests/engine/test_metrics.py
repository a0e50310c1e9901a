"""Evaluation metrics against hand-computed examples: multi-view averaging, top-k, mean class accuracy, mAP."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from effvid.engine.metrics import (
    aggregate_views,
    centre_view,
    confusion_matrix,
    mean_average_precision,
    multiview_metrics,
)
from effvid.report.plots import plot_confusion_matrix


def test_views_are_combined_by_averaging_softmax_not_logits() -> None:
    logits = torch.tensor([[0.0, 4.0], [2.0, 0.0], [1.0, 1.0]])
    probs = aggregate_views(logits, torch.tensor([0, 0, 1]))
    s = 1 / (1 + math.exp(-4.0))
    t = 1 / (1 + math.exp(-2.0))
    assert probs[0].tolist() == pytest.approx([((1 - s) + t) / 2, (s + (1 - t)) / 2])
    assert probs[1].tolist() == pytest.approx([0.5, 0.5])


def test_centre_view_is_middle_clip_centre_crop() -> None:
    assert centre_view(10, 3) == 16 and centre_view(1, 1) == 0 and centre_view(4, 1) == 2


def test_multiview_metrics_by_hand() -> None:
    # 3 videos x 3 clips x 1 crop, 3 classes; the centre view (clip 1) of video 1 is wrong,
    # but its other two views outvote it; video 2 (class 2) is outvoted by class 0.
    eye = torch.eye(3) * 5
    weak2 = torch.tensor([0.0, 0.0, 2.5])
    view_logits = {0: [eye[0], eye[0], eye[0]], 1: [eye[1], eye[2], eye[1]], 2: [eye[0], eye[0], weak2]}
    labels = {0: 0, 1: 1, 2: 2}
    logits, targets, video_index, view_index = [], [], [], []
    for order in (2, 0, 1):  # views arrive in any order
        for v, vid in [(order, vid) for vid in (1, 0, 2)]:
            logits.append(view_logits[vid][v])
            targets.append(labels[vid])
            video_index.append(vid)
            view_index.append(v)
    m = multiview_metrics(torch.stack(logits), torch.tensor(targets), torch.tensor(video_index),
                          torch.tensor(view_index), num_clips=3, num_crops=1)
    assert m["num_videos"] == 3 and m["num_views"] == 9
    assert m["clip_top1"] == pytest.approx(1 / 3)
    assert m["video_top1"] == pytest.approx(2 / 3)
    assert m["video_top5"] == pytest.approx(1.0)  # top-5 of 3 classes contains everything
    assert m["mean_class_accuracy"] == pytest.approx((1 + 1 + 0) / 3)
    # Video probabilities (softmax of 5*e_k is 0.9867 / 0.0066; of weak2 0.0705 / 0.859):
    # v0 = (0.987, 0.007, 0.007), v1 = (0.007, 0.660, 0.333), v2 = (0.681, 0.028, 0.291).
    # AP: class 0 ranks v0 (+) first -> 1; class 1 ranks v1 (+) first -> 1;
    # class 2 ranks v1 (-), v2 (+), v0 -> precision 1/2 at the only positive -> 1/2.
    probs = m["video_probs"]
    assert probs[2].tolist() == pytest.approx([0.6813, 0.0279, 0.2908], abs=1e-3)
    assert m["mAP"] == pytest.approx((1.0 + 1.0 + 0.5) / 3)
    assert m["video_targets"].tolist() == [0, 1, 2]


def test_map_ignores_classes_without_positives_and_handles_multilabel() -> None:
    probs = torch.tensor([[0.9, 0.1, 0.0], [0.6, 0.4, 0.0], [0.2, 0.8, 0.0]])
    assert mean_average_precision(probs, torch.tensor([0, 1, 1])) == pytest.approx((1.0 + 1.0) / 2)
    # multi-label: class 0 positives {0, 2}: ranking 0.9 (+), 0.6 (-), 0.2 (+) -> AP = (1 + 2/3) / 2
    multi = torch.tensor([[1, 0, 0], [0, 1, 0], [1, 1, 0]], dtype=torch.float32)
    # class 1 positives {1, 2}: ranking 0.8 (+), 0.4 (+), 0.1 (-) -> AP = 1
    assert mean_average_precision(probs, multi) == pytest.approx(((1 + 2 / 3) / 2 + 1.0) / 2)


def test_multilabel_multiview_hit_at_k() -> None:
    logits = torch.tensor([[3.0, -3.0, 0.0], [-3.0, 3.0, 0.0]])
    targets = torch.tensor([[0, 1, 1], [0, 1, 0]], dtype=torch.float32)
    m = multiview_metrics(logits, targets, torch.tensor([0, 1]), torch.tensor([0, 0]), num_clips=1, num_crops=1,
                          multilabel=True)
    assert m["video_top1"] == pytest.approx(0.5) and m["video_top5"] == 1.0 and m["mean_class_accuracy"] is None


def test_confusion_matrix_and_png(tmp_path: Path) -> None:
    probs = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.7, 0.3]])
    cm = confusion_matrix(probs, torch.tensor([0, 1, 1]))
    assert cm.tolist() == [[1, 0], [1, 1]]
    path = plot_confusion_matrix(cm, ["run", "jump"], tmp_path / "cm.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

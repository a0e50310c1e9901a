"""``model.pretrained: {path, source}`` in a training config loads the weights strictly before training."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from effvid.engine import checkpoint as ckpt
from effvid.engine.train_config import load_train_config
from effvid.engine.trainer import train
from effvid.errors import CheckpointError
from effvid.models import create_from_spec


def test_pretrained_weights_are_where_training_starts(tiny_spec, subset_annotation, write_config, tmp_path: Path):
    source = create_from_spec(tiny_spec(16))
    torch.nn.init.normal_(source.stem[0].weight, 0.0, 3.0)  # unlike any fresh initialisation
    path = tmp_path / "pretrained.pth"
    torch.save(source.state_dict(), path)
    config = write_config(subset_annotation(4), epochs=1, max_steps_per_epoch=1,
                          model={"pretrained": {"path": str(path), "source": "torchvision"}},
                          optim={"name": "sgd", "lr": 1e-12, "momentum": 0.0, "weight_decay": 0.0})
    result = train(load_train_config(config), progress=False)
    weights, _ = ckpt.load_checkpoint(result.last_checkpoint)
    assert torch.allclose(weights["stem.0.weight"], source.stem[0].weight.detach(), atol=1e-6)
    assert f"pretrained {path} (torchvision)" in (Path(result.run_dir) / "train.log").read_text()


def test_a_checkpoint_that_does_not_fit_stops_before_training(tiny_spec, subset_annotation, write_config,
                                                              tmp_path: Path):
    wider = create_from_spec(tiny_spec(16).replace(width_mult=0.5))
    path = tmp_path / "wider.pth"
    torch.save(wider.state_dict(), path)
    config = write_config(subset_annotation(4), epochs=1, model={"pretrained": {"path": str(path),
                                                                               "source": "torchvision"}})
    with pytest.raises(CheckpointError, match="shape mismatch") as err:
        train(load_train_config(config), progress=False)
    assert str(path) in str(err.value)
    assert not (tmp_path / "run" / "checkpoints").exists()

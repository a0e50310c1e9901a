"""Two Gloo processes under torchrun evaluate a checkpoint with the videos sharded between them (whole
videos per rank) and both report the metrics one process computes.

Five videos (an odd number: rank 0 gets videos 0, 2, 4 and rank 1 videos 1, 3), 2 x 3 views, and a
forward batch of one video's 6 views, so each forward pass sees the same views on either side and
the logits agree; the per-view outputs are gathered and sorted back into one process's order.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from effvid.engine import checkpoint as ckpt
from effvid.engine.evaluate import evaluate
from effvid.models import create_from_spec

TORCHRUN = Path(sys.executable).with_name("torchrun")
VIEWS = (2, 3)
SCRIPT = '''
import json, sys
from pathlib import Path

import effvid.data.dataset as dataset_module
from effvid.engine.distributed import init_distributed, teardown
from effvid.engine.evaluate import evaluate

stem, data, out = sys.argv[1:4]
info = init_distributed("cpu")
opened = []
real = dataset_module.open_video


def counting(path, *args, **kwargs):
    opened.append(str(path))
    return real(path, *args, **kwargs)


dataset_module.open_video = counting
result = evaluate(stem, data, views=(2, 3), batch_size=6, num_workers=0)
Path(out, f"rank{info.rank}.json").write_text(json.dumps({
    "metrics": result.to_dict(), "video_probs": result.video_probs.tolist(),
    "video_indices": result.video_indices.tolist(), "world_size": result.world_size, "opened": opened}))
teardown()
'''


def _without_rate(metrics: dict) -> str:
    return json.dumps({k: v for k, v in metrics.items() if k != "clips_per_second"}, sort_keys=True)


def test_two_gloo_ranks_report_the_single_process_metrics(synth_micro, tiny_spec, tmp_path):
    torch.manual_seed(7)
    stem = tmp_path / "tiny"
    ckpt.save_checkpoint(stem, model=create_from_spec(tiny_spec(16)), class_names=synth_micro.class_names)
    lines = synth_micro.annotations["val"].read_text().splitlines()[:5]
    data = tmp_path / "five.txt"
    data.write_text("".join(f"{synth_micro.root / line.split()[0]} {line.split()[1]}\n" for line in lines))
    videos = [str(synth_micro.root / line.split()[0]) for line in lines]
    script = tmp_path / "eval_script.py"
    script.write_text(SCRIPT)
    out = tmp_path / "out"
    out.mkdir()
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run([str(TORCHRUN), "--standalone", "--nproc_per_node", "2", str(script), str(stem), str(data),
                           str(out)], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]

    single = evaluate(stem, data, views=VIEWS, batch_size=6, num_workers=0)  # one thread (tests/conftest.py)
    assert single.world_size == 1 and all(rank["world_size"] == 2 for rank in ranks)
    for rank in ranks:
        assert _without_rate(rank["metrics"]) == _without_rate(single.to_dict())
        assert rank["video_indices"] == list(range(5))
        gap = (torch.tensor(rank["video_probs"], dtype=torch.float32) - single.video_probs).abs().max().item()
        assert gap <= 1e-6, gap
    assert ranks[0]["metrics"]["clips_per_second"] == ranks[1]["metrics"]["clips_per_second"] > 0  # the sum
    # whole videos per rank: each opened once, on one rank, round robin
    assert ranks[0]["opened"] == [videos[i] for i in (0, 2, 4)]
    assert ranks[1]["opened"] == [videos[i] for i in (1, 3)]

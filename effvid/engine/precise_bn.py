"""Precise BatchNorm statistics: recompute running means and variances over many training batches.

The exponential moving average BN keeps during training lags behind the final weights; this
replaces it by the plain average of per-batch statistics over ``num_batches`` batches with the
weights fixed (as PySlowFast's precise BN does). Under DDP each rank averages its own batches
and the result is averaged over ranks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from effvid.engine.distributed import all_reduce_mean


def update_bn_stats(model: nn.Module, batches: Iterable[Any], num_batches: int,
                    forward: Callable[[nn.Module, Any], Any]) -> int:
    """Recompute every BN's running statistics from up to ``num_batches`` of ``batches``; returns batches used.

    ``forward(model, batch)`` runs the model on one batch. Gradients are off and the model is
    left in the mode it was in.
    """
    bns = [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]
    if not bns or num_batches <= 0:
        return 0
    momenta = [bn.momentum for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative moving average: the mean over all batches seen
    was_training = model.training
    model.train()
    used = 0
    try:
        with torch.no_grad():
            for batch in batches:
                if used >= num_batches:
                    break
                forward(model, batch)
                used += 1
    finally:
        for bn, momentum in zip(bns, momenta):
            bn.momentum = momentum
        model.train(was_training)
    for bn in bns:
        bn.running_mean.copy_(all_reduce_mean(bn.running_mean))
        bn.running_var.copy_(all_reduce_mean(bn.running_var))
    return used

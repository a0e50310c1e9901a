"""Decision grouping: run each branch of a dynamic network once, on the rows that chose it.

A per-row decision vector (a sample's channel ratio, a frame's backbone) becomes, per distinct
value, the indices of the rows that chose it; the branch runs on ``index_select`` of those rows
and its result goes back with :func:`scatter_rows`. Rows that chose nothing are never gathered,
so their work is not executed.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor


def group_rows(decisions: Tensor) -> Iterator[tuple[int, Tensor]]:
    """``(value, row_indices)`` for every distinct value of the 1-D integer ``decisions``, ascending."""
    if decisions.dim() != 1:
        raise ValueError(f"decisions must be 1-D, got shape {tuple(decisions.shape)}")
    values, inverse = torch.unique(decisions, sorted=True, return_inverse=True)
    order = torch.argsort(inverse, stable=True)
    counts = torch.bincount(inverse, minlength=len(values)).tolist()
    for value, rows in zip(values.tolist(), torch.split(order, counts)):
        yield int(value), rows


def scatter_rows(out: Tensor, rows: Tensor, values: Tensor) -> Tensor:
    """``out`` with ``out[rows] = values`` (in place; returns ``out``)."""
    return out.index_copy_(0, rows, values)

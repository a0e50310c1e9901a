"""AR-Net's action space and the skip counter that turns decisions into per-frame actions.

Actions ``0 .. L-1`` pick a resolution (and its backbone), actions ``L .. L+M-1`` skip: skip
``F_i`` skips this frame and the next ``F_i - 1`` (so skip-1 skips only this one), and the
policy makes its next decision on the first frame after the skip (paper section 3.2). A skip
near the end of the video simply ends it. A frame covered by a skip carries the skip's action,
so usage rates and the efficiency loss see one action per frame.
"""

from __future__ import annotations

import torch
from torch import Tensor


class SkipCounter:
    """Per video of a batch, how many upcoming frames a running skip still covers.

    ``deciding()`` is true where the current frame gets a fresh decision; ``advance(actions)``
    takes the actions in force at this frame and moves to the next one.
    """

    def __init__(self, batch: int, skips: list[int], num_resolutions: int, device: torch.device) -> None:
        self.remaining = torch.zeros(batch, dtype=torch.long, device=device)
        self.span = torch.tensor([1] * num_resolutions + list(skips), dtype=torch.long, device=device)

    def deciding(self) -> Tensor:
        """``(B,)`` booleans: which videos decide at the current frame."""
        return self.remaining == 0

    def advance(self, actions: Tensor) -> None:
        """Start the skips decided now (``actions (B,)`` in force at this frame) and count down the others."""
        deciding = self.deciding()
        self.remaining = torch.where(deciding, self.span[actions] - 1, self.remaining - 1)


def frame_actions(decisions: list[int], num_frames: int, skips: list[int], num_resolutions: int) -> list[int]:
    """The action in force at each of ``num_frames`` frames when the policy's successive
    decisions are ``decisions`` (used in order, one per decision point; extra ones unused)."""
    counter = SkipCounter(1, skips, num_resolutions, torch.device("cpu"))
    out: list[int] = []
    pending = iter(decisions)
    current = 0
    for _ in range(num_frames):
        if bool(counter.deciding()):
            current = next(pending)
        out.append(current)
        counter.advance(torch.tensor([current]))
    return out

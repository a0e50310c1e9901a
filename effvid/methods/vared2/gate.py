"""The soft modulation gate (thesis Eq. 3.4): per convolution, how much of each axis to compute.

``[V_t, V_c] = max(tanh(FC2(tanh(BN(FC1(G(X))))) + beta), 0)``: ``G`` pools the input over
space and keeps time (``C_in x T`` features), ``FC1`` maps them to ``D_h``, ``FC2`` (with the bias
``beta``) to ``S_t + S_c`` outputs. ``V_t[j]`` weighs the choice "temporal stride times 2^j",
``V_c[i]`` the choice "first (1/2)^i of the filters"; both lie in ``[0, 1)``, and a zero weight
means the choice is not computed at inference. An axis switched off (search space 1) has no
gate output and a constant weight of 1.

Initial biases: ``full_bias`` (1) for each axis's "compute everything" choice, ``reduced_bias``
(0) for the others, so a model built from a trained base starts near it. Starting both at 0.5
(with ``revive``) sent R(2+1)D on SynthActions-small to chance within its first dynamic epoch:
every rebuilt channel then enters at the weight of the computed one, and the base's features
are lost.

At inference (eval mode, gradients off) on a channels-last input, the pooling's ``1 / (H W)``
and the BatchNorm are folded into ``FC1`` (:meth:`SoftModulationGate.folded_weights`): the gate
is then one sum over space and two matrix products, the same values to float rounding.

Gradient of the clamp (the thesis does not say; ``revive``): by default the plain clamp, whose
choices below 0 get no gradient. ``revive`` passes the gradient of ``tanh(a)`` through the
clamp (straight-through), so the classification loss still sees what a switched-off choice
would add (computed anyway in training, where the largest choice always runs) and can switch
it back on. Measured on SynthActions-small (R(2+1)D, 2 epochs of the efficiency loss at lr
2e-4 from the same dynamic model, gates at 50x): revived, 63.8% video top-1 at 0.212 GMACs per
view; plain, 80.8% at 0.229. Reviving let the efficiency loss switch off choices the network
still needed, faster than cross-entropy could pull them back, so it is off by default.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from effvid.methods.common.gumbel import straight_through
from effvid.methods.vared2.cheap import is_channels_last
from effvid.models.fold import batchnorm_affine, folding, kept, tensors_key


@dataclass
class GateOutput:
    """One gate forward: weights ``v_t (B, S_t)`` and ``v_c (B, S_c)`` in ``[0, 1)`` and the
    pre-activations ``a_t``, ``a_c`` they come from (``None`` for an axis switched off, whose
    weight is a constant 1)."""

    v_t: Tensor
    v_c: Tensor
    a_t: Tensor | None
    a_c: Tensor | None


class SoftModulationGate(nn.Module):
    """Eq. 3.4 for a convolution whose input has ``in_channels`` x ``in_frames`` (module docstring)."""

    def __init__(self, *, in_channels: int, in_frames: int, hidden: int, temporal_choices: int,
                 channel_choices: int, full_bias: float = 1.0, reduced_bias: float = 0.0,
                 revive: bool = False) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.in_frames = in_frames
        self.temporal_choices = temporal_choices
        self.channel_choices = channel_choices
        self.n_t = temporal_choices if temporal_choices > 1 else 0
        self.n_c = channel_choices if channel_choices > 1 else 0
        self.revive = revive
        self.fc1 = nn.Linear(in_channels * in_frames, hidden, bias=False)
        self.bn = nn.BatchNorm1d(hidden)
        self.fc2 = nn.Linear(hidden, self.n_t + self.n_c)
        with torch.no_grad():
            bias = torch.full((self.n_t + self.n_c,), float(reduced_bias))
            if self.n_t:
                bias[0] = full_bias
            if self.n_c:
                bias[self.n_t] = full_bias
            self.fc2.bias.copy_(bias)

    @property
    def macs(self) -> int:
        """MACs of one clip's gate."""
        return self.fc1.in_features * self.fc1.out_features + self.fc2.in_features * self.fc2.out_features

    def forward(self, x: Tensor) -> GateOutput:
        """The weights for the clips of ``x (B, C_in, T, H, W)``; ``T`` must be ``in_frames``."""
        if x.shape[1] != self.in_channels or x.shape[2] != self.in_frames:
            raise ValueError(f"the gate was built for {self.in_channels} channels x {self.in_frames} frames, "
                             f"got an input of shape {tuple(x.shape)} (VA-RED2 gates fix the clip length)")
        if folding(self) and is_channels_last(x):
            a = self._folded_forward(x)
        else:
            a = self.fc2(torch.tanh(self.bn(self.fc1(spatial_mean(x).flatten(1)))))
        t = torch.tanh(a)
        v = straight_through(t.clamp_min(0.0), t) if self.revive and torch.is_grad_enabled() else t.clamp_min(0.0)
        ones = v.new_ones((x.shape[0], 1))
        a_t, a_c = (a[:, : self.n_t] if self.n_t else None), (a[:, self.n_t :] if self.n_c else None)
        v_t = v[:, : self.n_t] if self.n_t else ones
        v_c = v[:, self.n_t :] if self.n_c else ones
        return GateOutput(v_t=v_t, v_c=v_c, a_t=a_t, a_c=a_c)

    def _folded_forward(self, x: Tensor) -> Tensor:
        """``fc2(tanh(bn(fc1(G(x)))))`` at inference for a channels-last ``x``: the spatial mean's
        ``1 / (H W)`` and the BatchNorm are folded into ``fc1``, whose columns are reordered to the
        ``(T, C)`` order of the input's storage, so the pooling is one sum over the contiguous
        ``H W`` positions and the gate two matrix products (:meth:`folded_weights`)."""
        batch, channels, frames, height, width = x.shape
        w1, b1, w2 = self.folded_weights(height * width)
        pooled = x.permute(0, 2, 3, 4, 1).reshape(batch, frames, height * width, channels).sum(2)
        hidden = torch.addmm(b1, pooled.view(batch, frames * channels), w1).tanh_()
        return torch.addmm(self.fc2.bias, hidden, w2)

    def folded_weights(self, positions: int) -> tuple[Tensor, Tensor, Tensor]:
        """``(W1, b1, W2)`` of :meth:`_folded_forward` for inputs of ``positions`` (``H W``) pixels
        per frame, both weights transposed for ``addmm``; kept until one of the tensors they come
        from changes."""
        bn = self.bn

        def fold() -> tuple[Tensor, Tensor, Tensor]:
            scale, shift = batchnorm_affine(bn)
            hidden = self.fc1.out_features
            w1 = self.fc1.weight.view(hidden, self.in_channels, self.in_frames).transpose(1, 2)
            w1 = (w1.reshape(hidden, -1) * (scale / positions).view(-1, 1)).t().contiguous()
            return w1, shift, self.fc2.weight.t().contiguous()

        key = (positions, *tensors_key(self.fc1.weight, bn.weight, bn.bias, bn.running_mean, bn.running_var,
                                       self.fc2.weight))
        return kept(self.__dict__, "_folded_cache", key, fold)


def spatial_mean(x: Tensor) -> Tensor:
    """``x (B, C, T, H, W)`` averaged over space, ``(B, C, T)``. A channels-last input is reduced
    in its own layout (over the middle axes of its ``(B, T, H, W, C)`` storage), which on CPU
    takes a fifth of the time of reducing its strided ``H, W`` axes."""
    if is_channels_last(x):
        return x.permute(0, 2, 3, 4, 1).mean(dim=(2, 3)).transpose(1, 2)
    return x.mean(dim=(3, 4))

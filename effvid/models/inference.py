"""Inference variants of a model and :func:`prepare_for_inference`, which picks the fastest.

Variants (``benchmarks/model_speed.py`` measures all three on every registered model):

* ``"eager"``: the model as built, in eval mode;
* ``"channels_last"``: convolution weights in channels-last memory format (``channels_last``
  for 4D weights of 2D frame models, ``channels_last_3d`` for 5D weights); inputs need no
  change, the first convolution carries the format through the network; on the CPU every
  3D convolution runs in oneDNN (:mod:`effvid.models.onednn`: PyTorch's size rule sends the
  small ones to a kernel twice as slow); every BatchNorm that reads only a convolution's
  output is folded into it (:mod:`effvid.models.fold`; found by one forward at the spec's
  input, an inference view that keeps the parameters and state-dict keys);
* ``"compile"``: ``torch.compile`` of the model (slow to build: minutes for a large model on
  a small CPU, so it never is the default).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import platform
from typing import Literal

import torch
from torch import nn

from effvid.errors import ConfigError
from effvid.models.fold import fold_batchnorms
from effvid.models.onednn import route_conv3d

Variant = Literal["eager", "channels_last", "compile"]
VARIANTS: tuple[str, ...] = ("eager", "channels_last", "compile")

DEFAULT_VARIANT: Variant = "channels_last"
"""Fastest correct variant without a build cost, measured on this project's 2-core CPU
(benchmarks/model_speed.py): batch-8 throughput above eager on 8 of the first 9 models
(R(2+1)D-18 0.38 vs 0.26 clips/s), outputs equal to eager. torch.compile was faster still on
R(2+1)D-18 and X3D-XS but takes one to two minutes to build per input shape, so it is opt-in."""


def to_channels_last(model: nn.Module) -> nn.Module:
    """``model`` with its 4D tensors in ``channels_last`` and 5D ones in ``channels_last_3d`` (in place)."""
    formats = {4: torch.channels_last, 5: torch.channels_last_3d}
    for tensor in (*model.parameters(), *model.buffers()):
        if tensor.dim() in formats:
            tensor.data = tensor.data.contiguous(memory_format=formats[tensor.dim()])
    return model


_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # glibc's mallopt parameters (malloc.h)


@functools.cache
def keep_freed_memory() -> bool:
    """Make glibc's malloc serve every allocation from its heap and keep what is freed there
    (``mallopt``: no mmap allocations, trimming only above 2 GiB), for the rest of the process;
    returns whether it applies (``False`` off glibc). Idempotent.

    By default glibc gives each allocation above its mmap threshold (at most 32 MiB) fresh pages
    and returns them on free, so a network whose activations are that large pays a page fault
    per 4 KiB of every such output, every forward. Measured on this project's 2-core CPU, one
    thread: a BatchNorm over a 37.7 MB output took 17.1 ms instead of 6.3, and R(2+1)D-18 at
    16x128x128 ran a batch-1 clip in 829 ms instead of 767 (its VA-RED2 model: 674 and 606).
    The memory a process has freed is then not handed back to the system while it runs."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    return bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))


def prepare_for_inference(model: nn.Module, *, variant: Variant = DEFAULT_VARIANT) -> nn.Module:
    """``model`` in eval mode, without gradients on its parameters, as the chosen ``variant``.

    Outputs match the eager model's within floating-point tolerance. ``"eager"`` and
    ``"channels_last"`` return the same module (changed in place); ``"compile"`` returns the
    compiled wrapper, which shares its parameters with ``model``. Every variant but ``"eager"``
    also calls :func:`keep_freed_memory` (a process-wide setting of the allocator).
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown inference variant {variant!r}; choose from {', '.join(VARIANTS)}")
    model.eval().requires_grad_(False)
    if variant != "eager":
        keep_freed_memory()
    if variant == "channels_last":
        route_conv3d(to_channels_last(model))
        fold_batchnorms(model)
        return model
    if variant == "compile":
        return torch.compile(model)
    return model


def resolve_device(device: str | torch.device, module: nn.Module | None = None) -> torch.device:
    """The device a model runs on: ``"auto"`` is ``module``'s own device (its parameters'), else
    CUDA when available, else the CPU; ``"cuda"`` (or ``"cuda:N"``) without CUDA, or a name
    that is not a device, is a :class:`ConfigError`."""
    if isinstance(device, str) and device == "auto":
        if module is not None:
            param = next(module.parameters(), None)
            return param.device if param is not None else torch.device("cpu")
        return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ConfigError(f"device {device!r}: expected 'auto', 'cpu', 'cuda' or 'cuda:N'") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            build = "this torch is built without CUDA" if torch.version.cuda is None else "no CUDA device is visible"
            raise ConfigError(f"device {str(device)!r} was asked for but CUDA is not available ({build}, "
                              f"torch {torch.__version__}); use cpu")
        if dev.index is None:
            dev = torch.device("cuda", torch.cuda.current_device())
        elif dev.index >= torch.cuda.device_count():
            raise ConfigError(f"device {str(device)!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return dev

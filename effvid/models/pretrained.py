"""Load pretrained weights from our own checkpoints and from torchvision, PyTorchVideo and PySlowFast.

Reading never unpickles arbitrary objects: ``.safetensors`` files are read with safetensors,
anything else with ``torch.load(weights_only=True)``. Containers are unwrapped (``model_state``,
``state_dict``, ``model``) and wrapper prefixes stripped (``module.`` from DDP, ``model.`` from
PySlowFast's PyTorchVideo wrapper). Our models use torchvision's and PyTorchVideo's own module
names, so those layouts (and ``effvid``) map by identity; PySlowFast's names are translated by
the small tables below. An effvid checkpoint (``<stem>.safetensors`` + ``<stem>.json``) can be
named by its stem or any of its files and is checked against its sidecar's checksum.

Loading is strict: every parameter and buffer of the model is filled and every checkpoint
tensor is used, or :class:`CheckpointError` lists the names that did not match. The one
tolerance: a BatchNorm ``num_batches_tracked`` counter absent from the checkpoint keeps the
model's value (old checkpoints lack it and it does not affect outputs).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

import torch
from torch import nn

from effvid.errors import CheckpointError, ConfigError, EffvidError
from effvid.io import CHECKPOINT_FORMAT, checkpoint_files, checkpoint_stem, read_json, read_safetensors
from effvid.models.base import ModelBase
from effvid.models.slowfast import SlowFast
from effvid.models.x3d import X3D

Source = Literal["effvid", "torchvision", "pytorchvideo", "pyslowfast"]
SOURCES: tuple[str, ...] = get_args(Source)
CONTAINER_KEYS = ("model_state", "state_dict", "model")
WRAPPER_PREFIXES = ("module.", "model.")
MAX_LISTED = 25

# PySlowFast -> PyTorchVideo module paths. A rule is (regex on PySlowFast's module path,
# template of ours). Group ``s`` is PySlowFast's stage number (s1 = stem, s2..s5 = res2..res5),
# which is PyTorchVideo's block index plus one; group ``leaf`` is a residual block's inner
# module, translated by the family's leaf table.
_RES_LEAVES = {
    "branch1": "branch1_conv",
    "branch1_bn": "branch1_norm",
    "branch2.a": "branch2.conv_a",
    "branch2.a_bn": "branch2.norm_a",
    "branch2.b": "branch2.conv_b",
    "branch2.b_bn": "branch2.norm_b",
    "branch2.c": "branch2.conv_c",
    "branch2.c_bn": "branch2.norm_c",
}
_X3D_RES_LEAVES = {
    **_RES_LEAVES,
    "branch2.b_bn": "branch2.norm_b.0",
    "branch2.se.fc1": "branch2.norm_b.1.block.0",
    "branch2.se.fc2": "branch2.norm_b.1.block.2",
}
PYSLOWFAST_SLOWFAST = (
    (r"s1\.pathway(?P<p>\d)_stem\.conv", "blocks.0.multipathway_blocks.{p}.conv"),
    (r"s1\.pathway(?P<p>\d)_stem\.bn", "blocks.0.multipathway_blocks.{p}.norm"),
    (r"s(?P<s>\d)_fuse\.conv_f2s", "blocks.{s}.multipathway_fusion.conv_fast_to_slow"),
    (r"s(?P<s>\d)_fuse\.bn", "blocks.{s}.multipathway_fusion.norm"),
    (
        r"s(?P<s>\d)\.pathway(?P<p>\d)_res(?P<k>\d+)\.(?P<leaf>.+)",
        "blocks.{s}.multipathway_blocks.{p}.res_blocks.{k}.{leaf}",
    ),
    (r"head\.projection", "blocks.6.proj"),
)
# X3D's stem: PySlowFast's ``conv_xy`` is the spatial conv, PyTorchVideo's ``conv_t``; its
# temporal depthwise ``conv`` is PyTorchVideo's ``conv_xy``.
PYSLOWFAST_X3D = (
    (r"s1\.pathway0_stem\.conv_xy", "blocks.0.conv.conv_t"),
    (r"s1\.pathway0_stem\.conv", "blocks.0.conv.conv_xy"),
    (r"s1\.pathway0_stem\.bn", "blocks.0.norm"),
    (r"s(?P<s>\d)\.pathway0_res(?P<k>\d+)\.(?P<leaf>.+)", "blocks.{s}.res_blocks.{k}.{leaf}"),
    (r"head\.conv_5", "blocks.5.pool.pre_conv"),
    (r"head\.conv_5_bn", "blocks.5.pool.pre_norm"),
    (r"head\.lin_5", "blocks.5.pool.post_conv"),
    (r"head\.projection", "blocks.5.proj"),
)
_PYSLOWFAST_TABLES = ((SlowFast, PYSLOWFAST_SLOWFAST, _RES_LEAVES), (X3D, PYSLOWFAST_X3D, _X3D_RES_LEAVES))


@dataclass(frozen=True)
class LoadReport:
    """What :func:`load_pretrained` did: ``loaded`` checkpoint tensors copied into the model, and
    the model tensors ``kept`` as they were (the replaced classifier, absent BN counters)."""

    path: str
    source: str
    loaded: int
    head_replaced: bool
    kept: tuple[str, ...]


def load_pretrained(
    model: ModelBase, path: str | Path, source: Source = "effvid", *, replace_head: bool = False
) -> LoadReport:
    """Fill ``model`` from the checkpoint at ``path`` written in ``source``'s layout.

    Every parameter and buffer is filled and every checkpoint tensor used, or
    :class:`CheckpointError` names the missing, unexpected and mis-shaped tensors. A classifier
    with another class count is an error unless ``replace_head`` is true; then the checkpoint's
    classifier is ignored and the model keeps its freshly initialised one.
    """
    if source not in SOURCES:
        raise ConfigError(f"unknown checkpoint source {source!r}; choose one of {', '.join(SOURCES)}")
    path = Path(path)
    foreign = _read(path, source)
    names = _our_names(foreign, model, source, path)
    own = model.state_dict()
    classifier = _classifier_keys(model)
    head = classifier if replace_head else set()
    tensors: dict[str, torch.Tensor] = {}
    unexpected, duplicated = [], []
    for name, tensor in foreign.items():
        key = names[name]
        if key in head:
            continue
        if key not in own:
            unexpected.append(name if key == name else f"{name} (as {key})")
        elif key in tensors:
            duplicated.append(name)
        else:
            tensors[key] = tensor
    kept = sorted(head | {k for k in own if k.endswith("num_batches_tracked") and k not in tensors})
    missing = [k for k in own if k not in tensors and k not in kept]
    misfits = [k for k, t in tensors.items() if t.shape != own[k].shape]
    mismatched = [f"{k} (checkpoint {tuple(tensors[k].shape)}, model {tuple(own[k].shape)})" for k in misfits]
    problems = [
        (label, items)
        for label, items in (
            ("missing", missing),
            ("unexpected", unexpected),
            ("mapped twice", duplicated),
            ("shape mismatch", mismatched),
        )
        if items
    ]
    if problems:
        details = "; ".join(f"{label} ({len(items)}): {_listing(items)}" for label, items in problems)
        head_misfit = any(k in classifier for k in misfits)
        hint = " (a classifier for another class count loads with replace_head=True)" if head_misfit else ""
        raise CheckpointError(f"{path}: {source} checkpoint does not fit {_model_name(model)}: {details}{hint}")
    tensors.update({k: own[k] for k in kept})
    model.load_state_dict(tensors, strict=True)
    return LoadReport(str(path), source, len(tensors) - len(kept), replace_head, tuple(kept))


def _read(path: Path, source: str) -> dict[str, torch.Tensor]:
    """The tensors of the checkpoint at ``path``: for ``source="effvid"``, a checkpoint named by its
    stem or any of its files whose sidecar exists is read and checked against the sidecar's
    SHA-256; any other file is read by :func:`read_state_dict`."""
    if source == "effvid":
        weights, _, sidecar = checkpoint_files(checkpoint_stem(path))
        if sidecar.is_file():
            return _read_effvid(weights, sidecar)
    return read_state_dict(path)


def _read_effvid(weights: Path, sidecar: Path) -> dict[str, torch.Tensor]:
    try:
        meta = read_json(sidecar, what="checkpoint sidecar")
    except EffvidError as exc:
        raise CheckpointError(str(exc)) from None
    if not isinstance(meta, dict) or meta.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{sidecar}: not an effvid checkpoint sidecar (no format marker {CHECKPOINT_FORMAT!r})")
    return read_safetensors(weights, sha256=meta.get("weights_sha256"))


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The flat ``name -> tensor`` dict stored at ``path``, containers and wrapper prefixes removed.

    ``.safetensors`` files are read with safetensors, anything else with
    ``torch.load(weights_only=True)``; a missing, unreadable or non-checkpoint file is a
    :class:`CheckpointError` naming it.
    """
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if path.suffix == ".safetensors":
        obj: object = read_safetensors(path)
    else:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # corrupt, truncated, or holding objects weights_only refuses
            text = str(exc).strip()
            reason = text.splitlines()[0] if text else type(exc).__name__
            raise CheckpointError(f"{path}: not a readable checkpoint ({type(exc).__name__}: {reason})") from None
    while isinstance(obj, dict) and not _is_flat(obj):
        inner = next((obj[k] for k in CONTAINER_KEYS if isinstance(obj.get(k), dict)), None)
        if inner is None:
            break
        obj = inner
    if not isinstance(obj, dict) or not obj or not _is_flat(obj):
        raise CheckpointError(
            f"{path}: not a model checkpoint (expected a name -> tensor mapping, "
            f"possibly under one of {', '.join(CONTAINER_KEYS)})"
        )
    stripped = True
    while stripped:
        stripped = False
        for prefix in WRAPPER_PREFIXES:
            if all(k.startswith(prefix) for k in obj):
                obj = {k[len(prefix) :]: v for k, v in obj.items()}
                stripped = True
    return obj


def _our_names(foreign: dict[str, torch.Tensor], model: nn.Module, source: str, path: Path) -> dict[str, str]:
    """Checkpoint name -> our state-dict name for ``model``; names no rule matches stay as they are."""
    if source != "pyslowfast":
        return {name: name for name in foreign}
    for cls, rules, leaves in _PYSLOWFAST_TABLES:
        if isinstance(model, cls):
            return {name: _pyslowfast_name(name, rules, leaves) for name in foreign}
    raise CheckpointError(f"{path}: no PySlowFast key mapping for {type(model).__name__} models")


def _pyslowfast_name(name: str, rules: tuple[tuple[str, str], ...], leaves: dict[str, str]) -> str:
    module, _, tensor = name.rpartition(".")
    for pattern, template in rules:
        match = re.fullmatch(pattern, module)
        if match is None:
            continue
        groups = match.groupdict()
        if "s" in groups:
            groups["s"] = str(int(groups["s"]) - 1)
        if "leaf" in groups:
            if groups["leaf"] not in leaves:
                return name
            groups["leaf"] = leaves[groups["leaf"]]
        return f"{template.format(**groups)}.{tensor}"
    return name


def _is_flat(obj: dict) -> bool:
    return all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


def _classifier_keys(model: ModelBase) -> set[str]:
    """State-dict names of ``model.get_classifier()``'s parameters."""
    return {f"{model.classifier_name}.{name}" for name, _ in model.get_classifier().named_parameters()}


def _model_name(model: nn.Module) -> str:
    spec = getattr(model, "spec", None)
    return spec.name if spec is not None else type(model).__name__


def _listing(items: list[str]) -> str:
    shown = ", ".join(items[:MAX_LISTED])
    return shown if len(items) <= MAX_LISTED else f"{shown}, ... and {len(items) - MAX_LISTED} more"

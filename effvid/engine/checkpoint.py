"""Checkpoints: safetensors weights, a JSON sidecar, and a ``weights_only`` training state.

A checkpoint is three files sharing a stem::

    <stem>.safetensors   model weights (safetensors)
    <stem>.state.pt      optional training state (optimizer, scheduler, scaler, RNG, epoch),
                         torch.save'd, read back with torch.load(weights_only=True)
    <stem>.json          sidecar: {"format": "effvid-checkpoint", "version": 1, "spec": ArchSpec,
                         "class_names", "transforms", "metrics", "epoch", "git_revision",
                         "created", "weights_sha256", "has_state", "extra"}

Every file is written atomically (temp file in the same folder, fsync, ``os.replace``) and
the sidecar last, after removing any older sidecar of the same stem: a checkpoint is complete
exactly when its sidecar exists, and a complete checkpoint is always consistent (the sidecar
records the weights' SHA-256). Epoch checkpoints live in ``<run_dir>/checkpoints/epoch_NNNN``
(:func:`epoch_stem`), so a crash mid-save leaves the previous epoch intact.

Everything read back is checked before it is used, and anything wrong is a
:class:`~effvid.errors.CheckpointError` naming the file: :func:`read_sidecar` checks the
sidecar's fields (``spec`` an ArchSpec object, ``class_names`` a list of strings with one name
per class, or empty for index names), :func:`verify_weights` the weights' checksum without
loading them, :func:`load_training_state` the state's structure and epoch, and
:func:`load_optimizer_state` that a saved optimizer state fits the configured optimizer.
"""

from __future__ import annotations

import datetime as _dt
import functools
import hashlib
import json
import random
import re
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from effvid.engine.distributed import unwrap_model
from effvid.errors import CheckpointError, ConfigError
from effvid.io import (
    CHECKPOINT_FORMAT,
    atomic_write,
    checkpoint_files,
    checkpoint_stem,
    read_safetensors,
    safetensors_bytes,
    sha256_hex,
)
from effvid.models.registry import create_from_spec
from effvid.spec import ArchSpec

STATE_FORMAT = "effvid-training-state"
VERSION = 1
_EPOCH_RE = re.compile(r"^epoch_(\d+)\.json$")
_EPOCH_STEM_RE = re.compile(r"^epoch_(\d+)$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


def epoch_stem(run_dir: str | Path, epoch: int) -> Path:
    """The stem of the checkpoint after ``epoch`` in ``run_dir``: ``checkpoints/epoch_NNNN``."""
    return Path(run_dir) / "checkpoints" / f"epoch_{epoch:04d}"


def best_stem(run_dir: str | Path) -> Path:
    """The stem of the best-validation checkpoint in ``run_dir``."""
    return Path(run_dir) / "checkpoints" / "best"


# ---------------------------------------------------------------------------------------------
# RNG and training state


def rng_state() -> dict[str, Any]:
    """The Python, NumPy, torch (and CUDA) RNG states, as tensors and numbers only."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": {"version": version, "internal": torch.tensor(internal, dtype=torch.int64), "gauss": gauss},
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore the states captured by :func:`rng_state`."""
    py = state["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["internal"].tolist()), py["gauss"]))
    npy = state["numpy"]
    np.random.set_state((npy["kind"], npy["keys"].numpy().astype(np.uint32), npy["pos"], npy["has_gauss"],
                         npy["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def training_state(*, epoch: int, optimizer: torch.optim.Optimizer | None = None, scheduler: Any = None,
                   scaler: Any = None, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A training state for :func:`save_checkpoint`: state dicts, RNG states, ``epoch`` (completed epochs).

    ``extra`` may hold anything ``torch.load(weights_only=True)`` accepts (tensors, numbers,
    strings, lists, dicts), e.g. the global step or feature-connector state dicts.
    """
    return {
        "format": STATE_FORMAT,
        "version": VERSION,
        "epoch": int(epoch),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "scaler": scaler.state_dict() if scaler is not None else None,
        "rng": rng_state(),
        "extra": dict(extra or {}),
    }


# ---------------------------------------------------------------------------------------------
# Save


@functools.lru_cache(maxsize=1)
def git_revision() -> str | None:
    """``git rev-parse HEAD`` of the effvid source tree, or ``None`` outside a git checkout."""
    try:
        result = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent,
                                capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None if result.returncode == 0 else None


def _weights(model: nn.Module | Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    state = unwrap_model(model).state_dict() if isinstance(model, nn.Module) else model
    tensors: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            continue
        tensor = value.detach().cpu().contiguous()
        if tensor.data_ptr() in seen and tensor.numel() > 0:
            tensor = tensor.clone()  # safetensors refuses tensors sharing storage
        seen.add(tensor.data_ptr())
        tensors[key] = tensor
    return tensors


def save_checkpoint(stem: str | Path, *, model: nn.Module | Mapping[str, torch.Tensor], spec: ArchSpec | None = None,
                    class_names: Sequence[str] = (), transforms: Mapping[str, Any] | None = None,
                    metrics: Mapping[str, Any] | None = None, epoch: int | None = None,
                    extra: Mapping[str, Any] | None = None,
                    state: Mapping[str, Any] | None = None) -> Path:
    """Write a checkpoint at ``stem`` atomically; returns the sidecar path (present = complete).

    ``spec`` defaults to ``model.spec``; ``state`` is a :func:`training_state` dict (omit it for
    a weights-only checkpoint such as ``best``). ``transforms``, ``metrics`` and ``extra``
    must be JSON-serialisable.
    """
    stem = checkpoint_stem(stem)
    weights_path, state_path, sidecar_path = checkpoint_files(stem)
    if spec is None and isinstance(model, nn.Module):
        spec = getattr(unwrap_model(model), "spec", None)
    sidecar = {
        "format": CHECKPOINT_FORMAT,
        "version": VERSION,
        "spec": spec.to_dict() if spec is not None else None,
        "class_names": list(class_names),
        "transforms": dict(transforms or {}),
        "metrics": dict(metrics or {}),
        "epoch": epoch,
        "git_revision": git_revision(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "has_state": state is not None,
        "extra": dict(extra or {}),
    }
    json.dumps(sidecar)  # a non-serialisable field fails here, before any file is touched
    sidecar_path.unlink(missing_ok=True)
    data = safetensors_bytes(_weights(model), metadata={"format": CHECKPOINT_FORMAT})
    atomic_write(weights_path, lambda f: f.write(data))
    if state is not None:
        atomic_write(state_path, lambda f: torch.save(dict(state), f))
    else:
        state_path.unlink(missing_ok=True)
    sidecar["weights_sha256"] = sha256_hex(data)
    text = json.dumps(sidecar, indent=2)
    atomic_write(sidecar_path, lambda f: f.write(text.encode()))
    return sidecar_path


def remove_checkpoint(stem: str | Path) -> None:
    """Delete a checkpoint, sidecar first so it is never seen half-deleted as complete."""
    for path in reversed(checkpoint_files(checkpoint_stem(stem))):
        path.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------
# Load


def read_sidecar(path: str | Path) -> dict[str, Any]:
    """The sidecar of the checkpoint at ``path``; a missing, foreign, unreadable or inconsistent
    one is a :class:`CheckpointError` naming it.

    Checked: the format marker and version; ``spec`` is ``null`` or a valid ArchSpec object;
    ``class_names`` is a list of strings, either empty (classes are then named by index) or
    one name per class of the spec; a shorter or longer list is refused, since the names could
    not be matched to the model's outputs; ``weights_sha256`` is a hex digest when present.
    """
    stem = checkpoint_stem(path)
    weights_path, _, sidecar_path = checkpoint_files(stem)
    if not sidecar_path.exists():
        if weights_path.exists():
            raise CheckpointError(f"{weights_path}: not a complete effvid checkpoint (its sidecar "
                                  f"{sidecar_path.name} is missing: a foreign file or an interrupted save)")
        given = Path(path)
        if given.exists() and given.is_file():
            raise CheckpointError(f"{given}: not an effvid checkpoint (expected <stem>.safetensors with <stem>.json)")
        raise CheckpointError(f"{sidecar_path}: checkpoint not found (neither {sidecar_path.name} nor "
                              f"{weights_path.name} exists)")
    try:
        meta = json.loads(sidecar_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{sidecar_path}: unreadable checkpoint sidecar ({type(exc).__name__})") from None
    if not isinstance(meta, dict) or meta.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{sidecar_path}: not an effvid checkpoint sidecar (no format marker {CHECKPOINT_FORMAT!r})")
    if meta.get("version") != VERSION:
        raise CheckpointError(f"{sidecar_path}: checkpoint format version {meta.get('version')!r} "
                              f"is not supported (this effvid reads version {VERSION})")
    _check_sidecar(meta, sidecar_path)
    return meta


def _check_sidecar(meta: dict[str, Any], sidecar_path: Path) -> None:
    """Refuse sidecar fields that would fail later, deep inside a command (see :func:`read_sidecar`)."""
    spec = meta.get("spec")
    num_classes = None
    if spec is not None:
        if not isinstance(spec, dict):
            raise CheckpointError(f"{sidecar_path}: 'spec' must be an object (an ArchSpec), "
                                  f"got {type(spec).__name__} {_short(spec)}")
        try:
            num_classes = ArchSpec.from_dict(spec).num_classes
        except (ConfigError, TypeError, ValueError) as exc:
            raise CheckpointError(f"{sidecar_path}: 'spec' is not a valid ArchSpec: {exc}") from None
    if meta.get("class_names") is None:
        meta["class_names"] = []
    names = meta["class_names"]
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        raise CheckpointError(f"{sidecar_path}: 'class_names' must be a list of strings, got {_short(names)}")
    if names and num_classes is not None and len(names) != num_classes:
        raise CheckpointError(f"{sidecar_path}: 'class_names' lists {len(names)} names but the spec has "
                              f"num_classes {num_classes}; give one name per class (or [] to name classes by index)")
    digest = meta.get("weights_sha256")
    if digest is not None and not (isinstance(digest, str) and _SHA256_RE.match(digest)):
        raise CheckpointError(f"{sidecar_path}: 'weights_sha256' must be a SHA-256 hex digest, got {_short(digest)}")


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def sidecar_spec(meta: Mapping[str, Any], path: str | Path) -> ArchSpec:
    """The ArchSpec of a sidecar read by :func:`read_sidecar` (from ``path``); none is a :class:`CheckpointError`."""
    if meta.get("spec") is None:
        raise CheckpointError(f"{checkpoint_stem(path)}.json: the checkpoint has no ArchSpec to build a model from")
    return ArchSpec.from_dict(meta["spec"])  # read_sidecar has checked it


def weights_sha256(checkpoint: str | Path) -> str:
    """The SHA-256 (hex) of the ``.safetensors`` file of ``checkpoint`` (its stem or any of its
    files), read in blocks; a missing or unreadable file is a :class:`CheckpointError`."""
    path = checkpoint_files(checkpoint_stem(checkpoint))[0]
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    except OSError:
        raise CheckpointError(f"{path}: weights file missing or unreadable") from None
    return digest.hexdigest()


def verify_weights(path: str | Path) -> dict[str, Any]:
    """The sidecar of the checkpoint at ``path``, after checking its weights file against the
    sidecar's SHA-256 without loading the tensors (a missing, truncated or altered file is a
    :class:`CheckpointError` naming it). For commands that need only the sidecar, such as
    ``effvid flops``, so that a broken checkpoint is refused there too."""
    meta = read_sidecar(path)
    weights_path = checkpoint_files(checkpoint_stem(path))[0]
    expected = meta.get("weights_sha256")
    if expected is not None and weights_sha256(path) != expected:
        raise CheckpointError(f"{weights_path}: corrupt checkpoint (the weights do not match the sidecar's "
                              "checksum: truncated or altered)")
    return meta


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu"
                    ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """``(state_dict, meta)`` of the checkpoint at ``path`` (its stem or any of its files).

    The weights are checked against the SHA-256 in the sidecar; anything missing, foreign or
    corrupt raises :class:`CheckpointError` naming the file.
    """
    meta = read_sidecar(path)
    tensors = read_safetensors(checkpoint_files(checkpoint_stem(path))[0], sha256=meta.get("weights_sha256"))
    if str(map_location) != "cpu":
        tensors = {k: v.to(map_location) for k, v in tensors.items()}
    return tensors, meta


def load_training_state(path: str | Path, map_location: str | torch.device = "cpu", *,
                        require_optimizer: bool = True) -> dict[str, Any]:
    """The training state saved with the checkpoint at ``path``, read with ``weights_only=True``.

    The state is checked before it is returned: format marker and version, ``epoch`` a
    non-negative int equal to the checkpoint's (the ``NNNN`` of an ``epoch_NNNN`` stem, and the
    sidecar's ``epoch``), ``optimizer`` a state dict with ``state`` and ``param_groups`` (unless
    ``require_optimizer`` is false, when it may be ``null``), ``scheduler``, ``scaler``, ``rng``
    and ``extra`` mappings or ``null``. Anything else is a :class:`CheckpointError` naming the
    file. Load the optimizer part with :func:`load_optimizer_state`.
    """
    meta = read_sidecar(path)
    stem = checkpoint_stem(path)
    state_path = checkpoint_files(stem)[1]
    if not state_path.exists():
        raise CheckpointError(f"{state_path}: this checkpoint has no training state to resume from")
    try:
        state = torch.load(state_path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types for truncated or foreign pickles
        raise CheckpointError(f"{state_path}: corrupt or foreign training state ({type(exc).__name__})") from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise CheckpointError(f"{state_path}: not an effvid training state")
    if state.get("version") != VERSION:
        raise CheckpointError(f"{state_path}: training state version {state.get('version')!r} is not supported "
                              f"(this effvid reads version {VERSION})")
    epoch = state.get("epoch")
    if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 0:
        raise CheckpointError(f"{state_path}: the training state's 'epoch' must be a non-negative integer, "
                              f"got {_short(epoch)}")
    named = _EPOCH_STEM_RE.match(stem.name)
    if named and int(named.group(1)) != epoch:
        raise CheckpointError(f"{state_path}: the training state says epoch {epoch} but the checkpoint is "
                              f"{stem.name} (epoch {int(named.group(1))}); it belongs to another checkpoint")
    recorded = meta.get("epoch")
    if isinstance(recorded, int) and not isinstance(recorded, bool) and recorded != epoch:
        raise CheckpointError(f"{state_path}: the training state says epoch {epoch} but its sidecar "
                              f"{stem.name}.json says epoch {recorded}")
    optimizer = state.get("optimizer")
    if optimizer is not None or require_optimizer:
        if not (isinstance(optimizer, dict) and isinstance(optimizer.get("state"), dict)
                and isinstance(optimizer.get("param_groups"), list)
                and all(isinstance(group, dict) for group in optimizer["param_groups"])):
            raise CheckpointError(f"{state_path}: the training state's 'optimizer' must be an optimizer state dict "
                                  f"with 'state' and 'param_groups', got {_short(optimizer)}")
    for key in ("scheduler", "scaler", "rng", "extra"):
        if state.get(key) is not None and not isinstance(state[key], dict):
            raise CheckpointError(f"{state_path}: the training state's {key!r} must be a mapping or null, "
                                  f"got {type(state[key]).__name__}")
    return state


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: Mapping[str, Any], path: str | Path) -> None:
    """Load ``state["optimizer"]`` (from :func:`load_training_state` of ``path``) into ``optimizer``.

    A state saved by another kind of optimizer (SGD against AdamW) or for other parameters is a
    :class:`CheckpointError` naming the training-state file, and ``optimizer`` is left as it
    was. torch itself notices some mismatches only at the first ``step()`` (AdamW's state loaded
    into SGD is accepted, then SGD misses ``momentum``), so the hyperparameter names of every
    parameter group are compared too.
    """
    state_path = checkpoint_files(checkpoint_stem(path))[1]
    saved = state.get("optimizer")
    groups = saved.get("param_groups") if isinstance(saved, Mapping) else None
    saved_by = _optimizer_kind(groups[0]) if isinstance(groups, list) and groups and isinstance(groups[0], Mapping) \
        else "an unknown optimizer"
    before = optimizer.state_dict()
    expected = [set(group) - {"params", "param_names"} for group in optimizer.param_groups]
    try:
        if not isinstance(saved, Mapping):
            raise ValueError(f"no optimizer state, got {_short(saved)}")
        optimizer.load_state_dict(dict(saved))
        for want, group in zip(expected, optimizer.param_groups):
            missing = sorted(want - set(group))
            if missing:
                raise KeyError(", ".join(missing))
    except (KeyError, ValueError, TypeError) as exc:
        reason = f"the saved state lacks {exc.args[0] if exc.args else exc}" if isinstance(exc, KeyError) else str(exc)
        try:
            optimizer.load_state_dict(before)
        except (KeyError, ValueError, TypeError):
            pass
        raise CheckpointError(f"{state_path}: the training state holds an optimizer state that does not fit the "
                              f"configured optimizer ({type(optimizer).__name__}; saved by {saved_by}: {reason}); "
                              "use a new run_dir or resume: never") from None


def _optimizer_kind(group: Mapping[str, Any]) -> str:
    if "betas" in group:
        return "an Adam-type optimizer"
    if "momentum" in group and "dampening" in group:
        return "SGD"
    if "alpha" in group and "centered" in group:
        return "RMSprop"
    return "another optimizer"


def find_last_complete(run_dir: str | Path, *, require_state: bool = True) -> Path | None:
    """The stem of the highest-epoch complete checkpoint in ``run_dir`` (``None`` if there is none).

    Complete means a valid sidecar, its weights, and (with ``require_state``) its training state.
    """
    folder = Path(run_dir) / "checkpoints"
    if not folder.is_dir():
        return None
    candidates = sorted(((int(m.group(1)), p) for p in folder.iterdir() if (m := _EPOCH_RE.match(p.name))),
                        reverse=True)
    for _, sidecar in candidates:
        stem = checkpoint_stem(sidecar)
        weights_path, state_path, _ = checkpoint_files(stem)
        try:
            meta = read_sidecar(stem)
        except CheckpointError:
            continue
        if weights_path.exists() and (not require_state or (meta.get("has_state") and state_path.exists())):
            return stem
    return None


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint stem from a stem, one of its files, or a run directory (its best, else its last epoch)."""
    path = Path(path)
    if path.is_dir():
        if best_stem(path).with_suffix(".json").exists():
            return best_stem(path)
        last = find_last_complete(path, require_state=False)
        if last is None:
            raise CheckpointError(f"{path}: a run directory without any complete checkpoint")
        return last
    return checkpoint_stem(path)


def load_model(path: str | Path, map_location: str | torch.device = "cpu") -> nn.Module:
    """The model of a checkpoint, built from its ArchSpec and loaded strictly, in eval mode."""

    state, meta = load_checkpoint(path, map_location=map_location)
    spec = sidecar_spec(meta, path)
    try:
        model = create_from_spec(spec)
    except ConfigError as exc:
        raise CheckpointError(f"{checkpoint_stem(path)}.json: {exc}") from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[1].strip() if len(str(exc).splitlines()) > 1 else str(exc)
        raise CheckpointError(f"{checkpoint_stem(path)}.safetensors: weights do not fit {meta['spec']['name']}: {first}") from None
    return model.to(map_location).eval()


def load_method_model(checkpoint: str | Path, method: str, *, label: str, purpose: str,
                      device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any], Path]:
    """``(model, sidecar, stem)`` of a checkpoint (stem, one of its files or a run directory) whose
    spec names ``method``, in eval mode on ``device``; a checkpoint of another model is a
    :class:`CheckpointError` saying ``not a(n) <label> checkpoint`` and ``purpose`` (what needs it)."""
    stem = resolve_checkpoint(checkpoint)
    meta = read_sidecar(stem)
    spec = sidecar_spec(meta, stem)
    if spec.method is None or spec.method.name != method:
        found = spec.method.name if spec.method is not None else "none"
        article = "an" if label[:1] in "AEIOU" else "a"
        raise CheckpointError(f"{stem}.json: not {article} {label} checkpoint (model {spec.name!r}, method {found!r}); "
                              f"{purpose}")
    return load_model(stem, map_location=device), meta, stem

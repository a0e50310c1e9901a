"""Export a static checkpoint to TorchScript, torch.export or ONNX, and check the export.

:func:`export_checkpoint` loads a checkpoint (a PAS-reduced network is a checkpoint with a
smaller spec and exports the same way), captures its eval-mode network on one clip at the
spec's input shape, writes the file atomically (default: beside the checkpoint, with the
format's suffix), loads it back and runs it against the eager model on a clip at that shape:
a relative max difference above :data:`TOLERANCE` is an :class:`ExportError`.

* ``torchscript``: :func:`torch.jit.trace` then :func:`torch.jit.save` (``.torchscript.pt``);
  loaded back with :func:`torch.jit.load`. torch 2.13 marks ``torch.jit.trace`` deprecated;
  the warning is kept out of the output and noted in the result.
* ``exported``: :func:`torch.export.export` then :func:`torch.export.save` (``.pt2``); loaded
  back with :func:`torch.export.load`.
* ``onnx``: :func:`torch.onnx.export` (``.onnx``), torch's exporter built on torch.export,
  which needs the ``onnx`` and ``onnxscript`` packages (optional; one line says what to
  install). The file is checked with onnxruntime when it is installed, else with
  ``onnx.reference`` (pure Python: slow on large networks).

A dynamic model decides per input what to compute. Tracing records the branch one input
took, so TorchScript is refused; torch.export (and ONNX, built on it) either captures the
control flow or raises on a data-dependent branch, which is reported in one line.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import logging
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from effvid.cost.static import format_shape, spec_input_shape
from effvid.engine.checkpoint import load_model, resolve_checkpoint
from effvid.errors import ConfigError, EffvidError
from effvid.io import atomic_file
from effvid.models.base import is_dynamic

log = logging.getLogger(__name__)

FORMATS: dict[str, str] = {"torchscript": ".torchscript.pt", "exported": ".pt2", "onnx": ".onnx"}
"""Export formats and the suffix of their default output file."""

TOLERANCE = 1e-4
"""Largest accepted max |export - eager| / max |eager| on the check clip."""


class ExportError(EffvidError):
    """A checkpoint cannot be exported in the asked format, or its export does not match eager."""


def default_export_path(stem: str | Path, format: str) -> Path:
    """``<stem><suffix>`` beside the checkpoint."""
    stem = Path(stem)
    return stem.with_name(stem.name + FORMATS[format])


def export_checkpoint(path: str | Path, format: str, out: str | Path | None = None, *, seed: int = 0) -> dict[str, Any]:
    """Export the checkpoint at ``path`` (stem, any of its files, or a run directory) as ``format``.

    Returns what was done: the output file and its size, the input shape captured and checked,
    the max absolute and relative difference of the reloaded export against eager, and notes.
    Raises :class:`ExportError` (a user error, one line) for a format that cannot capture the
    model, a missing optional package, or an export that does not match.
    """
    if format not in FORMATS:
        raise ConfigError(f"unknown export format {format!r}; choose from {', '.join(FORMATS)}")
    if format == "onnx":
        _require_onnx()
    stem = resolve_checkpoint(path)
    model = load_model(stem).eval().requires_grad_(False)
    spec = model.spec
    dynamic = is_dynamic(model)
    method = spec.method.name if spec.method is not None else None
    if dynamic and format == "torchscript":
        raise ExportError(f"{stem}: {spec.name} with method {method} is a dynamic model: TorchScript tracing records "
                          "the branches one clip took and cannot capture its data-dependent control flow; refused "
                          "(try --format exported, which captures such control flow or says it cannot)")
    shape = spec_input_shape(spec)
    generator = torch.Generator().manual_seed(seed)
    example = torch.randn(shape, generator=generator)
    check = torch.randn(shape, generator=generator)
    target = Path(out) if out is not None else default_export_path(stem, format)
    notes: list[str] = []
    start = time.perf_counter()
    with torch.no_grad():
        expected = model(check)
        if format == "torchscript":
            reloaded = _torchscript(model, example, target, notes)
        elif format == "exported":
            reloaded = _exported(model, example, target, stem, spec.name, method)
        else:
            reloaded = _onnx(model, example, target, stem, spec.name, method, notes)
        got = reloaded(check)
    seconds = time.perf_counter() - start
    got = got[0] if isinstance(got, (tuple, list)) else got
    got = torch.as_tensor(got, dtype=expected.dtype)
    if got.shape != expected.shape:
        raise ExportError(f"{target}: the reloaded {format} export returns shape {tuple(got.shape)}, the eager model "
                          f"{tuple(expected.shape)}")
    max_abs = float((got - expected).abs().max())
    scale = float(expected.abs().max())
    max_rel = max_abs / scale if scale > 0 else max_abs
    result = {"checkpoint": str(stem), "model": spec.name, "method": method, "dynamic": dynamic, "format": format,
              "out": str(target), "bytes": target.stat().st_size, "input_shape": list(shape),
              "max_abs_diff": max_abs, "max_rel_diff": max_rel, "tolerance": TOLERANCE,
              "matches": max_rel <= TOLERANCE, "seconds": seconds, "notes": notes}
    if max_rel > TOLERANCE:
        raise ExportError(f"{target}: the reloaded {format} export does not match the eager model at input "
                          f"{format_shape(shape)}: max |diff| {max_abs:.3g}, relative {max_rel:.3g} > {TOLERANCE:g}")
    return result


def _torchscript(model: nn.Module, example: Tensor, target: Path, notes: list[str]) -> Callable[[Tensor], Any]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        traced = torch.jit.trace(model, example)
        with atomic_file(target) as tmp:
            torch.jit.save(traced, str(tmp))
        reloaded = torch.jit.load(str(target), map_location="cpu")
    if any("deprecated" in str(w.message) for w in caught):
        notes.append(f"torch {torch.__version__} marks torch.jit.trace, save and load deprecated (it suggests "
                     "torch.export: --format exported)")
    return reloaded


def _exported(model: nn.Module, example: Tensor, target: Path, stem: Path, name: str,
              method: str | None) -> Callable[[Tensor], Any]:
    with _data_dependent_errors(stem, name, method, "torch.export"):
        program = torch.export.export(model, (example,))
    with atomic_file(target) as tmp:
        torch.export.save(program, str(tmp))
    return torch.export.load(str(target)).module()


def _onnx(model: nn.Module, example: Tensor, target: Path, stem: Path, name: str, method: str | None,
          notes: list[str]) -> Callable[[Tensor], Any]:
    with _data_dependent_errors(stem, name, method, "torch.onnx.export (built on torch.export)"):
        program = torch.export.export(model, (example,))
    with atomic_file(target) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        onnx_program = torch.onnx.export(program, (example,), dynamo=True, external_data=False, verbose=False,
                                         input_names=["clip"], output_names=["logits"])
        onnx_program.save(str(tmp), external_data=False)
    return _onnx_runner(target, notes)


def _onnx_runner(path: Path, notes: list[str]) -> Callable[[Tensor], Any]:
    """A callable running the ONNX file on a tensor: onnxruntime when installed, else onnx.reference."""
    if importlib.util.find_spec("onnxruntime") is not None:
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        feed = session.get_inputs()[0].name
        notes.append("checked with onnxruntime")
        return lambda x: torch.from_numpy(session.run(None, {feed: x.numpy()})[0])
    from onnx.reference import ReferenceEvaluator

    evaluator = ReferenceEvaluator(str(path))
    notes.append("checked with onnx.reference (onnxruntime is not installed)")
    return lambda x: torch.from_numpy(evaluator.run(None, {evaluator.input_names[0]: x.numpy()})[0])


def _require_onnx() -> None:
    missing = [name for name in ("onnx", "onnxscript") if importlib.util.find_spec(name) is None]
    if missing:
        raise ExportError(f"ONNX export needs the {' and '.join(missing)} package{'s' if len(missing) > 1 else ''} "
                          f"(optional, not installed): pip install {' '.join(missing)}")


def is_data_dependent(error: BaseException) -> bool:
    """Whether ``error`` is torch.export refusing a branch or shape that depends on tensor values."""
    from torch.fx.experimental.symbolic_shapes import GuardOnDataDependentSymNode

    chain: BaseException | None = error
    while chain is not None:
        if isinstance(chain, GuardOnDataDependentSymNode) or "data-dependent" in str(chain) \
                or "data dependent" in str(chain):
            return True
        chain = chain.__cause__ or chain.__context__
    return False


@contextlib.contextmanager
def _data_dependent_errors(stem: Path, name: str, method: str | None, exporter: str) -> Iterator[None]:
    """Turn torch.export's data-dependent refusal into one :class:`ExportError` line.

    torch.export prints the partial graph of a failed capture on stderr; it is held back here
    (logged at debug level) so the refusal stays one line, and written out for any other error.
    """
    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):
            yield
    except Exception as exc:
        if not is_data_dependent(exc):
            sys.stderr.write(captured.getvalue())
            raise
        log.debug("torch.export failed on %s:\n%s", stem, captured.getvalue(), exc_info=True)
        first = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        kind = f"{name} with method {method} (dynamic)" if method else name
        raise ExportError(f"{stem}: {exporter} cannot capture {kind}: its forward branches on tensor values "
                          f"(data-dependent control flow): {type(exc).__name__}: {first}") from None

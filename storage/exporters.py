"""Export a trained generator to TorchScript and ONNX, so it runs without gannas installed.

Both formats take ``z``: float32 ``(N, latent_dim)`` and return ``images``: float32
``(N, C, R, R)`` (NCHW) in ``[-1, 1]``; map to pixels with ``round((x + 1) * 127.5)``. Any batch
size ``N >= 1`` works. Each export is checked before it is returned: the written file is loaded
back and compared with the eager module on batches of 1 and 3 (TorchScript within 1e-6 — in
practice bit-identical; ONNX Runtime within 1e-4 when onnxruntime is installed), so a file that
silently specialised the batch size or changed the numbers is never left behind.

Exports run on a CPU float32 copy of the generator in eval mode (batch norm uses its running
statistics); the caller's module is not changed.
"""

from __future__ import annotations

import copy
import json
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from gannas._files import chmod_from_umask, mkstemp
from gannas.errors import CheckpointError

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn

__all__ = [
    "ExportError",
    "ONNX_INPUT_NAME",
    "ONNX_OUTPUT_NAME",
    "OnnxExporter",
    "export_onnx",
    "export_torchscript",
]

ONNX_INPUT_NAME = "z"
ONNX_OUTPUT_NAME = "images"
OnnxExporter = Literal["auto", "dynamo", "torchscript"]

_TORCHSCRIPT_ATOL = 1e-6
_ONNX_ATOL = 1e-4
# Traced/exported with a batch of 2: a batch of 1 lets tracers and torch.export specialise
# broadcasting and size-1 dimensions, which would then break other batch sizes.
_EXAMPLE_BATCH = 2
_CHECK_BATCHES = (1, 3)


class ExportError(CheckpointError):
    """A generator could not be exported, or the exported file does not reproduce it."""


def _metadata(latent_dim: int, example_out: torch.Tensor, fmt: str) -> dict[str, object]:
    return {
        "format": fmt,
        "input": {"name": ONNX_INPUT_NAME, "shape": ["N", latent_dim], "dtype": "float32"},
        "output": {
            "name": ONNX_OUTPUT_NAME,
            "shape": ["N", *example_out.shape[1:]],
            "dtype": "float32",
            "layout": "NCHW",
            "range": [-1.0, 1.0],
        },
    }


def _prepare(generator: nn.Module, latent_dim: int) -> tuple[nn.Module, torch.Tensor]:
    """A CPU float32 eval-mode copy of ``generator`` and an example latent batch for it."""
    import torch

    if isinstance(latent_dim, bool) or not isinstance(latent_dim, int) or latent_dim < 1:
        raise ExportError(f"latent_dim must be a positive integer, got {latent_dim!r}")
    own = getattr(generator, "latent_dim", None)
    if isinstance(own, int) and own != latent_dim:
        raise ExportError(
            f"latent_dim={latent_dim} does not match the generator's latent_dim={own}; pass the "
            "generator's own value"
        )
    model = copy.deepcopy(generator).to(device="cpu", dtype=torch.float32).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    z = torch.randn(_EXAMPLE_BATCH, latent_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = model(z)
    if out.ndim != 4:
        raise ExportError(
            f"the generator returned shape {tuple(out.shape)} for a latent batch "
            f"{tuple(z.shape)}; expected (N, C, R, R)"
        )
    return model, z


def _check(
    reference: nn.Module,
    run: Callable[[torch.Tensor], torch.Tensor],
    latent_dim: int,
    *,
    atol: float,
    what: str,
) -> None:
    import torch

    gen = torch.Generator().manual_seed(1)
    for n in _CHECK_BATCHES:
        z = torch.randn(n, latent_dim, generator=gen)
        with torch.no_grad():
            expected = reference(z)
            try:
                got = run(z)
            except Exception as exc:  # noqa: BLE001 - any runtime failure means a broken export
                raise ExportError(
                    f"the exported {what} fails on a batch of {n}: {type(exc).__name__}: {exc}"
                ) from exc
        if got.shape != expected.shape:
            raise ExportError(
                f"the exported {what} returns shape {tuple(got.shape)} for a batch of {n}; "
                f"expected {tuple(expected.shape)} (the batch size may have been fixed at export)"
            )
        err = (got - expected).abs().max().item()
        if not err <= atol:  # also catches NaN
            raise ExportError(
                f"the exported {what} differs from the generator by {err:.3g} on a batch of {n}; "
                f"expected at most {atol:g}"
            )


def _first_line(exc: BaseException) -> str:
    # Compiler errors quote whole source listings; the first line says what went wrong.
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"


def _atomic_target(path: str | os.PathLike[str], suffix: str) -> tuple[Path, Path]:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = mkstemp(prefix=f".{target.name}.", suffix=suffix, dir=target.parent)
    os.close(fd)
    return target, Path(tmp)


def export_torchscript(
    generator: nn.Module, path: str | os.PathLike[str], *, latent_dim: int
) -> Path:
    """Write ``generator`` as a TorchScript file loadable with ``torch.jit.load(path)``.

    Uses ``torch.jit.trace`` (generators are straight-line code, and tracing also covers modules
    TorchScript's compiler rejects). The trace is taken on a batch of 2 and verified on batches of
    1 and 3, so the batch dimension is dynamic; a model whose trace fixes the batch size is
    re-exported with ``torch.jit.script``, and an :class:`ExportError` is raised if that fails too.
    The file embeds ``gannas.json`` (input/output names, shapes, range), readable with
    ``torch.jit.load(path, _extra_files={"gannas.json": ""})``. Returns ``path``.
    """
    import torch

    model, z = _prepare(generator, latent_dim)
    with torch.no_grad():
        example_out = model(z)
    target, tmp = _atomic_target(path, ".pt")
    try:
        errors: list[str] = []
        for how in ("trace", "script"):
            with warnings.catch_warnings():
                # torch.jit is deprecated in favour of torch.export, but it is still the only way
                # to get a single file that plain `torch` (and C++ libtorch) can load and run.
                warnings.simplefilter("ignore", FutureWarning)
                warnings.simplefilter("ignore", torch.jit.TracerWarning)
                try:
                    if how == "trace":
                        compiled = torch.jit.trace(model, z, check_trace=False)
                    else:
                        compiled = torch.jit.script(model)
                    extra = {
                        "gannas.json": json.dumps(_metadata(latent_dim, example_out, "torchscript"))
                    }
                    torch.jit.save(compiled, str(tmp), _extra_files=extra)
                    loaded = torch.jit.load(str(tmp), map_location="cpu")
                    _check(
                        model,
                        loaded,
                        latent_dim,
                        atol=_TORCHSCRIPT_ATOL,
                        what=f"TorchScript ({how})",
                    )
                except Exception as exc:  # noqa: BLE001 - try the next way, report all at the end
                    errors.append(f"{how}: {_first_line(exc)}")
                    continue
            chmod_from_umask(tmp)  # the umask's mode, however the exporter (re)wrote the file
            os.replace(tmp, target)
            return target
        raise ExportError("cannot export the generator to TorchScript: " + "; ".join(errors))
    finally:
        tmp.unlink(missing_ok=True)


def _onnx_export(
    model: nn.Module, z: torch.Tensor, file: Path, *, opset: int, exporter: str
) -> None:
    import torch

    common: dict[str, Any] = {
        "input_names": [ONNX_INPUT_NAME],
        "output_names": [ONNX_OUTPUT_NAME],
        "opset_version": opset,
    }
    with warnings.catch_warnings():
        # Deprecation notices of the exporters, and the tracer's notes about shape checks that
        # become constants (our verification catches a trace that does not generalise).
        warnings.simplefilter(
            "ignore", (FutureWarning, DeprecationWarning, torch.jit.TracerWarning)
        )
        # InstanceNorm without running stats always normalises with the input's own statistics,
        # in eval mode too; the exporter warns about that, but it is exactly the eager behaviour.
        warnings.filterwarnings("ignore", message="ONNX export mode is set to TrainingMode.EVAL")
        if exporter == "dynamo":
            # torch.export-based exporter (torch's default since 2.9; needs onnxscript). The batch
            # is declared dynamic with a Dim; if the model fixes it, torch.export raises here.
            torch.onnx.export(
                model,
                (z,),
                str(file),
                dynamo=True,
                dynamic_shapes={"z": {0: torch.export.Dim("batch", min=1)}},
                external_data=False,  # one self-contained file; generators are far below 2 GB
                verbose=False,
                **common,
            )
        else:
            torch.onnx.export(
                model,
                (z,),
                str(file),
                dynamo=False,
                dynamic_axes={ONNX_INPUT_NAME: {0: "batch"}, ONNX_OUTPUT_NAME: {0: "batch"}},
                **common,
            )


def _annotate_onnx(file: Path, metadata: dict[str, object]) -> int:
    """Store ``metadata`` in the model's ``metadata_props``; returns the model's ONNX opset."""
    import onnx

    model = onnx.load(str(file))
    del model.metadata_props[:]
    entry = model.metadata_props.add()
    entry.key, entry.value = "gannas", json.dumps(metadata)
    onnx.checker.check_model(model)
    onnx.save(model, str(file))
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


def export_onnx(
    generator: nn.Module,
    path: str | os.PathLike[str],
    *,
    latent_dim: int,
    opset: int = 17,
    exporter: OnnxExporter = "auto",
) -> Path:
    """Write ``generator`` as an ONNX model: input ``"z"`` float32 ``(batch, latent_dim)``, output
    ``"images"`` float32 ``(batch, C, R, R)`` NCHW in ``[-1, 1]``, with a dynamic ``batch`` axis.

    ``exporter``:

    * ``"torchscript"``: torch's tracing exporter (``dynamo=False``). No extra package, writes the
      requested opset natively and takes well under a second for a generator; torch deprecates it
      but the pinned torch 2.14 has it.
    * ``"dynamo"``: torch's ``torch.export``-based exporter (torch's own default since 2.9). Needs
      the ``onnxscript`` package (pure Python, works offline); it targets opset 18 and converts down
      to ``opset``, which makes it 5-10x slower here, and refuses models whose code fixes the batch.
    * ``"auto"`` (default): ``"torchscript"`` first, then ``"dynamo"`` (when onnxscript is
      installed) if the first raises or its file does not reproduce the generator — so the export
      keeps working once torch drops the old exporter.

    Requires the ``onnx`` package; the result is checked with ``onnx.checker`` and, when onnxruntime
    is installed, run against the eager generator (within 1e-4) on batches of 1 and 3. The
    model's ``metadata_props["gannas"]`` holds the input/output description and the exporter used,
    as JSON. Returns ``path``.
    """
    import importlib.util

    if exporter not in ("auto", "dynamo", "torchscript"):
        raise ExportError(f"exporter must be 'auto', 'dynamo' or 'torchscript', got {exporter!r}")
    if isinstance(opset, bool) or not isinstance(opset, int) or not 9 <= opset <= 25:
        raise ExportError(f"opset must be an integer ONNX opset between 9 and 25, got {opset!r}")
    if importlib.util.find_spec("onnx") is None:
        raise ExportError(
            "ONNX export needs the onnx package, which is not installed; run `pip install onnx`"
        )
    has_onnxscript = importlib.util.find_spec("onnxscript") is not None
    if exporter == "dynamo" and not has_onnxscript:
        raise ExportError(
            "the dynamo ONNX exporter needs the onnxscript package, which is not installed; run "
            "`pip install onnxscript` or pass exporter='torchscript'"
        )
    if exporter == "auto":
        order = ["torchscript", "dynamo"] if has_onnxscript else ["torchscript"]
    else:
        order = [exporter]

    import torch

    model, z = _prepare(generator, latent_dim)
    with torch.no_grad():
        example_out = model(z)
    target, tmp = _atomic_target(path, ".onnx")
    errors: list[str] = []
    try:
        for how in order:
            try:
                _onnx_export(model, z, tmp, opset=opset, exporter=how)
                meta = _metadata(latent_dim, example_out, "onnx") | {"exporter": how}
                got_opset = _annotate_onnx(tmp, meta)
                if got_opset != opset:
                    # The dynamo exporter keeps opset 18 when it cannot convert down.
                    raise ExportError(f"wrote opset {got_opset}, expected {opset}")
                _verify_onnx(model, tmp, latent_dim)
            except Exception as exc:  # noqa: BLE001 - try the next exporter, report all at the end
                errors.append(f"{how} exporter: {_first_line(exc)}")
                continue
            chmod_from_umask(tmp)  # the umask's mode, however the exporter (re)wrote the file
            os.replace(tmp, target)
            return target
        raise ExportError("cannot export the generator to ONNX: " + "; ".join(errors))
    finally:
        tmp.unlink(missing_ok=True)


def _verify_onnx(model: nn.Module, file: Path, latent_dim: int) -> None:
    import importlib.util

    if importlib.util.find_spec("onnxruntime") is None:
        return  # nothing to run it with; onnx.checker has validated the graph
    import onnxruntime
    import torch

    session = onnxruntime.InferenceSession(str(file), providers=["CPUExecutionProvider"])

    def run(z: torch.Tensor) -> torch.Tensor:
        (out,) = session.run([ONNX_OUTPUT_NAME], {ONNX_INPUT_NAME: z.numpy()})
        return torch.from_numpy(out)

    _check(model, run, latent_dim, atol=_ONNX_ATOL, what="ONNX model")

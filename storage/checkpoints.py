"""Exported generators: a directory of safetensors weights plus JSON, never a pickle.

Layout of a checkpoint directory (format version 1)::

    generator.safetensors   state dict (parameters and buffers) of the generator
    arch.json               the trial's ArchConfig, enough to rebuild the module
    metadata.json           format version, output range, latent size, FID protocol, score,
                            provenance (study, trial, dataset, ...), package versions, creation time

Loading rebuilds the module from ``arch.json`` with :func:`search_spaces.build_generator` and fills
it from the safetensors file, so no code from the checkpoint is ever executed (``torch.load`` and
pickle can run arbitrary code and are never used). Writing goes to a temporary sibling directory
that is renamed into place, so a reader never sees a half-written checkpoint.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gannas._files import chmod_from_umask, make_dirs, remove_dirs
from gannas.errors import CheckpointError

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn

    from search_spaces.config import ArchConfig

__all__ = [
    "ARCH_FILE",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "METADATA_FILE",
    "WEIGHTS_FILE",
    "load_generator",
    "read_arch",
    "read_metadata",
    "save_generator",
]

FORMAT_NAME = "gannas-generator"
FORMAT_VERSION = 1
WEIGHTS_FILE = "generator.safetensors"
ARCH_FILE = "arch.json"
METADATA_FILE = "metadata.json"
OUTPUT_RANGE = (-1.0, 1.0)
# Files that carry a pickle payload: recognised only to refuse them with a clear message.
PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin")
_VERSIONED_PACKAGES = ("gannas", "torch", "optuna", "safetensors")


def save_generator(
    out_dir: str | os.PathLike[str],
    generator: nn.Module,
    arch: ArchConfig,
    *,
    protocol: Mapping[str, Any],
    score: Mapping[str, Any],
    provenance: Mapping[str, Any],
    overwrite: bool = False,
    extra_files: Mapping[str, Callable[[Path], object]] | None = None,
) -> Path:
    """Write ``generator`` to the checkpoint directory ``out_dir`` atomically; return its path.

    ``protocol`` is the FID protocol the score was measured under, ``score`` the metrics (e.g.
    ``{"fid": 23.4}``), ``provenance`` where it came from (study, trial, dataset, ...). Non-finite
    floats (a diverged trial's ``inf`` FID) are stored as the strings ``"inf"``/``"-inf"``/``"nan"``
    to keep the JSON standard. An existing non-empty ``out_dir`` is replaced only with
    ``overwrite=True``. ``extra_files`` maps a file name to a writer called with that file's path
    inside the temporary directory (e.g. a TorchScript or ONNX export), so the extras appear
    atomically with the rest; they are listed in the metadata and never read by
    :func:`load_generator`.
    """
    from safetensors.torch import save_file

    out = Path(out_dir).expanduser().absolute()
    _check_target(out, overwrite=overwrite)
    latent_dim = getattr(generator, "latent_dim", None)
    if not isinstance(latent_dim, int) or isinstance(latent_dim, bool) or latent_dim <= 0:
        raise CheckpointError(
            f"cannot export generator {type(generator).__name__}: expected a positive integer "
            f"attribute latent_dim, found {latent_dim!r}"
        )

    extras = dict(extra_files or {})
    for name in extras:
        _check_extra_name(name)
    tensors = _tensors_for_export(generator)
    metadata = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "family": arch.family,
        "resolution": arch.resolution,
        "channels": arch.channels,
        "latent_dim": latent_dim,
        "output_range": list(OUTPUT_RANGE),
        "protocol": _json_ready(protocol, "protocol"),
        "score": _json_ready(score, "score"),
        "provenance": _json_ready(provenance, "provenance"),
        "versions": _package_versions(),
        "extra_files": sorted(extras),
    }

    # Parents made here are removed again if the write fails: a failed export leaves nothing.
    created = make_dirs(out.parent)
    tmp = out.parent / f".{out.name}.tmp-{uuid.uuid4().hex[:12]}"
    try:
        tmp.mkdir()
    except BaseException:
        remove_dirs(created)
        raise
    try:
        save_file(
            tensors,
            str(tmp / WEIGHTS_FILE),
            metadata={"format": "pt", "gannas_format_version": str(FORMAT_VERSION)},
        )
        _write_json(tmp / ARCH_FILE, arch.to_json_dict())
        _write_json(tmp / METADATA_FILE, metadata)
        for name, write in extras.items():
            write(tmp / name)
            if not (tmp / name).is_file():
                raise CheckpointError(f"cannot export: the writer of {name!r} created no file")
        for name in (WEIGHTS_FILE, ARCH_FILE, METADATA_FILE, *extras):
            # safetensors writes owner-only (0600) files; an export is meant to be shared, so
            # every file gets the mode the umask gives, like the JSON files next to it.
            chmod_from_umask(tmp / name)
            _fsync(tmp / name)
        _move_into_place(tmp, out, overwrite=overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        remove_dirs(created)
        raise
    return out


def read_arch(path: str | Path) -> ArchConfig:
    """The architecture stored in checkpoint directory ``path``, without building it.

    Checks the checkpoint's format and version first. Raises :class:`CheckpointError`.
    """
    from pydantic import ValidationError

    from search_spaces.config import ArchConfig, first_problem

    root = _checkpoint_dir(path)
    read_metadata(root)  # checks the format and version before building anything
    arch_data = _read_json(root / ARCH_FILE)
    try:
        return ArchConfig.model_validate(arch_data)
    except ValidationError as exc:
        raise CheckpointError(
            f"invalid {root / ARCH_FILE}: {first_problem(exc)}; expected an ArchConfig written "
            "by save_generator"
        ) from None


def load_generator(
    path: str | os.PathLike[str],
    *,
    device: str | torch.device = "cpu",
    builder: Callable[[ArchConfig], nn.Module] | None = None,
) -> nn.Module:
    """Rebuild the generator stored in checkpoint directory ``path``, in eval mode on ``device``.

    ``builder`` defaults to :func:`search_spaces.build_generator`. Weights must match the rebuilt
    module exactly (same keys and shapes). Raises :class:`CheckpointError` for a missing, corrupt,
    unsafe (pickle) or mismatched checkpoint.
    """
    root = _checkpoint_dir(path)
    weights_path = root / WEIGHTS_FILE
    arch = read_arch(root)

    if builder is None:
        from search_spaces import build_generator

        builder = build_generator
    try:
        module = builder(arch)
    except Exception as exc:  # noqa: BLE001 - any builder failure means the arch cannot be used
        raise CheckpointError(
            f"cannot rebuild the generator of {root}: {type(exc).__name__}: {exc}; expected an "
            f"architecture of a registered family (found family {arch.family!r})"
        ) from None

    state = _load_safetensors(weights_path)
    _check_state_matches(module, state, weights_path)
    module.load_state_dict(state, strict=True)
    try:
        return module.to(device).eval()
    except (RuntimeError, AssertionError, ValueError) as exc:
        # torch's own words for a device this machine lacks ("Found no NVIDIA driver ...",
        # "Torch not compiled with CUDA enabled"), named as the checkpoint's device problem.
        first = next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        raise CheckpointError(f"cannot load the generator onto device {str(device)!r}: {first}") from None


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``metadata.json`` of checkpoint directory ``path`` (format checked)."""
    root = _checkpoint_dir(path)
    data = _read_json(root / METADATA_FILE)
    if not isinstance(data, dict) or data.get("format") != FORMAT_NAME:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise CheckpointError(
            f"{root / METADATA_FILE} is not gannas checkpoint metadata: expected format "
            f"{FORMAT_NAME!r}, found {found!r}"
        )
    version = data.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise CheckpointError(
            f"{root / METADATA_FILE}: format_version must be a positive integer, found {version!r}"
        )
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {root} has format version {version}, this gannas reads up to "
            f"{FORMAT_VERSION}; upgrade gannas to load it"
        )
    return data


# --- writing -------------------------------------------------------------------------------------


def _check_target(out: Path, *, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise CheckpointError(f"cannot export to {out}: it exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise CheckpointError(
            f"cannot export to {out}: the directory is not empty; choose a new directory or pass "
            "--overwrite (overwrite=True in Python) to replace it"
        )


def _check_extra_name(name: str) -> None:
    reserved = (WEIGHTS_FILE, ARCH_FILE, METADATA_FILE)
    if (
        not isinstance(name, str)
        or name in reserved
        or name in {"", ".", ".."}
        or Path(name).name != name
        or "\\" in name
    ):
        raise CheckpointError(
            f"cannot export: extra file name {name!r} must be a plain file name other than "
            f"{', '.join(reserved)}"
        )


def _tensors_for_export(generator: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict as independent, contiguous CPU tensors.

    safetensors refuses tensors that share storage (tied weights, spectral-norm views); cloning
    gives each key its own copy, and ``load_state_dict`` writes every copy back into place.
    """
    import torch

    tensors: dict[str, torch.Tensor] = {}
    for key, value in generator.state_dict().items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(
                f"cannot export generator {type(generator).__name__}: state entry {key!r} is a "
                f"{type(value).__name__}, expected only tensors (safetensors stores no objects)"
            )
        tensors[key] = value.detach().to("cpu").contiguous().clone()
    if not tensors:
        raise CheckpointError(
            f"cannot export generator {type(generator).__name__}: its state dict is empty"
        )
    return tensors


def _json_ready(value: Any, where: str) -> Any:
    """``value`` as plain JSON data; non-finite floats become strings; other objects are refused."""
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise CheckpointError(
                    f"cannot export: {where} key {key!r} is a {type(key).__name__}, expected str"
                )
            out[key] = _json_ready(item, f"{where}.{key}")
        return out
    if isinstance(value, (list, tuple)):
        return [_json_ready(item, f"{where}[{i}]") for i, item in enumerate(value)]
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
        try:
            return _json_ready(value.item(), where)
        except (TypeError, ValueError, RuntimeError):
            pass
    raise CheckpointError(
        f"cannot export: {where} is a {type(value).__name__} ({value!r:.60}), expected JSON data "
        "(str, number, bool, None, list, mapping)"
    )


def _package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": sys.version.split()[0]}
    for name in _VERSIONED_PACKAGES:
        try:
            versions[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True, allow_nan=False) + "\n")


def _fsync(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def _move_into_place(tmp: Path, out: Path, *, overwrite: bool) -> None:
    """Rename ``tmp`` to ``out``; an existing ``out`` is moved aside first and removed after."""
    if out.is_dir() and not any(out.iterdir()):
        out.rmdir()
    if not out.exists():
        os.rename(tmp, out)
        return
    if not overwrite:  # appeared while we were writing
        raise CheckpointError(f"cannot export to {out}: it was created by someone else meanwhile")
    old = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:12]}"
    os.rename(out, old)
    try:
        os.rename(tmp, out)
    except BaseException:
        os.rename(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)


# --- reading -------------------------------------------------------------------------------------


def _checkpoint_dir(path: str | os.PathLike[str]) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise CheckpointError(
            f"expected the path of a checkpoint directory (str or Path), got {path!r}"
        )
    root = Path(path).expanduser()
    if root.is_file():
        if root.suffix.lower() in PICKLE_SUFFIXES:
            raise CheckpointError(_pickle_refusal(root))
        raise CheckpointError(
            f"{root} is a file; expected a checkpoint directory written by save_generator "
            f"(containing {WEIGHTS_FILE}, {ARCH_FILE} and {METADATA_FILE})"
        )
    if not root.is_dir():
        raise CheckpointError(f"checkpoint directory {root} does not exist")
    if (root / WEIGHTS_FILE).exists() and not (root / WEIGHTS_FILE).is_file():
        raise CheckpointError(f"{root / WEIGHTS_FILE} is not a file; expected the weights file")
    if not (root / WEIGHTS_FILE).is_file():
        pickles = sorted(p for p in root.iterdir() if p.suffix.lower() in PICKLE_SUFFIXES)
        if pickles:
            raise CheckpointError(_pickle_refusal(pickles[0]))
        raise CheckpointError(
            f"checkpoint directory {root} has no {WEIGHTS_FILE}; expected a directory written by "
            "save_generator"
        )
    return root


def _pickle_refusal(path: Path) -> str:
    return (
        f"refusing to load {path}: it is a pickle payload, and pickle is never loaded for safety "
        f"(it can run arbitrary code); expected a checkpoint directory with {WEIGHTS_FILE}"
    )


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint file {path} is missing; expected it next to {WEIGHTS_FILE}"
        )
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise CheckpointError(f"{path} is not UTF-8 text; expected JSON") from None
    except json.JSONDecodeError as exc:
        raise CheckpointError(
            f"{path} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None


def _load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except Exception as exc:  # noqa: BLE001 - SafetensorError, OSError, ...: all mean unreadable
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(
            f"{path} is corrupt or truncated ({reason}); expected a safetensors file written by "
            "save_generator"
        ) from None


def _check_state_matches(module: nn.Module, state: Mapping[str, torch.Tensor], path: Path) -> None:
    """Raise a one-line :class:`CheckpointError` naming the first key/shape differences."""
    expected = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in state.items()}
    missing = sorted(expected.keys() - found.keys())
    unexpected = sorted(found.keys() - expected.keys())
    mismatched = sorted(
        f"{k} (expected {list(expected[k])}, found {list(found[k])})"
        for k in expected.keys() & found.keys()
        if expected[k] != found[k]
    )
    problems = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("shape", mismatched)):
        if items:
            shown = ", ".join(items[:3]) + (
                f", ... ({len(items)} in all)" if len(items) > 3 else ""
            )
            problems.append(f"{label}: {shown}")
    if problems:
        raise CheckpointError(
            f"weights in {path} do not match the architecture in {ARCH_FILE}: "
            + "; ".join(problems)
        )

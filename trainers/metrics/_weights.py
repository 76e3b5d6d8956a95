"""Finding, downloading and verifying the Inception-v3 (FID) weights file.

Resolution order (first hit wins):

1. an explicit ``path`` argument, else the env variable ``GANNAS_INCEPTION_WEIGHTS``;
2. the torch hub cache, ``torch.hub.get_dir()/checkpoints/``, under pytorch-fid's name
   ``pt_inception-2015-12-05-6726825d.pth`` or torch-fidelity's ``weights-inception-2015-12-05-6726825d.pth``;
3. a download of torch-fidelity's release file into the hub cache (temp file + rename, so a crash
   never leaves a truncated file under the final name) when ``download=True``.

Every file is hashed: anything but the official sha256 raises :class:`WeightsError` unless
``allow_unverified=True``, in which case the result says ``verified=False`` and records the hash, so a
metric computed with it can never pass for the standard FID.

Loading is always ``torch.load(weights_only=True)``: a weights file is data, never code.
"""

from __future__ import annotations

import os
import pickle
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import torch

from gannas._files import mkstemp
from gannas.errors import WeightsError
from trainers.metrics._hashing import file_sha256

__all__ = [
    "EXPECTED_SHA256",
    "EXPECTED_SIZE",
    "HUB_FILENAMES",
    "WeightsInfo",
    "inception_weights_url",
    "load_inception_state_dict",
    "resolve_inception_weights",
]

EXPECTED_SHA256 = "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2"
EXPECTED_SIZE = 95_628_359
ENV_WEIGHTS = "GANNAS_INCEPTION_WEIGHTS"
# pytorch-fid's name first (many machines already have it), then torch-fidelity's; same bytes.
HUB_FILENAMES = (
    "pt_inception-2015-12-05-6726825d.pth",
    "weights-inception-2015-12-05-6726825d.pth",
)
_UNVERIFIED_HINT = (
    "pass --allow-unverified-weights (allow_unverified=True in Python) to use it anyway; "
    "the FID is then not comparable with published numbers"
)


@dataclass(frozen=True)
class WeightsInfo:
    """A resolved weights file: where it is, its sha256, and whether that is the official hash."""

    path: str
    sha256: str
    verified: bool
    source: str  # "argument" | "env" | "hub-cache" | "download"


def inception_weights_url() -> str:
    """The standard download URL (torch-fidelity's ``URL_INCEPTION_V3``); a function so tests can swap it."""
    from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3

    return URL_INCEPTION_V3


def resolve_inception_weights(
    path: str | os.PathLike[str] | None = None,
    *,
    download: bool = True,
    allow_unverified: bool = False,
) -> WeightsInfo:
    """Find (or download) the Inception weights and check their sha256; see the module docstring."""
    explicit = path if path is not None else os.environ.get(ENV_WEIGHTS) or None
    if explicit is not None:
        source = "argument" if path is not None else "env"
        candidate = Path(explicit).expanduser()
        if not candidate.is_file():
            where = "argument" if path is not None else f"env {ENV_WEIGHTS}"
            raise WeightsError(
                f"Inception weights file {str(candidate)!r} (from the {where}) does not exist; "
                f"expected a .pth state dict with sha256 {EXPECTED_SHA256}"
            )
        return _verify(candidate, source=source, allow_unverified=allow_unverified)

    checkpoints = Path(torch.hub.get_dir()) / "checkpoints"
    for name in HUB_FILENAMES:
        candidate = checkpoints / name
        if candidate.is_file():
            return _verify(candidate, source="hub-cache", allow_unverified=allow_unverified)

    if not download:
        raise WeightsError(
            "Inception weights not found: no path given, env "
            f"{ENV_WEIGHTS} unset, and neither of {list(HUB_FILENAMES)} is in {str(checkpoints)!r}; "
            "download is disabled. Expected a file with sha256 "
            f"{EXPECTED_SHA256}; pass its path or allow the download"
        )
    target = checkpoints / HUB_FILENAMES[1]
    _download(inception_weights_url(), target)
    return _verify(target, source="download", allow_unverified=False)


def _verify(path: Path, *, source: str, allow_unverified: bool) -> WeightsInfo:
    found = file_sha256(path)
    if found == EXPECTED_SHA256:
        return WeightsInfo(path=str(path), sha256=found, verified=True, source=source)
    if allow_unverified:
        return WeightsInfo(path=str(path), sha256=found, verified=False, source=source)
    size = path.stat().st_size
    # Only a file found in the hub cache is one a deletion makes gannas download again; a file
    # the user named stays theirs to replace.
    remedy = (
        "Delete it to re-download"
        if source == "hub-cache"
        else "Give the official file (or leave the option out to use the hub cache or download)"
    )
    raise WeightsError(
        f"Inception weights file {str(path)!r} has sha256 {found} ({size} bytes), expected "
        f"{EXPECTED_SHA256} ({EXPECTED_SIZE} bytes): the file is corrupt, truncated or a different "
        f"network. {remedy}, or {_UNVERIFIED_HINT}"
    )


def _download(url: str, target: Path) -> None:
    """Download ``url`` to ``target`` atomically and only keep it if the hash is the official one."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = mkstemp(prefix=target.name + ".", suffix=".part", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                # The standard URL is hard-coded https; tests swap in a file:// URL.
                with urllib.request.urlopen(url) as response:  # noqa: S310
                    for block in iter(lambda: response.read(1 << 20), b""):
                        out.write(block)
            except OSError as exc:
                raise WeightsError(
                    f"could not download the Inception weights from {url!r}: {exc}. Download it "
                    f"elsewhere and pass its path (or set {ENV_WEIGHTS}); expected sha256 {EXPECTED_SHA256}"
                ) from exc
            out.flush()
            os.fsync(out.fileno())
        found = file_sha256(tmp_name)
        if found != EXPECTED_SHA256:
            # Never leave an unverified file under the cache name that later runs would pick up.
            raise WeightsError(
                f"downloaded Inception weights from {url!r} have sha256 {found}, expected "
                f"{EXPECTED_SHA256}; the file was discarded"
            )
        os.replace(tmp_name, target)
    finally:
        if os.path.exists(tmp_name):
            os.remove(tmp_name)


def load_inception_state_dict(weights: WeightsInfo) -> dict[str, torch.Tensor]:
    """Load the state dict with ``weights_only=True``: a pickle payload raises WeightsError, never runs."""
    try:
        state = torch.load(weights.path, weights_only=True, map_location="cpu")
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError, AttributeError) as exc:
        raise WeightsError(
            f"Inception weights file {weights.path!r} (sha256 {weights.sha256}) cannot be loaded as a "
            f"plain state dict of tensors (weights_only=True): {type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}. Expected torch-fidelity's .pth with sha256 "
            f"{EXPECTED_SHA256}"
        ) from exc
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise WeightsError(
            f"Inception weights file {weights.path!r} does not hold a state dict of tensors "
            f"(found {type(state).__name__}); expected torch-fidelity's .pth with sha256 {EXPECTED_SHA256}"
        )
    return state

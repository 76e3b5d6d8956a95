"""Feature extractors: the protocol, Inception-v3 (FID) and user-supplied TorchScript networks.

An extractor maps uint8 images (N, 3, H, W) to a dict of CPU float32 tensors: ``"pool"`` (N, D), the
features FID and KID use, and optionally ``"logits"`` (N, K) for the Inception Score. Its ``identity``
string (network name + sha256 of the weights/TorchScript file) goes into every cache key and into the
:class:`~trainers.metrics.protocol.FIDProtocol` a trial records, so numbers computed with different
networks are never compared or mixed.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol, runtime_checkable

import torch
from torch import nn

from gannas.errors import WeightsError
from trainers.metrics._hashing import file_sha256
from trainers.metrics._inception import build_inception, optimize_for_cpu_inference
from trainers.metrics._resize import resize_tf1_bilinear
from trainers.metrics._weights import WeightsInfo, load_inception_state_dict

__all__ = [
    "FeatureExtractor",
    "InceptionFeatureExtractor",
    "TorchScriptFeatureExtractor",
    "resolve_device",
]

INCEPTION_NAME = "inception-v3-compat"
INCEPTION_SIZE = 299
# torch-fidelity's forward after the resize, as a flat list of its own submodules.
_TRUNK = (
    "Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "MaxPool_1", "Conv2d_3b_1x1", "Conv2d_4a_3x3",
    "MaxPool_2", "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d",
    "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c", "AvgPool",
)  # fmt: skip


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None``/``"auto"`` -> CUDA when available, else CPU; anything else as given."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@runtime_checkable
class FeatureExtractor(Protocol):
    """What the metrics need from a feature network."""

    @property
    def name(self) -> str: ...

    @property
    def identity(self) -> str:
        """Name plus content hash; equal identities mean bit-identical networks."""
        ...

    @property
    def sha256(self) -> str: ...

    @property
    def verified(self) -> bool: ...

    @property
    def provides_logits(self) -> bool: ...

    def features(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """uint8 (N, 3, H, W) -> {"pool": (N, D) float32 CPU, optional "logits": (N, K)}."""
        ...


@contextlib.contextmanager
def _exact_cuda_math(device: torch.device) -> Iterator[None]:
    # cuDNN convolutions default to TF32 on Ampere+, which moves FID in the 3rd digit; the reference
    # numbers are full float32.
    if device.type == "cuda":
        with torch.backends.cudnn.flags(enabled=True, benchmark=True, deterministic=False, allow_tf32=False):
            yield
    else:
        yield


def _check_images(images: torch.Tensor) -> None:
    if images.dim() != 4 or images.shape[1] != 3 or images.dtype != torch.uint8:
        raise ValueError(
            f"feature extractors take uint8 images of shape (N, 3, H, W), got {images.dtype} "
            f"{tuple(images.shape)}"
        )


class InceptionFeatureExtractor:
    """Inception-v3 for FID (torch-fidelity's ``inception-v3-compat``): 2048-d pool features + logits.

    ``fast=True`` (default) runs torch-fidelity's layers with BatchNorm folded into the convs,
    channels-last weights and a cheaper bit-identical TF1 resize; ``fast=False`` calls torch-fidelity's
    own ``forward`` unchanged. ``"logits"`` are torch-fidelity's ``logits_unbiased`` (no fc bias), the
    layer its Inception Score uses.
    """

    def __init__(self, weights: WeightsInfo, device: str | torch.device | None = "cpu", *, fast: bool = True) -> None:
        self._weights = weights
        self._device = resolve_device(device)
        self._fast = fast
        state = load_inception_state_dict(weights)
        try:
            module = build_inception(state, ("2048", "logits_unbiased"))
        except RuntimeError as exc:  # missing/unexpected keys or wrong shapes
            raise WeightsError(
                f"{weights.path!r} (sha256 {weights.sha256}) is a state dict, but not of torch-fidelity's "
                f"Inception-v3 for FID: {str(exc).splitlines()[0]} ..."
            ) from exc
        if fast:
            module = optimize_for_cpu_inference(module)
        self._module: nn.Module = module.to(self._device)

    @property
    def name(self) -> str:
        return INCEPTION_NAME

    @property
    def identity(self) -> str:
        return f"{INCEPTION_NAME}:sha256={self._weights.sha256}"

    @property
    def sha256(self) -> str:
        return self._weights.sha256

    @property
    def verified(self) -> bool:
        return self._weights.verified

    @property
    def provides_logits(self) -> bool:
        return True

    @property
    def device(self) -> torch.device:
        return self._device

    @torch.no_grad()
    def features(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        _check_images(images)
        images = images.to(self._device, non_blocking=True)
        with _exact_cuda_math(self._device):
            if self._fast:
                pool, logits = self._fast_forward(images)
            else:
                pool, logits = self._module(images)
        return {"pool": pool.float().cpu(), "logits": logits.float().cpu()}

    def _fast_forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        module = self._module
        x = resize_tf1_bilinear(images.to(torch.float32), INCEPTION_SIZE)
        x = (x - 128) / 128  # torch-fidelity's normalisation, same expression
        for name in _TRUNK:
            x = getattr(module, name)(x)
        pool = torch.flatten(x, 1)
        logits = pool.mm(module.fc.weight.T)
        return pool, logits


class TorchScriptFeatureExtractor:
    """A user network saved with ``torch.jit.save``: ``forward(uint8 (N, 3, H, W)) -> (N, D)``.

    TorchScript archives hold code and tensors, not arbitrary pickles, so ``torch.jit.load`` is safe to
    use on them. The file's sha256 becomes the identity.
    """

    def __init__(self, path: str | os.PathLike[str], device: str | torch.device | None = "cpu") -> None:
        self._path = Path(path)
        self._device = resolve_device(device)
        if not self._path.is_file():
            raise WeightsError(
                f"TorchScript feature extractor {str(self._path)!r} does not exist; expected a file "
                "written by torch.jit.save"
            )
        self._sha256 = file_sha256(self._path)
        try:
            with warnings.catch_warnings():
                # TorchScript is deprecated in favour of torch.export, but it is the one format that
                # ships code without pickle; the warning is noise for our users.
                warnings.filterwarnings("ignore", category=FutureWarning, message=".*torch.jit")
                self._module = torch.jit.load(str(self._path), map_location=self._device)
        except Exception as exc:  # torch raises RuntimeError/ValueError/zip errors alike
            raise WeightsError(
                f"{str(self._path)!r} (sha256 {self._sha256}) is not a TorchScript archive "
                f"(torch.jit.load failed: {type(exc).__name__}); expected a file written by torch.jit.save"
            ) from exc
        self._module.eval()

    @property
    def name(self) -> str:
        return f"torchscript:{self._path.name}"

    @property
    def identity(self) -> str:
        return f"torchscript:sha256={self._sha256}"

    @property
    def sha256(self) -> str:
        return self._sha256

    @property
    def verified(self) -> bool:
        # A user network has no official hash; the protocol records its sha256 instead.
        return False

    @property
    def provides_logits(self) -> bool:
        return False

    @property
    def device(self) -> torch.device:
        return self._device

    @torch.no_grad()
    def features(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        _check_images(images)
        out = self._module(images.to(self._device))
        if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[0] != images.shape[0]:
            found = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise WeightsError(
                f"TorchScript feature extractor {str(self._path)!r} must return (N, D) features for "
                f"N={images.shape[0]} images, returned {found}"
            )
        return {"pool": out.float().cpu()}

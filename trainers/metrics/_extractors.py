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
from trainers.metrics._inception import (
    build_inception,
    onednn_fusion_available,
    optimize_for_cpu_inference,
    pack_for_onednn,
)
from trainers.metrics._micro_batches import MicroBatchRunner
from trainers.metrics._resize import resize_tf1_bilinear
from trainers.metrics._weights import WeightsInfo, load_inception_state_dict
from trainers.metrics.protocol import DEFAULT_RESIZE

__all__ = [
    "FeatureExtractor",
    "InceptionFeatureExtractor",
    "TorchScriptFeatureExtractor",
    "resolve_device",
]

INCEPTION_NAME = "inception-v3-compat"
INCEPTION_SIZE = 299
_FEATURES = ("2048", "logits_unbiased")
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

    @property
    def resize(self) -> str:
        """How images reach the network's input size, as the FID protocol records it."""
        ...

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
    channels-last activations and a cheaper bit-identical TF1 resize; on CPU (``onednn=None`` -> when
    available) every conv+ReLU additionally runs as one oneDNN call on a weight prepacked once.
    ``compile=True`` instead hands the fast forward to ``torch.compile`` (inductor, weight freezing):
    measured no faster than the eager oneDNN path on a 2-core CPU, and its first call compiles for
    ~1.5 minutes (~30 s when a later process finds inductor's on-disk cache); kept as an opt-in for
    other machines. ``fast=False`` calls torch-fidelity's own ``forward`` unchanged.
    Every path gives torch-fidelity's features to float32 rounding (~1e-6 relative; tested).
    ``"logits"`` are torch-fidelity's ``logits_unbiased`` (no fc bias), the layer its Inception Score
    uses.

    On the CPU the fast paths split every call into micro-batches of ``micro_batch`` images (default
    4, the fastest of 4/8/16 on the 2-core benchmark machine) and run them one per core (:class:`~trainers.metrics._micro_batches.MicroBatchRunner`: small
    batches stay in cache, and whole micro-batches on separate cores avoid a barrier per op); the
    caller's batch size then only bounds memory. ``micro_batch=0`` turns this off. On CUDA batches run
    whole. ``batch_size_hint`` is the batch size oneDNN tunes the packed weights for (any size works;
    it defaults to the micro-batch).
    """

    def __init__(
        self,
        weights: WeightsInfo,
        device: str | torch.device | None = "cpu",
        *,
        fast: bool = True,
        onednn: bool | None = None,
        compile: bool = False,  # noqa: A002 - mirrors torch.compile, the thing it switches on
        micro_batch: int = 4,
        batch_size_hint: int | None = None,
    ) -> None:
        self._weights = weights
        self._device = resolve_device(device)
        self._fast = fast or compile
        if micro_batch < 0:
            raise ValueError(f"micro_batch must be >= 0 (0 = off), got {micro_batch}")
        use_micro_batches = micro_batch > 0 and self._fast and self._device.type == "cpu"
        self._micro_batches = MicroBatchRunner(micro_batch) if use_micro_batches else None
        if batch_size_hint is None:
            batch_size_hint = micro_batch if use_micro_batches else 64
        state = load_inception_state_dict(weights)
        try:
            module = build_inception(state, _FEATURES)
        except RuntimeError as exc:  # missing/unexpected keys or wrong shapes
            raise WeightsError(
                f"{weights.path!r} (sha256 {weights.sha256}) is a state dict, but not of torch-fidelity's "
                f"Inception-v3 for FID: {str(exc).splitlines()[0]} ..."
            ) from exc
        if self._fast:
            module = optimize_for_cpu_inference(module)
        if onednn is None:
            onednn = self._fast and not compile and self._device.type == "cpu" and onednn_fusion_available()
        elif onednn and (compile or not fast or self._device.type != "cpu" or not onednn_fusion_available()):
            raise ValueError(
                "onednn=True needs the CPU device, a torch build with oneDNN, fast=True and compile=False; "
                f"got device {self._device}, oneDNN {onednn_fusion_available()}, fast={fast}, compile={compile}"
            )
        if onednn:
            module = pack_for_onednn(module, features=_FEATURES, trunk=_TRUNK, batch_size=batch_size_hint)
        self._onednn = bool(onednn)
        self._module: nn.Module = module.to(self._device)
        self._compiled = compile
        self._forward = self._fast_forward
        if compile:
            # freezing: inductor treats the (no-grad) weights as constants, folds them and prepacks
            # them for oneDNN; it is what makes compiled CNN inference fast on CPU.
            self._forward = torch.compile(self._fast_forward, options={"freezing": True})

    @property
    def variant(self) -> str:
        """Which forward runs: ``reference``, ``fast``, ``fast+onednn`` or ``fast+compile``."""
        if not self._fast:
            return "reference"
        if self._compiled:
            return "fast+compile"
        return "fast+onednn" if self._onednn else "fast"

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
    def resize(self) -> str:
        return DEFAULT_RESIZE

    @property
    def device(self) -> torch.device:
        return self._device

    @torch.no_grad()
    def features(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        _check_images(images)
        images = images.to(self._device, non_blocking=True)
        with _exact_cuda_math(self._device):
            if self._micro_batches is not None:
                pool, logits = self._micro_batches(self._forward, images)
            elif self._fast:
                pool, logits = self._forward(images)
            else:
                pool, logits = self._module(images)
        return {"pool": pool.float().cpu(), "logits": logits.float().cpu()}

    def _fast_forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        module = self._module
        x = resize_tf1_bilinear(images.to(torch.float32), INCEPTION_SIZE)
        x = (x - 128) / 128  # torch-fidelity's normalisation, same expression
        # NHWC from the first conv on: oneDNN's fast CPU kernels are channels-last, and the layout then
        # carries through every conv, pool and concat.
        x = x.contiguous(memory_format=torch.channels_last)
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
    def resize(self) -> str:
        # The images go in at the dataset's resolution; any resizing is the network's own.
        return "none"

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

"""Training images held in memory as one uint8 tensor, loaded from a built-in name or a path.

Every source ends in the same form — ``ImageData.images``: uint8, ``(N, C, R, R)``, C in {1, 3} —
so the training loop and the FID reference statistics never care where the images came from.
``ImageData.name`` is a canonical name of the source (``digits``, ``cifar10``, ``folder:/abs/path``,
``npz:/abs/path``) meant to be part of cache keys.

Specs accepted by :func:`load_dataset`:

* ``digits`` — scikit-learn's bundled 8x8 digits (1,797 images, no download), 1 channel.
* ``cifar10``, ``mnist``, ``fashion-mnist`` — torchvision datasets under ``root`` (default: env
  ``GANNAS_DATA_DIR``, else ``~/.cache/gannas/data``), downloaded by torchvision if ``download``.
* a folder of images (searched recursively; png, jpg, jpeg, bmp, webp), or ``folder:<path>``.
* an ``.npz`` file, or ``npz:<path>``: the array under key ``images``, or the file's only array.
  Layout NHWC, NCHW or NHW (grayscale); dtype uint8 in ``0..255`` or float in ``[0, 1]``.

Built-in names win over a relative path of the same name; write ``./digits`` or ``folder:digits``
for a folder called ``digits``. All images are center-cropped to a square and resized
(antialiased bilinear) to ``resolution``.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gannas.errors import DatasetError
from trainers.images import images_to_float

__all__ = [
    "IMAGE_EXTENSIONS",
    "ImageData",
    "builtin_dataset_names",
    "default_data_root",
    "images_to_float",
    "load_dataset",
    "native_resolution",
]

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".webp"})
"""File suffixes (lower-cased) picked up from an image folder; other files are ignored."""

_SINGLE_SPLIT = "train"
"""Sources without a train/test split (digits, folders, npz files) only answer to this split."""

# BT.601 luma weights, the same ones PIL uses for ``convert("L")``.
_LUMA = (0.299, 0.587, 0.114)

# Chunk size for resizing, so 50,000 CIFAR images never need one giant float copy.
_RESIZE_CHUNK = 4096


@dataclass(frozen=True, eq=False)
class ImageData:
    """Images in memory: ``images`` is uint8, ``(N, C, R, R)`` with C in {1, 3}.

    Compared by identity (``eq=False``): comparing image tensors element-wise is never intended.
    """

    images: torch.Tensor
    name: str
    split: str = _SINGLE_SPLIT

    @property
    def channels(self) -> int:
        return int(self.images.shape[1])

    @property
    def resolution(self) -> int:
        return int(self.images.shape[-1])

    def __len__(self) -> int:
        return int(self.images.shape[0])


def default_data_root() -> Path:
    """Where torchvision datasets live unless ``root`` is given: ``$GANNAS_DATA_DIR`` or
    ``~/.cache/gannas/data``."""
    env = os.environ.get("GANNAS_DATA_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "gannas" / "data"


def load_dataset(
    spec: str,
    *,
    resolution: int,
    channels: int | None = None,
    root: str | Path | None = None,
    download: bool = True,
    max_samples: int | None = None,
    split: str = "train",
) -> ImageData:
    """Load ``spec`` (see the module docstring) as uint8 ``(N, C, resolution, resolution)`` images.

    ``channels`` converts to 1 (BT.601 luminance) or 3 (gray repeated) channels; ``None`` keeps the
    native count (folders: 3 if any image is in colour, else 1). ``max_samples`` keeps the first
    ``max_samples`` images (folders: in sorted path order). ``split`` is ``train`` or ``test`` for
    the torchvision datasets; the other sources only have ``train``. Raises :class:`DatasetError`.
    """
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 1:
        raise DatasetError(f"resolution must be a positive integer, got {resolution!r}")
    if channels not in (None, 1, 3):
        raise DatasetError(f"channels must be 1, 3 or None (keep native), got {channels!r}")
    if max_samples is not None and (
        isinstance(max_samples, bool) or not isinstance(max_samples, int) or max_samples < 1
    ):
        raise DatasetError(f"max_samples must be a positive integer or None, got {max_samples!r}")

    kind, location = _resolve_spec(spec)
    if kind in _TORCHVISION:
        if split not in ("train", "test"):
            raise DatasetError(
                f"dataset {kind!r} has splits 'train' and 'test', got split {split!r}"
            )
        data_root = Path(root).expanduser() if root is not None else default_data_root()
        images = _load_torchvision(kind, data_root, download=download, split=split)
        name = kind
    else:
        if split != _SINGLE_SPLIT:
            raise DatasetError(
                f"dataset {spec!r} has a single split {_SINGLE_SPLIT!r}, got split {split!r}"
            )
        if location is None:  # "digits", the one built-in that torchvision does not provide
            images, name = _load_digits(), "digits"
        elif kind == "folder":
            images = _load_folder(location, resolution=resolution, max_samples=max_samples)
            name = f"folder:{location}"
        else:
            images, name = _load_npz(location), f"npz:{location}"

    if max_samples is not None:
        images = images[:max_samples]
    images = _resize_square(images, resolution)
    if channels is not None:
        images = _convert_channels(images, channels)
    return ImageData(images=images.contiguous(), name=name, split=split)


# --- spec resolution ---------------------------------------------------------------------------


def _resolve_spec(spec: str) -> tuple[str, Path | None]:
    """Return ``(kind, absolute path or None)`` where kind is a built-in name, folder or npz."""
    if not isinstance(spec, str) or not spec.strip():
        raise DatasetError(f"dataset spec must be a non-empty string, got {spec!r}")
    key = spec.strip()
    if key.lower() in _BUILTINS:
        return key.lower(), None

    prefix, sep, rest = key.partition(":")
    forced = prefix if sep and prefix in ("folder", "npz") else None
    path = Path(rest if forced else key).expanduser()
    if forced == "folder" and path.exists() and not path.is_dir():
        raise DatasetError(f"dataset {spec!r}: {str(path)!r} is not a folder of images")
    if forced == "npz" and path.is_dir():
        raise DatasetError(f"dataset {spec!r}: {str(path)!r} is a folder, not an .npz file")
    if path.is_dir():
        return "folder", path.resolve()
    if path.is_file():
        if forced != "npz" and path.suffix.lower() != ".npz":
            raise DatasetError(
                f"dataset file {str(path)!r} is not an .npz file: expected an .npz array file or a "
                f"folder of images (use 'npz:{path}' for an .npz file with another suffix)"
            )
        return "npz", path.resolve()
    raise DatasetError(
        f"unknown dataset {spec!r}: expected a built-in name "
        f"({', '.join(builtin_dataset_names())}), "
        f"a folder of images or an .npz file, but no such path exists"
    )


# --- built-in sources --------------------------------------------------------------------------


def _load_digits() -> torch.Tensor:
    from sklearn.datasets import load_digits

    # Pixel values are 0..16 (4-bit counts); scale them to the full uint8 range.
    raw = load_digits().images  # (1797, 8, 8) float64
    scaled = np.rint(raw * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)
    return torch.from_numpy(scaled).unsqueeze(1)


@dataclass(frozen=True)
class _TorchvisionSource:
    class_name: str
    expected_files: str  # where torchvision looks for the files, relative to the root


_TORCHVISION: dict[str, _TorchvisionSource] = {
    "cifar10": _TorchvisionSource("CIFAR10", "cifar-10-batches-py/"),
    "mnist": _TorchvisionSource("MNIST", "MNIST/raw/"),
    "fashion-mnist": _TorchvisionSource("FashionMNIST", "FashionMNIST/raw/"),
}

_BUILTINS: tuple[str, ...] = ("digits", *_TORCHVISION)


def builtin_dataset_names() -> list[str]:
    """Names :func:`load_dataset` accepts without a path."""
    return list(_BUILTINS)


def _load_torchvision(kind: str, root: Path, *, download: bool, split: str) -> torch.Tensor:
    import torchvision.datasets

    source = _TORCHVISION[kind]
    cls: Callable[..., Any] = getattr(torchvision.datasets, source.class_name)
    try:
        dataset = cls(root=str(root), train=split == "train", download=download)
    except (OSError, RuntimeError) as exc:
        # torchvision raises URLError (an OSError) or RuntimeError when offline, and RuntimeError
        # "Dataset not found" when the files are absent and download is off.
        detail = " ".join(str(exc).split())[:300]
        files = root / source.expected_files
        if download:
            problem = f"could not be downloaded into {str(root)!r} ({detail})"
            fix = f"place the torchvision files at {files} or allow network access"
        else:
            problem = f"is not in {str(root)!r} and download is off ({detail})"
            fix = f"place the torchvision files at {files} or allow downloading"
        raise DatasetError(f"dataset {kind!r} {problem}; {fix}") from exc
    return _array_to_nchw(dataset.data, origin=f"dataset {kind!r}")


def _array_to_nchw(data: Any, *, origin: str) -> torch.Tensor:
    """torchvision keeps MNIST as a (N, H, W) uint8 tensor and CIFAR as a (N, H, W, 3) array."""
    tensor = data if isinstance(data, torch.Tensor) else torch.from_numpy(np.asarray(data))
    if tensor.dtype != torch.uint8:
        raise DatasetError(f"{origin}: expected uint8 images, found dtype {tensor.dtype}")
    if tensor.ndim == 3:
        return tensor.unsqueeze(1)
    if tensor.ndim == 4 and tensor.shape[-1] in (1, 3):
        return tensor.permute(0, 3, 1, 2).contiguous()
    raise DatasetError(
        f"{origin}: expected images shaped (N, H, W) or (N, H, W, C), found {tuple(tensor.shape)}"
    )


# --- folder of images --------------------------------------------------------------------------

_GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})


def native_resolution(spec: str) -> int:
    """The side of the square a folder or .npz source is cropped to without resizing: the npz
    images' smaller side, or that of a folder's first image (in the order :func:`load_dataset`
    reads them). Raises :class:`DatasetError`, as :func:`load_dataset` does for the same source."""
    kind, location = _resolve_spec(spec)
    if location is not None and kind == "folder":
        return min(_read_image(_image_files(location)[0]).size)
    if location is not None and kind == "npz":
        return int(min(_load_npz(location).shape[-2:]))
    raise DatasetError(f"dataset {spec!r} has no native resolution; give one (--resolution)")


def _image_files(folder: Path) -> list[Path]:
    files = sorted(
        (p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()),
        key=lambda p: p.relative_to(folder).as_posix(),
    )
    if not files:
        raise DatasetError(
            f"image folder {str(folder)!r} contains no images: expected files ending in "
            f"{', '.join(sorted(IMAGE_EXTENSIONS))} (searched recursively)"
        )
    return files


def _read_image(path: Path) -> Any:
    """The decoded image at ``path`` as PIL ``L`` or ``RGB``."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.load()
            return img.convert("L" if img.mode in _GRAY_MODES else "RGB")
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as exc:
        raise DatasetError(
            f"cannot read image {str(path)!r}: {' '.join(str(exc).split())}; expected a "
            f"readable {'/'.join(sorted(e[1:] for e in IMAGE_EXTENSIONS))} file"
        ) from exc


def _load_folder(folder: Path, *, resolution: int, max_samples: int | None) -> torch.Tensor:
    from PIL import Image

    files = _image_files(folder)
    if max_samples is not None:
        files = files[:max_samples]

    # Each image is cropped and resized as soon as it is decoded, so a folder of large photos never
    # sits in memory at full size; colour is decided over the whole set at the end.
    arrays: list[np.ndarray] = []
    for path in files:
        converted = _read_image(path)
        square = _center_crop_pil(converted)
        if square.size != (resolution, resolution):
            # PIL's bilinear filter widens its support when shrinking, i.e. it is antialiased.
            square = square.resize((resolution, resolution), Image.Resampling.BILINEAR)
        array = np.asarray(square, dtype=np.uint8)
        arrays.append(array[:, :, None] if array.ndim == 2 else array)

    channels = 3 if any(a.shape[-1] == 3 for a in arrays) else 1
    stacked = np.stack([np.broadcast_to(a, (resolution, resolution, channels)) for a in arrays])
    return torch.from_numpy(stacked).permute(0, 3, 1, 2).contiguous()


def _center_crop_pil(img: Any) -> Any:
    width, height = img.size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    return img.crop((left, top, left + side, top + side))


# --- npz array ---------------------------------------------------------------------------------

_NPZ_EXPECTED = (
    "expected one array under key 'images' (or the only array in the file), shaped (N, H, W, C), "
    "(N, C, H, W) or (N, H, W) with C in {1, 3}, dtype uint8 in 0..255 or float in [0, 1]"
)


def _load_npz(path: Path) -> torch.Tensor:
    try:
        with path.open("rb") as handle:
            magic = handle.read(4)
    except OSError as exc:
        raise DatasetError(f"cannot read npz file {str(path)!r}: {exc.strerror or exc}") from exc
    if magic[:2] != b"PK":  # a zip: PK\x03\x04, or PK\x05\x06 when it holds no array
        # numpy takes any other file for a pickle and says so, which misleads about a text file.
        raise DatasetError(
            f"{str(path)!r} is not an npz archive (numpy.savez writes a zip file); {_NPZ_EXPECTED}"
        )
    try:
        with np.load(path, allow_pickle=False) as archive:
            keys = list(archive.keys())
            if "images" in keys:
                key = "images"
            elif len(keys) == 1:
                key = keys[0]
            else:
                raise DatasetError(
                    f"npz file {str(path)!r} has arrays {keys} but no 'images' key; {_NPZ_EXPECTED}"
                )
            array = archive[key]
    except DatasetError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        # ValueError also covers object arrays, which would need pickle; BadZipFile and EOFError
        # a zip cut short.
        raise DatasetError(
            f"cannot read npz file {str(path)!r}: {' '.join(str(exc).split())}; {_NPZ_EXPECTED}"
        ) from exc

    found = f"found shape {array.shape} dtype {array.dtype}"
    if array.ndim == 3:
        array = array[:, None]
    elif array.ndim == 4:
        if array.shape[-1] in (1, 3):
            array = np.moveaxis(array, -1, 1)  # NHWC (numpy/PIL convention) wins when ambiguous
        elif array.shape[1] not in (1, 3):
            raise DatasetError(f"npz file {str(path)!r}: {found}; {_NPZ_EXPECTED}")
    else:
        raise DatasetError(f"npz file {str(path)!r}: {found}; {_NPZ_EXPECTED}")
    if array.shape[0] == 0 or array.shape[2] == 0 or array.shape[3] == 0:
        raise DatasetError(f"npz file {str(path)!r} holds no images ({found}); {_NPZ_EXPECTED}")

    if array.dtype == np.uint8:
        pixels = array
    elif np.issubdtype(array.dtype, np.floating):
        finite = np.isfinite(array).all()
        if not finite or array.min() < 0.0 or array.max() > 1.0:
            low, high = (float(np.nanmin(array)), float(np.nanmax(array))) if finite else (0, 0)
            what = f"values in [{low:g}, {high:g}]" if finite else "non-finite values"
            raise DatasetError(f"npz file {str(path)!r}: {found} with {what}; {_NPZ_EXPECTED}")
        pixels = np.rint(array.astype(np.float64) * 255.0).astype(np.uint8)
    else:
        raise DatasetError(f"npz file {str(path)!r}: {found}; {_NPZ_EXPECTED}")
    return torch.from_numpy(np.ascontiguousarray(pixels))


# --- shared pixel operations -------------------------------------------------------------------


def _resize_square(images: torch.Tensor, resolution: int) -> torch.Tensor:
    """Center-crop uint8 ``(N, C, H, W)`` to a square and resize it to ``resolution`` (antialiased
    bilinear, rounded back to uint8)."""
    height, width = images.shape[-2:]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    images = images[:, :, top : top + side, left : left + side]
    if side == resolution:
        return images
    out = torch.empty((images.shape[0], images.shape[1], resolution, resolution), dtype=torch.uint8)
    for start in range(0, images.shape[0], _RESIZE_CHUNK):
        chunk = images[start : start + _RESIZE_CHUNK].float()
        resized = torch.nn.functional.interpolate(
            chunk,
            size=(resolution, resolution),
            mode="bilinear",
            align_corners=False,
            antialias=True,
        )
        out[start : start + _RESIZE_CHUNK] = resized.round_().clamp_(0, 255).to(torch.uint8)
    return out


def _convert_channels(images: torch.Tensor, channels: int) -> torch.Tensor:
    if images.shape[1] == channels:
        return images
    if channels == 3:
        return images.expand(-1, 3, -1, -1).contiguous()
    weights = torch.tensor(_LUMA, dtype=torch.float32).view(1, 3, 1, 1)
    luma = (images.float() * weights).sum(dim=1, keepdim=True)
    return luma.round_().clamp_(0, 255).to(torch.uint8)

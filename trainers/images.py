"""Conversions between training tensors in ``[-1, 1]`` and uint8 images, and PNG grids.

:func:`images_to_uint8` is the single float -> uint8 conversion of the project: generated images go
through it before FID feature extraction and before being written to disk, so every consumer sees
the same quantisation.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch

from gannas._files import make_dirs, mkstemp, remove_dirs

__all__ = ["images_to_float", "images_to_uint8", "save_image_grid"]


def images_to_uint8(x: torch.Tensor) -> torch.Tensor:
    """Map floats in ``[-1, 1]`` to uint8 in ``0..255``: ``round((x + 1) * 127.5)``, clamped.

    Values outside ``[-1, 1]`` are clamped; NaN maps to 0 (black) so the result is defined — callers
    that must detect non-finite generator output check it before converting.
    """
    x = torch.nan_to_num(x.detach().float(), nan=-1.0)
    return ((x + 1.0) * 127.5).round_().clamp_(0.0, 255.0).to(torch.uint8)


def images_to_float(images: torch.Tensor) -> torch.Tensor:
    """Map uint8 images in ``0..255`` to float32 training tensors in ``[-1, 1]`` (inverse of
    :func:`images_to_uint8` on uint8 inputs)."""
    if images.dtype != torch.uint8:
        raise TypeError(f"images_to_float expects a uint8 tensor, got dtype {images.dtype}")
    return images.float().div_(127.5).sub_(1.0)


def save_image_grid(images: torch.Tensor, path: str | Path, *, nrow: int | None = None) -> None:
    """Write ``images`` (``(N, C, H, W)`` in ``[-1, 1]``, C in {1, 3}) as one PNG grid, atomically.

    ``nrow`` is the number of images per row (default: ``ceil(sqrt(N))``, a near-square grid).
    The PNG is written to a temporary file in the same directory and renamed over ``path``, so a
    reader never sees a half-written file.
    """
    from PIL import Image
    from torchvision.utils import make_grid

    if images.ndim != 4 or images.shape[1] not in (1, 3) or images.shape[0] == 0:
        raise ValueError(
            f"save_image_grid expects a non-empty (N, C, H, W) tensor with C in {{1, 3}}, "
            f"got shape {tuple(images.shape)}"
        )
    n = images.shape[0]
    per_row = nrow if nrow is not None else math.ceil(math.sqrt(n))
    if per_row < 1:
        raise ValueError(f"nrow must be >= 1, got {nrow}")
    grid = make_grid(images_to_uint8(images.cpu()), nrow=per_row, padding=2, pad_value=0)
    array = grid.permute(1, 2, 0).contiguous().numpy()  # (H, W, 3); make_grid expands gray to RGB

    target = Path(path)
    created = make_dirs(target.parent)  # removed again if the write fails
    # The umask's mode, not mkstemp's owner-only 0600, once renamed into place.
    fd, tmp_name = mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            Image.fromarray(array).save(handle, format="PNG")
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        remove_dirs(created)
        raise

"""TF1-compatible bilinear resize, bit-identical to torch-fidelity's ``method="slow"``, computed cheaper.

torch-fidelity's ``interpolate_bilinear_2d_like_tensorflow1x`` (the resize the original TF FID code
applies before Inception) gathers four full-size (299x299) images and blends them. The blend is
separable: for output pixel (y, x)

    in_0 = in[ylo, xlo] + (in[ylo, xhi] - in[ylo, xlo]) * dx[x]      (same for in_1 with yhi)
    out  = in_0 + (in_1 - in_0) * dy[y]

and ``in_0`` only depends on the *input* row ``ylo[y]``. So we blend along x once per input row
(H_in x 299 instead of 299 x 299), then gather rows. Every output element goes through exactly the
same float operations on the same operands as in torch-fidelity, so the result is bit-identical
(tested), at about a third of the cost for 32x32 inputs.
"""

from __future__ import annotations

import torch

__all__ = ["resize_tf1_bilinear"]


def _grid(in_size: int, out_size: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    # Same arithmetic as torch-fidelity (align_corners=False, float32 input): scale = in / out.
    scale = in_size / out_size
    grid = torch.arange(0, out_size, 1, dtype=torch.float32, device=device)
    grid = grid * torch.tensor(scale, dtype=torch.float32)
    lo = grid.long()
    hi = (lo + 1).clamp_max(in_size - 1)
    frac = grid - lo.float()
    return lo, hi, frac


def resize_tf1_bilinear(images: torch.Tensor, size: int) -> torch.Tensor:
    """Resize float32 ``images`` (N, C, H, W) to (N, C, size, size) like TF1 ``resize_bilinear``."""
    if images.dtype != torch.float32 or images.dim() != 4:
        raise ValueError(f"expected a float32 (N, C, H, W) tensor, got {images.dtype} {tuple(images.shape)}")
    _, _, height, width = images.shape
    x_lo, x_hi, dx = _grid(width, size, images.device)
    y_lo, y_hi, dy = _grid(height, size, images.device)
    left = images[:, :, :, x_lo]
    rows = left + (images[:, :, :, x_hi] - left) * dx.view(1, 1, 1, size)
    top = rows[:, :, y_lo, :]
    return top + (rows[:, :, y_hi, :] - top) * dy.view(1, 1, size, 1)

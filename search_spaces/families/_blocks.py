"""Registries of layers and the blocks the model families are assembled from.

Every option a search space names (a normalisation, an activation, an up- or down-sampling layer,
spectral normalisation on or off, a convolution order) is looked up in one plain dict below; an
unknown name raises ``ValueError`` listing the known ones. Blocks receive their weighted-layer
constructors as a :class:`Layers` object chosen once per network (StudioGAN's
``g_conv2d = snconv2d if sn else conv2d``), so no block branches on option names.

This is the only module of the families that imports torch; the family modules import it inside
their builders so that reading the registry (parameter models, names) stays cheap.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm as _spectral_norm

__all__ = [
    "ACTIVATIONS",
    "CELL_ORDERS",
    "DOWNSAMPLERS",
    "INITS",
    "NORMS",
    "UPSAMPLERS",
    "UP_CONVS",
    "WEIGHT_WRAPPERS",
    "Cell",
    "DisBlock",
    "Discriminator",
    "Generator",
    "Layers",
    "OptimizedDisBlock",
    "SkipCellStack",
    "SumPool",
    "Upsampler",
    "down_stage",
    "init_norm_affine",
    "lookup",
    "make_activation",
    "make_downsample",
    "make_layers",
    "make_norm",
    "same_conv",
    "up_stage",
]

T = TypeVar("T")


def lookup(registry: Mapping[Any, T], name: object, *, kind: str) -> T:
    """``registry[name]``, or a ``ValueError`` naming the known entries."""
    try:
        return registry[name]
    except (KeyError, TypeError):  # TypeError: an unhashable name
        known = ", ".join(repr(key) for key in registry)
        raise ValueError(f"unknown {kind} {name!r}; expected one of {known}") from None


# --------------------------------------------------------------------------------------------------
# Normalisations and activations
# --------------------------------------------------------------------------------------------------


def _no_norm(channels: int) -> nn.Module:
    return nn.Identity()


NORMS: dict[str, Callable[[int], nn.Module]] = {
    "batch": nn.BatchNorm2d,
    # affine=True: without it instance norm would erase every per-channel scale and shift.
    "instance": partial(nn.InstanceNorm2d, affine=True),
    "none": _no_norm,
}
"""2d normalisations by name: ``channels -> module``."""

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "leaky_relu": partial(nn.LeakyReLU, 0.2),  # the slope of DCGAN and SNGAN
    "elu": nn.ELU,
    "silu": nn.SiLU,
}
"""Activations by name. None is in-place: residual blocks still need their input afterwards."""


def make_norm(name: str, channels: int) -> nn.Module:
    return lookup(NORMS, name, kind="normalisation")(channels)


def make_activation(name: str) -> nn.Module:
    return lookup(ACTIVATIONS, name, kind="activation")()


# --------------------------------------------------------------------------------------------------
# Weighted layers: initialisation and spectral normalisation, chosen once per network
# --------------------------------------------------------------------------------------------------

WeightedLayer = nn.Conv2d | nn.ConvTranspose2d | nn.Linear
InitFn = Callable[[WeightedLayer], None]
LayerFn = Callable[..., nn.Module]


def _init_dcgan_normal(layer: WeightedLayer) -> None:
    nn.init.normal_(layer.weight, 0.0, 0.02)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)


def _init_xavier_uniform(layer: WeightedLayer) -> None:
    nn.init.xavier_uniform_(layer.weight)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)


INITS: dict[str, InitFn] = {
    "dcgan_normal": _init_dcgan_normal,  # Radford et al. 2016: N(0, 0.02)
    "xavier_uniform": _init_xavier_uniform,  # SNGAN / AutoGAN
}
"""Initialisations of a convolution or linear layer's weight (bias set to zero)."""


def _no_wrap(layer: nn.Module) -> nn.Module:
    return layer


WEIGHT_WRAPPERS: dict[bool, Callable[[nn.Module], nn.Module]] = {
    True: _spectral_norm,
    False: _no_wrap,
}
"""``spectral_norm -> wrapper`` applied to every weighted layer of a network."""


@dataclass(frozen=True)
class Layers:
    """Constructors of a network's weighted layers, with the same arguments as torch's classes.

    Each constructor builds the torch layer, initialises it, then wraps it (spectral norm or not):
    initialising before wrapping keeps the spectral-norm power-iteration vectors consistent with
    the weight they normalise.
    """

    conv2d: LayerFn
    conv_transpose2d: LayerFn
    linear: LayerFn


def _weighted(
    cls: Callable[..., WeightedLayer], init: InitFn, wrap: Callable[[nn.Module], nn.Module]
) -> LayerFn:
    def construct(*args: Any, **kwargs: Any) -> nn.Module:
        layer = cls(*args, **kwargs)
        init(layer)
        return wrap(layer)

    return construct


def make_layers(*, spectral_norm: bool, init: str) -> Layers:
    """The layer constructors of one network: ``init`` is a key of :data:`INITS`."""
    init_fn = lookup(INITS, init, kind="initialisation")
    wrap = lookup(WEIGHT_WRAPPERS, spectral_norm, kind="spectral_norm setting")
    return Layers(
        conv2d=_weighted(nn.Conv2d, init_fn, wrap),
        conv_transpose2d=_weighted(nn.ConvTranspose2d, init_fn, wrap),
        linear=_weighted(nn.Linear, init_fn, wrap),
    )


def init_norm_affine(module: nn.Module, *, std: float = 0.02) -> None:
    """Initialise every affine normalisation in ``module`` to scale ~ N(1, std), shift 0 (DCGAN)."""
    for sub in module.modules():
        if isinstance(sub, nn.BatchNorm2d | nn.InstanceNorm2d) and sub.affine:
            nn.init.normal_(sub.weight, 1.0, std)
            nn.init.zeros_(sub.bias)


# --------------------------------------------------------------------------------------------------
# Resampling
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Upsampler:
    """An x2 upsampling that keeps the channel count.

    ``make(channels, layers)`` builds the layer; ``resize`` holds the ``F.interpolate`` keywords
    used to bring skip features from an earlier, smaller stage to the current size (a learned x2
    layer cannot do x4, so ``deconv`` resizes skips with nearest neighbour).
    """

    make: Callable[[int, Layers], nn.Module]
    resize: Mapping[str, Any]


def _interpolate_x2(mode: str, align_corners: bool | None) -> Callable[[int, Layers], nn.Module]:
    def make(channels: int, layers: Layers) -> nn.Module:
        return nn.Upsample(scale_factor=2, mode=mode, align_corners=align_corners)

    return make


def _deconv_x2(channels: int, layers: Layers) -> nn.Module:
    # AutoGAN's learned upsampling: a 2x2 transposed convolution, stride 2, exact x2.
    return layers.conv_transpose2d(channels, channels, kernel_size=2, stride=2)


UPSAMPLERS: dict[str, Upsampler] = {
    "nearest": Upsampler(_interpolate_x2("nearest", None), {"mode": "nearest"}),
    "bilinear": Upsampler(
        _interpolate_x2("bilinear", False), {"mode": "bilinear", "align_corners": False}
    ),
    "deconv": Upsampler(_deconv_x2, {"mode": "nearest"}),
}


def same_conv(
    in_channels: int, out_channels: int, kernel_size: int, layers: Layers, *, bias: bool = True
) -> nn.Module:
    """A stride-1 convolution whose output has its input's size, for odd and even kernels.

    An even kernel needs one more row/column of padding on one side than the other; Conv2d's own
    ``padding`` is symmetric, so the asymmetric part is an explicit ``ZeroPad2d``.
    """
    before = (kernel_size - 1) // 2
    after = kernel_size - 1 - before
    if before == after:
        return layers.conv2d(in_channels, out_channels, kernel_size, padding=before, bias=bias)
    return nn.Sequential(
        nn.ZeroPad2d((before, after, before, after)),
        layers.conv2d(in_channels, out_channels, kernel_size, padding=0, bias=bias),
    )


def _transposed_up_conv(
    in_channels: int, out_channels: int, kernel_size: int, layers: Layers
) -> nn.Module:
    # Output size (n - 1) * 2 - 2p + k + op == 2n  <=>  op = 2 + 2p - k; with p = (k - 1) // 2
    # that is op = k % 2, always 0 or 1 (< stride), so every kernel size gives an exact x2.
    return layers.conv_transpose2d(
        in_channels,
        out_channels,
        kernel_size,
        stride=2,
        padding=(kernel_size - 1) // 2,
        output_padding=kernel_size % 2,
    )


def _resize_up_conv(upsample: str) -> Callable[[int, int, int, Layers], nn.Module]:
    def make(in_channels: int, out_channels: int, kernel_size: int, layers: Layers) -> nn.Module:
        return nn.Sequential(
            UPSAMPLERS[upsample].make(in_channels, layers),
            same_conv(in_channels, out_channels, kernel_size, layers),
        )

    return make


UP_CONVS: dict[str, Callable[[int, int, int, Layers], nn.Module]] = {
    "deconv": _transposed_up_conv,
    "nearest": _resize_up_conv("nearest"),
    "bilinear": _resize_up_conv("bilinear"),
}
"""x2 upsampling convolutions ``(in_channels, out_channels, kernel_size, layers) -> module``."""


def _conv_stride_x2(channels: int, layers: Layers) -> nn.Module:
    return layers.conv2d(channels, channels, kernel_size=4, stride=2, padding=1)


def _avg_pool_x2(channels: int, layers: Layers) -> nn.Module:
    return nn.AvgPool2d(2)


def _max_pool_x2(channels: int, layers: Layers) -> nn.Module:
    return nn.MaxPool2d(2)


DOWNSAMPLERS: dict[str, Callable[[int, Layers], nn.Module]] = {
    "avg_pool": _avg_pool_x2,
    "max_pool": _max_pool_x2,
    "conv_stride": _conv_stride_x2,  # learned; spectral-normalised with the rest of D
}
"""/2 downsampling layers that keep the channel count: ``(channels, layers) -> module``."""


def make_downsample(name: str | None, channels: int, layers: Layers) -> nn.Module:
    """The downsampling layer ``name``, or the identity where a block keeps its size (``None``)."""
    if name is None:
        return nn.Identity()
    return lookup(DOWNSAMPLERS, name, kind="downsampling")(channels, layers)


# --------------------------------------------------------------------------------------------------
# DCGAN stages
# --------------------------------------------------------------------------------------------------


def up_stage(
    in_channels: int,
    out_channels: int,
    *,
    kernel_size: int,
    upsample: str,
    norm: str,
    activation: str,
    layers: Layers,
) -> nn.Sequential:
    """DCGAN generator stage: x2 upsampling convolution, normalisation, activation."""
    up_conv = lookup(UP_CONVS, upsample, kind="upsampling")
    return nn.Sequential(
        up_conv(in_channels, out_channels, kernel_size, layers),
        make_norm(norm, out_channels),
        make_activation(activation),
    )


def down_stage(
    in_channels: int, out_channels: int, *, activation: str, layers: Layers
) -> nn.Sequential:
    """DCGAN discriminator stage: 4x4 convolution with stride 2 (exact /2), activation."""
    return nn.Sequential(
        layers.conv2d(in_channels, out_channels, kernel_size=4, stride=2, padding=1),
        make_activation(activation),
    )


# --------------------------------------------------------------------------------------------------
# AutoGAN generator cell
# --------------------------------------------------------------------------------------------------

CellHalves = tuple[nn.Module, nn.Module]


def _pre_activation(
    in_channels: int,
    out_channels: int,
    *,
    norm: str,
    activation: str,
    upsample: Upsampler,
    layers: Layers,
) -> CellHalves:
    first = nn.Sequential(
        make_norm(norm, in_channels),
        make_activation(activation),
        upsample.make(in_channels, layers),
        layers.conv2d(in_channels, out_channels, 3, padding=1),
    )
    second = nn.Sequential(
        make_norm(norm, out_channels),
        make_activation(activation),
        layers.conv2d(out_channels, out_channels, 3, padding=1),
    )
    return first, second


def _post_activation(
    in_channels: int,
    out_channels: int,
    *,
    norm: str,
    activation: str,
    upsample: Upsampler,
    layers: Layers,
) -> CellHalves:
    first = nn.Sequential(
        upsample.make(in_channels, layers),
        layers.conv2d(in_channels, out_channels, 3, padding=1),
    )
    second = nn.Sequential(
        make_norm(norm, out_channels),
        make_activation(activation),
        layers.conv2d(out_channels, out_channels, 3, padding=1),
        make_norm(norm, out_channels),
        make_activation(activation),
    )
    return first, second


CELL_ORDERS: dict[str, Callable[..., CellHalves]] = {
    "pre": _pre_activation,  # norm-act-conv (He et al. 2016), AutoGAN's default
    "post": _post_activation,  # conv-norm-act
}
"""Convolution orders of a :class:`Cell`: build the halves before and after the skip inputs."""


class Cell(nn.Module):
    """AutoGAN's generator cell (Gong et al. 2019): x2 upsampling and two 3x3 convolutions.

    ``forward(x, skips)`` returns ``(skip_out, out)``: ``skip_out`` is the first convolution's
    output (at the new size), offered to later cells; ``out`` the cell's output. Each entry of
    ``skips`` (earlier cells' ``skip_out``, any smaller size) is resized to the current size with
    the upsampler's interpolation, mapped by its own 1x1 convolution and added after the first
    convolution. With ``shortcut`` the upsampled input, through a 1x1 convolution, is added to the
    output.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        order: str,
        norm: str,
        upsample: str,
        shortcut: bool,
        skip_channels: Sequence[int] = (),
        activation: str = "relu",
        layers: Layers,
    ) -> None:
        super().__init__()
        up = lookup(UPSAMPLERS, upsample, kind="upsampling")
        halves = lookup(CELL_ORDERS, order, kind="cell convolution order")
        self.first, self.second = halves(
            in_channels, out_channels, norm=norm, activation=activation, upsample=up, layers=layers
        )
        self.resize: dict[str, Any] = dict(up.resize)
        self.skip_in = nn.ModuleList(
            layers.conv2d(channels, out_channels, kernel_size=1) for channels in skip_channels
        )
        self.shortcut: nn.Module | None = (
            nn.Sequential(up.make(in_channels, layers), layers.conv2d(in_channels, out_channels, 1))
            if shortcut
            else None
        )

    def forward(
        self, x: torch.Tensor, skips: Sequence[torch.Tensor] = ()
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if len(skips) != len(self.skip_in):
            raise ValueError(f"this cell takes {len(self.skip_in)} skip input(s), got {len(skips)}")
        h = self.first(x)
        skip_out = h
        size = h.shape[-2:]
        for feature, op in zip(skips, self.skip_in, strict=True):
            h = h + op(F.interpolate(feature, size=size, **self.resize))
        out = self.second(h)
        if self.shortcut is not None:
            out = out + self.shortcut(x)
        return skip_out, out


class SkipCellStack(nn.Module):
    """Cells run in order; cell ``i`` receives the ``skip_out`` of the cells in ``skip_from[i]``."""

    def __init__(self, cells: Sequence[Cell], skip_from: Sequence[Sequence[int]]) -> None:
        super().__init__()
        if len(cells) != len(skip_from):
            raise ValueError(f"{len(cells)} cells but {len(skip_from)} skip-source lists")
        for index, sources in enumerate(skip_from):
            if any(not 0 <= source < index for source in sources):
                raise ValueError(
                    f"cell {index} can take skips only from earlier cells, got {list(sources)}"
                )
        self.cells = nn.ModuleList(cells)
        self.skip_from: tuple[tuple[int, ...], ...] = tuple(tuple(s) for s in skip_from)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip_outs: list[torch.Tensor] = []
        h = x
        for cell, sources in zip(self.cells, self.skip_from, strict=True):
            skip_out, h = cell(h, [skip_outs[source] for source in sources])
            skip_outs.append(skip_out)
        return h


# --------------------------------------------------------------------------------------------------
# Residual discriminator blocks (SNGAN, Miyato et al. 2018; AutoGAN's discriminator)
# --------------------------------------------------------------------------------------------------


class OptimizedDisBlock(nn.Module):
    """First residual block of D: no activation before its first convolution (the input is an
    image), and the shortcut downsamples before its 1x1 convolution (cheaper on the image)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        downsample: str | None,
        activation: str,
        layers: Layers,
    ) -> None:
        super().__init__()
        self.residual = nn.Sequential(
            layers.conv2d(in_channels, out_channels, 3, padding=1),
            make_activation(activation),
            layers.conv2d(out_channels, out_channels, 3, padding=1),
            make_downsample(downsample, out_channels, layers),
        )
        self.shortcut = nn.Sequential(
            make_downsample(downsample, in_channels, layers),
            layers.conv2d(in_channels, out_channels, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.residual(x) + self.shortcut(x)


class DisBlock(nn.Module):
    """Pre-activation residual block of D; the shortcut is learned only where the shape changes."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        downsample: str | None,
        activation: str,
        layers: Layers,
    ) -> None:
        super().__init__()
        self.residual = nn.Sequential(
            make_activation(activation),
            layers.conv2d(in_channels, out_channels, 3, padding=1),
            make_activation(activation),
            layers.conv2d(out_channels, out_channels, 3, padding=1),
            make_downsample(downsample, out_channels, layers),
        )
        learned = in_channels != out_channels or downsample is not None
        self.shortcut: nn.Module = (
            nn.Sequential(
                layers.conv2d(in_channels, out_channels, 1),
                make_downsample(downsample, out_channels, layers),
            )
            if learned
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.residual(x) + self.shortcut(x)


class SumPool(nn.Module):
    """Global sum pooling over height and width: ``(N, C, H, W) -> (N, C)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.sum(dim=(2, 3))


# --------------------------------------------------------------------------------------------------
# Network shells
# --------------------------------------------------------------------------------------------------


class Generator(nn.Module):
    """``z (N, latent_dim) -> head(body(stem(z)))``; the families choose the three parts."""

    def __init__(
        self, *, latent_dim: int, stem: nn.Module, body: nn.Module, head: nn.Module
    ) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.stem = stem
        self.body = body
        self.head = head

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.dim() != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(
                f"the generator takes latent codes of shape (N, {self.latent_dim}), "
                f"got {tuple(z.shape)}"
            )
        return self.head(self.body(self.stem(z)))


class Discriminator(nn.Module):
    """``x (N, C, R, R) -> head(body(x))`` flattened to ``(N,)`` raw scores."""

    def __init__(self, *, body: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.body = body
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x)).reshape(x.shape[0])

"""The AutoGAN family (Gong et al. 2019): AutoGAN's generator cell space and an SNGAN-style D.

Generator: ``z -> linear -> (width, b, b)`` with ``b = resolution / 8``, three :class:`Cell` s that
each upsample x2 (their convolution order, normalisation, upsampling and inner shortcut are
searched per cell), then batch norm, ReLU, a 3x3 convolution to the image channels and ``tanh``.
Cell 2 may take a skip input from cell 1, cell 3 from cells 1 and 2 (AutoGAN's cross-scale
``num_skip_in``): the earlier cell's first-convolution output is resized to the current size and
added through its own 1x1 convolution.

Discriminator: ``depth`` residual blocks of ``width`` channels (SNGAN's ``OptimizedDisBlock`` first,
then ``DisBlock`` s), activation, global sum pooling and a linear layer to one score.
Downsampling rule (:func:`downsampling_plan`): block ``k`` halves the feature map when
``k < depth - 1`` and the result is still at least 4x4; the last block never downsamples. So
every depth builds at every resolution >= 8: e.g. at 32 a depth-4 D runs 32 -> 16 -> 8 -> 4 -> 4,
at 16 a depth-5 D runs 16 -> 8 -> 4 -> 4 -> 4 -> 4.

Weights are Xavier-uniform with zero biases, normalisation scales N(1, 0.02), as in AutoGAN.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool

from search_spaces.families import Channels, Family

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

__all__ = [
    "AUTOGAN_FAMILY",
    "AutoGANDiscriminatorParams",
    "AutoGANGeneratorParams",
    "build_autogan_discriminator",
    "build_autogan_generator",
    "check_autogan_resolution",
    "downsampling_plan",
]

_PARAMS = ConfigDict(frozen=True, extra="forbid", strict=True, use_attribute_docstrings=True)

# Constraints (strictness included) live in the types, as in the dcgan family.
CellConv = Literal["pre", "post"]
CellNorm = Literal["none", "batch", "instance"]
CellUpsample = Literal["bilinear", "nearest", "deconv"]

_NUM_CELLS = 3
_MIN_D_SIZE = 4  # the discriminator never downsamples below 4x4


class AutoGANGeneratorParams(BaseModel):
    """Parameters of an AutoGAN generator; the defaults are AutoGAN's CIFAR-10 architecture."""

    model_config = _PARAMS

    latent_dim: Channels = 128
    """Size of the latent code z."""
    width: Channels = 256
    """Channels of every cell (AutoGAN's gf_dim)."""

    cell1_conv: CellConv = "pre"
    """pre: norm-activation-conv (pre-activation); post: conv-norm-activation."""
    cell1_norm: CellNorm = "none"
    cell1_upsample: CellUpsample = "nearest"
    cell1_shortcut: StrictBool = True
    """Add the upsampled input through a 1x1 convolution to the cell's output."""

    cell2_conv: CellConv = "pre"
    cell2_norm: CellNorm = "none"
    cell2_upsample: CellUpsample = "bilinear"
    cell2_shortcut: StrictBool = True
    cell2_skip_from1: StrictBool = True
    """Cell 2 takes cell 1's first-convolution output as a skip input."""

    cell3_conv: CellConv = "pre"
    cell3_norm: CellNorm = "none"
    cell3_upsample: CellUpsample = "nearest"
    cell3_shortcut: StrictBool = False
    cell3_skip_from1: StrictBool = True
    """Cell 3 takes cell 1's first-convolution output (upsampled x4) as a skip input."""
    cell3_skip_from2: StrictBool = True
    """Cell 3 takes cell 2's first-convolution output as a skip input."""

    def skip_from(self) -> tuple[tuple[int, ...], ...]:
        """For each cell (0-based), the earlier cells whose outputs it takes as skip inputs."""
        cell3 = [i for i, on in ((0, self.cell3_skip_from1), (1, self.cell3_skip_from2)) if on]
        return ((), (0,) if self.cell2_skip_from1 else (), tuple(cell3))


class AutoGANDiscriminatorParams(BaseModel):
    """Parameters of an AutoGAN (SNGAN-style residual) discriminator."""

    model_config = _PARAMS

    depth: Annotated[int, Field(strict=True, ge=2, le=5)] = 4
    """Number of residual blocks; the first depth - 1 downsample while the map stays >= 4x4."""
    width: Channels = 128
    """Channels of every block (AutoGAN's df_dim)."""
    downsample: Literal["avg_pool", "max_pool", "conv_stride"] = "avg_pool"
    """How a block halves its feature map (conv_stride: a learned 4x4 convolution, stride 2)."""
    spectral_norm: StrictBool = True
    """Spectral normalisation (Miyato et al. 2018) of every convolution and the linear layer."""
    activation: Literal["relu", "leaky_relu"] = "relu"


def downsampling_plan(depth: int, resolution: int) -> tuple[bool, ...]:
    """Whether each of a discriminator's ``depth`` blocks halves its input (module docstring)."""
    plan: list[bool] = []
    size = resolution
    for block in range(depth):
        halves = block < depth - 1 and size // 2 >= _MIN_D_SIZE
        plan.append(halves)
        size = size // 2 if halves else size
    return tuple(plan)


def _generator_problem(resolution: int) -> str | None:
    if resolution >= 16 and resolution % 8 == 0:
        return None
    return (
        "autogan generator needs a resolution that is a multiple of 8 and at least 16 (three x2 "
        f"cells grow it from a resolution/8 square of at least 2x2), got resolution {resolution}"
    )


def _discriminator_problem(resolution: int) -> str | None:
    if resolution >= _MIN_D_SIZE:
        return None
    return f"autogan discriminator needs a resolution >= {_MIN_D_SIZE}, got {resolution}"


def _check_channels(channels: int) -> None:
    if channels < 1:
        raise ValueError(f"image channels must be >= 1, got {channels}")


def check_autogan_resolution(params_g: BaseModel, params_d: BaseModel, resolution: int) -> None:
    """Raise ``ValueError`` when G or D cannot be built at ``resolution``."""
    AutoGANGeneratorParams.model_validate(params_g)
    AutoGANDiscriminatorParams.model_validate(params_d)
    problems = [
        p for p in (_generator_problem(resolution), _discriminator_problem(resolution)) if p
    ]
    if problems:
        raise ValueError("; ".join(problems))


def build_autogan_generator(params: BaseModel, resolution: int, channels: int) -> nn.Module:
    """An AutoGAN generator: ``z (N, latent_dim) -> images (N, channels, R, R)``."""
    p = AutoGANGeneratorParams.model_validate(params)
    problem = _generator_problem(resolution)
    if problem:
        raise ValueError(problem)
    _check_channels(channels)

    from torch import nn

    from search_spaces.families import _blocks as B

    layers = B.make_layers(spectral_norm=False, init="xavier_uniform")
    bottom = resolution // 8
    stem = nn.Sequential(
        layers.linear(p.latent_dim, p.width * bottom * bottom),
        nn.Unflatten(1, (p.width, bottom, bottom)),
    )
    skip_from = p.skip_from()
    cells = [
        B.Cell(
            p.width,
            p.width,
            # The per-cell fields are named cell{i}_<option>; read them by that pattern.
            order=getattr(p, f"cell{i + 1}_conv"),
            norm=getattr(p, f"cell{i + 1}_norm"),
            upsample=getattr(p, f"cell{i + 1}_upsample"),
            shortcut=getattr(p, f"cell{i + 1}_shortcut"),
            skip_channels=[p.width] * len(skip_from[i]),
            layers=layers,
        )
        for i in range(_NUM_CELLS)
    ]
    head = nn.Sequential(
        nn.BatchNorm2d(p.width),
        nn.ReLU(),
        B.same_conv(p.width, channels, 3, layers),
        nn.Tanh(),
    )
    generator = B.Generator(
        latent_dim=p.latent_dim, stem=stem, body=B.SkipCellStack(cells, skip_from), head=head
    )
    B.init_norm_affine(generator, std=0.02)
    return generator


def build_autogan_discriminator(params: BaseModel, resolution: int, channels: int) -> nn.Module:
    """A residual discriminator: ``images (N, channels, resolution, resolution) -> scores (N,)``."""
    p = AutoGANDiscriminatorParams.model_validate(params)
    problem = _discriminator_problem(resolution)
    if problem:
        raise ValueError(problem)
    _check_channels(channels)

    from torch import nn

    from search_spaces.families import _blocks as B

    layers = B.make_layers(spectral_norm=p.spectral_norm, init="xavier_uniform")
    plan = downsampling_plan(p.depth, resolution)
    blocks: list[nn.Module] = [
        B.OptimizedDisBlock(
            channels,
            p.width,
            downsample=p.downsample if plan[0] else None,
            activation=p.activation,
            layers=layers,
        )
    ]
    blocks += [
        B.DisBlock(
            p.width,
            p.width,
            downsample=p.downsample if halves else None,
            activation=p.activation,
            layers=layers,
        )
        for halves in plan[1:]
    ]
    head = nn.Sequential(B.make_activation(p.activation), B.SumPool(), layers.linear(p.width, 1))
    return B.Discriminator(body=nn.Sequential(*blocks), head=head)


AUTOGAN_FAMILY = Family(
    name="autogan",
    description=(
        "AutoGAN (Gong et al. 2019): a generator of three upsampling cells with searchable "
        "convolution order, normalisation, upsampling, shortcuts and cross-cell skips, and an "
        "SNGAN-style residual discriminator"
    ),
    generator_params=AutoGANGeneratorParams,
    discriminator_params=AutoGANDiscriminatorParams,
    build_generator=build_autogan_generator,
    build_discriminator=build_autogan_discriminator,
    check_resolution=check_autogan_resolution,
)

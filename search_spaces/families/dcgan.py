"""The DCGAN family (Radford et al. 2016): convolutional G and D of searchable depth and width.

Generator: ``z -> linear -> (2 * C0, s, s)`` with ``s = resolution / 2**depth``, then ``depth``
stages of (x2 upsampling convolution, normalisation, activation) whose widths halve down to
``base_width``, then a 3x3 convolution to the image channels and ``tanh``. The stem has no
normalisation: at ``s = 1`` instance normalisation is undefined, and the first stage normalises
right after its convolution anyway.

Discriminator: ``depth`` stages of (4x4 convolution with stride 2, activation) whose widths double
from ``width``, then a linear layer on the flattened ``resolution / 2**depth`` square. It has no
batch normalisation (its statistics would couple real and fake batches, and conflict with the
gradient penalty of ``wgan_gp``); ``spectral_norm`` is the searchable regulariser instead.

Weights are initialised N(0, 0.02), normalisation scales N(1, 0.02), biases 0, as in DCGAN.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool

from search_spaces.families import Channels, Family

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

__all__ = [
    "DCGAN_FAMILY",
    "DCGANDiscriminatorParams",
    "DCGANGeneratorParams",
    "build_dcgan_discriminator",
    "build_dcgan_generator",
    "check_dcgan_resolution",
]

_PARAMS = ConfigDict(frozen=True, extra="forbid", strict=True, use_attribute_docstrings=True)

# Constraints (strictness included) live in the types, so a TypeAdapter of one field's
# FieldInfo.rebuild_annotation() rejects what the model rejects: no "3" or True for an int.
Depth = Annotated[int, Field(strict=True, ge=1, le=5)]


class DCGANGeneratorParams(BaseModel):
    """Parameters of a DCGAN generator."""

    model_config = _PARAMS

    latent_dim: Channels = 100
    """Size of the latent code z."""
    depth: Depth = 3
    """Number of x2 upsampling stages; the stem starts from a resolution / 2**depth square."""
    base_width: Channels = 64
    """Channels of the last stage; stage i (from the input) has base_width * 2**(depth - 1 - i)."""
    kernel_size: Literal[3, 4, 5] = 4
    """Kernel size of the upsampling convolutions."""
    norm: Literal["batch", "instance", "none"] = "batch"
    """Normalisation after each upsampling convolution."""
    activation: Literal["relu", "leaky_relu", "elu", "silu"] = "relu"
    """Activation after the stem and after each stage's normalisation."""
    upsample: Literal["deconv", "nearest", "bilinear"] = "deconv"
    """deconv: transposed convolution, stride 2; nearest/bilinear: resize x2, then convolution."""


class DCGANDiscriminatorParams(BaseModel):
    """Parameters of a DCGAN discriminator."""

    model_config = _PARAMS

    depth: Depth = 3
    """Number of stride-2 convolution stages."""
    width: Channels = 64
    """Channels of the first stage; they double at each later stage."""
    spectral_norm: StrictBool = False
    """Spectral normalisation (Miyato et al. 2018) of every convolution and the linear layer."""
    activation: Literal["leaky_relu", "relu", "elu", "silu"] = "leaky_relu"
    """Activation after each convolution."""


def _max_depth(resolution: int) -> int:
    """The largest d such that 2**d divides ``resolution`` (its number of trailing zero bits)."""
    return (resolution & -resolution).bit_length() - 1


def _depth_problem(role: str, depth: int, resolution: int, why: str) -> str | None:
    if resolution >= 1 and resolution % 2**depth == 0:
        return None
    allowed = f"depth <= {_max_depth(resolution)}" if resolution >= 1 else "a positive resolution"
    return (
        f"dcgan {role} depth {depth} needs a resolution divisible by 2**{depth} = {2**depth} "
        f"({why}), got resolution {resolution}; at this resolution use {allowed}"
    )


def _generator_problem(params: DCGANGeneratorParams, resolution: int) -> str | None:
    return _depth_problem(
        "generator", params.depth, resolution, "it grows an image from a resolution/2**depth square"
    )


def _discriminator_problem(params: DCGANDiscriminatorParams, resolution: int) -> str | None:
    return _depth_problem(
        "discriminator", params.depth, resolution, "each of its stages halves the image exactly"
    )


def _check_channels(channels: int) -> None:
    if channels < 1:
        raise ValueError(f"image channels must be >= 1, got {channels}")


def check_dcgan_resolution(params_g: BaseModel, params_d: BaseModel, resolution: int) -> None:
    """Raise ``ValueError`` naming every part of G and D that cannot be built at ``resolution``."""
    g = DCGANGeneratorParams.model_validate(params_g)
    d = DCGANDiscriminatorParams.model_validate(params_d)
    problems = [
        p for p in (_generator_problem(g, resolution), _discriminator_problem(d, resolution)) if p
    ]
    if problems:
        raise ValueError("; ".join(problems))


def build_dcgan_generator(params: BaseModel, resolution: int, channels: int) -> nn.Module:
    """A DCGAN generator: ``z (N, latent_dim) -> images (N, channels, resolution, resolution)``."""
    p = DCGANGeneratorParams.model_validate(params)
    problem = _generator_problem(p, resolution)
    if problem:
        raise ValueError(problem)
    _check_channels(channels)

    from torch import nn

    from search_spaces.families import _blocks as B

    layers = B.make_layers(spectral_norm=False, init="dcgan_normal")
    start = resolution // 2**p.depth
    widths = [p.base_width * 2 ** (p.depth - 1 - i) for i in range(p.depth)]
    stem_width = 2 * widths[0]
    stem = nn.Sequential(
        layers.linear(p.latent_dim, stem_width * start * start),
        nn.Unflatten(1, (stem_width, start, start)),
        B.make_activation(p.activation),
    )
    body = nn.Sequential(
        *(
            B.up_stage(
                c_in,
                c_out,
                kernel_size=p.kernel_size,
                upsample=p.upsample,
                norm=p.norm,
                activation=p.activation,
                layers=layers,
            )
            for c_in, c_out in zip([stem_width, *widths], widths, strict=False)
        )
    )
    head = nn.Sequential(B.same_conv(widths[-1], channels, 3, layers), nn.Tanh())
    generator = B.Generator(latent_dim=p.latent_dim, stem=stem, body=body, head=head)
    B.init_norm_affine(generator, std=0.02)
    return generator


def build_dcgan_discriminator(params: BaseModel, resolution: int, channels: int) -> nn.Module:
    """A DCGAN discriminator: ``images (N, channels, resolution, resolution) -> scores (N,)``."""
    p = DCGANDiscriminatorParams.model_validate(params)
    problem = _discriminator_problem(p, resolution)
    if problem:
        raise ValueError(problem)
    _check_channels(channels)

    from torch import nn

    from search_spaces.families import _blocks as B

    layers = B.make_layers(spectral_norm=p.spectral_norm, init="dcgan_normal")
    widths = [p.width * 2**i for i in range(p.depth)]
    end = resolution // 2**p.depth
    body = nn.Sequential(
        *(
            B.down_stage(c_in, c_out, activation=p.activation, layers=layers)
            for c_in, c_out in zip([channels, *widths], widths, strict=False)
        )
    )
    head = nn.Sequential(nn.Flatten(), layers.linear(widths[-1] * end * end, 1))
    return B.Discriminator(body=body, head=head)


DCGAN_FAMILY = Family(
    name="dcgan",
    description=(
        "DCGAN (Radford et al. 2016): a convolutional generator of x2 upsampling stages and a "
        "strided-convolution discriminator, with searchable depth, width, kernel, normalisation, "
        "activation, upsampling and spectral norm"
    ),
    generator_params=DCGANGeneratorParams,
    discriminator_params=DCGANDiscriminatorParams,
    build_generator=build_dcgan_generator,
    build_discriminator=build_dcgan_discriminator,
    check_resolution=check_dcgan_resolution,
)

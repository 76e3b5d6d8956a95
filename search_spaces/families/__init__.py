"""Registry of model families: each names its parameter models and its two pure builders.

A family is registered explicitly with :func:`register_family`; the built-ins are registered in one
block at the bottom, so the registry is a plain dict that can be read without importing torch
models until a builder runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

from pydantic import BaseModel, Field

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

MAX_CHANNELS = 4096
"""Largest width (channels) or latent size a family accepts. BigGAN's widest layer at 512x512
has 1,536 channels; a value beyond this is a typo (a width of 10**23 validated, then failed every
trial with an out-of-memory error), refused when the space is validated."""

Channels = Annotated[int, Field(strict=True, ge=1, le=MAX_CHANNELS)]
"""A layer's width or the latent size: a positive integer up to :data:`MAX_CHANNELS`."""


@dataclass(frozen=True)
class Family:
    """A model family: the parameters of G and D, and how to build each from them.

    ``generator_params`` / ``discriminator_params`` are frozen pydantic models with
    ``extra="forbid"`` and a default for every field; the keys of a space file's ``generator:`` and
    ``discriminator:`` sections must be their field names.
    ``build_generator(params, resolution, channels)`` and ``build_discriminator(...)`` are pure.
    ``check_resolution(params_g, params_d, resolution)`` raises ``ValueError`` with a clear message
    when the combination cannot be built.
    """

    name: str
    description: str
    generator_params: type[BaseModel]
    discriminator_params: type[BaseModel]
    build_generator: Callable[[BaseModel, int, int], "nn.Module"]
    build_discriminator: Callable[[BaseModel, int, int], "nn.Module"]
    check_resolution: Callable[[BaseModel, BaseModel, int], None]


FAMILIES: dict[str, Family] = {}


def register_family(family: Family) -> None:
    if not family.name.isidentifier():
        raise ValueError(f"family name must be an identifier, got {family.name!r}")
    if family.name in FAMILIES:
        raise ValueError(f"family {family.name!r} is already registered")
    FAMILIES[family.name] = family


# Built-in families, registered in one block.
from search_spaces.families.dcgan import DCGAN_FAMILY  # noqa: E402
from search_spaces.families.autogan import AUTOGAN_FAMILY  # noqa: E402

register_family(DCGAN_FAMILY)
register_family(AUTOGAN_FAMILY)

"""Fixtures for the search-space tests: a small registered family and a file writer."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field, model_validator

from search_spaces.families import FAMILIES, Family

_STRICT = ConfigDict(frozen=True, extra="forbid", strict=True)


class ToyGeneratorParams(BaseModel):
    model_config = _STRICT

    latent_dim: Annotated[int, Field(ge=1)] = 8
    depth: Annotated[int, Field(ge=1, le=4)] = 2
    width: Annotated[int, Field(ge=1)] = 16
    kernel: Literal[3, 5] = 3
    norm: Literal["batch", "none"] = "batch"
    activation: Literal["relu", "elu"] = "relu"
    dropout: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0
    skip: bool = False

    @model_validator(mode="after")
    def _batch_norm_depth(self) -> ToyGeneratorParams:
        # A cross-field rule only the whole model can check (sample_config must report it).
        if self.norm == "batch" and self.depth > 3:
            raise ValueError(f"batch norm needs depth <= 3, got depth {self.depth}")
        return self


class ToyDiscriminatorParams(BaseModel):
    model_config = _STRICT

    width: Annotated[int, Field(ge=1)] = 16
    spectral_norm: bool = False
    activation: Literal["relu", "leaky_relu"] = "leaky_relu"


def _check_resolution(params_g: BaseModel, params_d: BaseModel, resolution: int) -> None:
    depth = ToyGeneratorParams.model_validate(params_g).depth
    if resolution % 2**depth:
        raise ValueError(f"toy depth {depth} needs a resolution divisible by {2**depth}")


def _no_builder(params: BaseModel, resolution: int, channels: int) -> Any:
    raise NotImplementedError("the toy family is for schema and sampling tests only")


TOY_FAMILY = Family(
    name="toy",
    description="a small family for tests",
    generator_params=ToyGeneratorParams,
    discriminator_params=ToyDiscriminatorParams,
    build_generator=_no_builder,
    build_discriminator=_no_builder,
    check_resolution=_check_resolution,
)

TOY_SPACE = """\
name: toy
description: a toy space
family: toy
generator:
  latent_dim: 8
  depth: {type: int, low: 1, high: 3}
  width: {type: int, low: 8, high: 32, step: 8}
  norm: {type: categorical, choices: [batch, none]}
  activation: {type: categorical, choices: [relu, elu]}
  dropout: {type: float, low: 0.0, high: 0.5, step: 0.25}
  skip: {type: fixed, value: true, when: {norm: none}}
discriminator:
  width: {type: int, low: 4, high: 64, log: true}
  spectral_norm: {type: categorical, choices: [true, false], when: {generator.norm: batch}}
training:
  loss: {type: categorical, choices: [hinge, wgan_gp]}
  lr_g: {type: float, low: 1e-5, high: 1e-3, log: true}
  beta1: {type: float, low: 0.0, high: 0.5}
  gp_weight: {type: float, low: 1.0, high: 20.0, log: true, when: {loss: wgan_gp}}
"""


@pytest.fixture
def toy_family() -> Iterator[Family]:
    """The toy family registered in FAMILIES for the test; the registry is restored afterwards."""
    saved = dict(FAMILIES)
    FAMILIES["toy"] = TOY_FAMILY
    try:
        yield TOY_FAMILY
    finally:
        FAMILIES.clear()
        FAMILIES.update(saved)


@pytest.fixture
def toy_text(toy_family: Family) -> str:
    return TOY_SPACE


@pytest.fixture
def write_yaml(tmp_path: Path) -> Callable[..., Path]:
    def write(text: str | bytes, name: str = "space.yaml") -> Path:
        path = tmp_path / name
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text, encoding="utf-8")
        return path

    return write

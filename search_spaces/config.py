"""The sampled configuration of one trial: what to build and how to train it.

An :class:`ArchConfig` is plain data (JSON round-trip) and is stored with every trial, so any trial's
models can be rebuilt exactly with :func:`search_spaces.build_generator`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt, ValidationError


class TrainingConfig(BaseModel):
    """Training hyperparameters; searchable in the ``training:`` section of a space file."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    loss: Literal["bce", "hinge", "wgan_gp"] = "hinge"
    lr_g: PositiveFloat = 2e-4
    lr_d: PositiveFloat = 2e-4
    beta1: float = Field(0.0, ge=0.0, lt=1.0)
    beta2: float = Field(0.9, ge=0.0, lt=1.0)
    d_steps: PositiveInt = 1
    """Discriminator updates per generator update."""
    batch_size: PositiveInt = 64
    gp_weight: float = Field(10.0, ge=0.0)
    """Gradient-penalty weight; used by ``wgan_gp`` only."""
    ema_decay: float | None = Field(None, gt=0.0, lt=1.0)
    """Decay of an exponential moving average of G's weights; ``None`` evaluates G itself."""


class ArchConfig(BaseModel):
    """One sampled generator/discriminator pair plus its training hyperparameters."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    family: str
    resolution: PositiveInt
    channels: Literal[1, 3]
    generator: dict[str, Any]
    discriminator: dict[str, Any]
    training: TrainingConfig = TrainingConfig()

    def to_json_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def first_problem(error: ValidationError) -> str:
    """``where: what (n error(s))`` for the first problem of an :class:`ArchConfig` validation,
    as messages about a stored or given architecture quote it."""
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "<root>"
    return f"{where}: {first['msg']} ({error.error_count()} error(s))"

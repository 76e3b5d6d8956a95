"""The FID protocol: everything that must match for two FID numbers to be comparable."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["FIDProtocol", "DEFAULT_RESIZE", "PROTOCOL_VERSION"]

DEFAULT_RESIZE = "tf1-bilinear-299"
# Bump when anything that changes the numbers changes (stat definitions, image conversion, ...).
PROTOCOL_VERSION = 1


@dataclass(frozen=True)
class FIDProtocol:
    """How an FID was measured; each trial records ``to_dict()`` so a study never mixes protocols."""

    feature_extractor: str
    weights_sha256: str
    weights_verified: bool
    num_real: int
    num_fake: int
    resolution: int
    dataset: str
    split: str
    metrics: tuple[str, ...]
    kid_subset_size: int | None
    kid_subsets: int | None = None
    resize: str = DEFAULT_RESIZE
    version: int = PROTOCOL_VERSION

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (tuples become lists)."""
        out = asdict(self)
        out["metrics"] = list(self.metrics)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FIDProtocol:
        values = dict(data)
        values["metrics"] = tuple(values.get("metrics", ()))
        return cls(**values)

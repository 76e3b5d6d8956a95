"""gannas: neural architecture search for GANs.

The public entry points for other programs. Heavy imports (torch) happen on first use, so
``import gannas`` and ``gannas --help`` stay instant.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gannas.errors import GannasError

__version__ = "0.1.0"
__all__ = ["GannasError", "__version__", "load_generator"]

if TYPE_CHECKING:  # pragma: no cover
    from storage.checkpoints import load_generator


def __getattr__(name: str) -> Any:
    if name == "load_generator":
        from storage.checkpoints import load_generator

        return load_generator
    raise AttributeError(f"module 'gannas' has no attribute {name!r}")

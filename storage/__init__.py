"""Study database (Optuna RDB on SQLite/PostgreSQL) and exported generator checkpoints.

Submodules are imported on first attribute access, so ``import storage`` does not pull in
SQLAlchemy, Optuna or torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from storage.checkpoints import load_generator, read_metadata, save_generator
    from storage.database import check_reachable, open_storage
    from storage.retry import call_with_retries
    from storage.urls import is_local_only, redact_url, resolve_storage_url, storage_kind

__all__ = [
    "call_with_retries",
    "check_reachable",
    "is_local_only",
    "load_generator",
    "open_storage",
    "read_metadata",
    "redact_url",
    "resolve_storage_url",
    "save_generator",
    "storage_kind",
]

_HOMES = {
    "resolve_storage_url": "storage.urls",
    "redact_url": "storage.urls",
    "storage_kind": "storage.urls",
    "is_local_only": "storage.urls",
    "open_storage": "storage.database",
    "check_reachable": "storage.database",
    "call_with_retries": "storage.retry",
    "save_generator": "storage.checkpoints",
    "load_generator": "storage.checkpoints",
    "read_metadata": "storage.checkpoints",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'storage' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # cache: later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))

"""Access to Optuna's RDBStorage internals for writing several rows of a trial in one transaction.

Optuna commits every ``set_trial_param`` / ``set_trial_user_attr`` on its own (~5 ms each on SQLite
with fsync). The controller's dispatch and the worker's results write many rows at once, so they
use the storage's own per-row helpers inside one of its sessions. Those helpers are private to
Optuna: :func:`rdb_backend` checks they exist and callers fall back to one call per value when not.
"""

from __future__ import annotations

from typing import Any

import optuna

__all__ = ["rdb_backend"]

_HELPERS = ("_set_trial_attr_without_commit", "check_trial_is_updatable", "scoped_session")


def rdb_backend(storage: Any) -> optuna.storages.RDBStorage | None:
    """The ``RDBStorage`` under ``storage`` (through Optuna's cache wrapper), or ``None`` when it is
    another storage or an Optuna without the per-row helpers."""
    rdb = storage
    while not isinstance(rdb, optuna.storages.RDBStorage) and hasattr(rdb, "_backend"):
        rdb = rdb._backend
    if isinstance(rdb, optuna.storages.RDBStorage) and all(hasattr(rdb, h) for h in _HELPERS):
        return rdb
    return None

"""The one exception type the CLI turns into a clean one-line error."""

from __future__ import annotations


class GannasError(Exception):
    """A user-facing error: its message says what was wrong, and where possible how to fix it.

    The CLI prints ``error: <message>`` and exits with :attr:`exit_code`; it never shows a traceback
    for this type. Raise it (or a subclass) for bad input, never ``assert``.
    """

    exit_code: int = 2


class SpaceError(GannasError):
    """A search-space file or search-space value is invalid."""


class DatasetError(GannasError):
    """A dataset name or path cannot be loaded."""


class WeightsError(GannasError):
    """Feature-network weights are missing, corrupt or unverified."""


class StorageError(GannasError):
    """The study database or artifact store cannot be used as asked."""


class CheckpointError(GannasError):
    """An exported checkpoint directory is missing, corrupt or unsafe."""

"""Retry calls that fail because the database is briefly unreachable.

A restarting PostgreSQL server, a failover or a dropped connection surfaces as a SQLAlchemy
``OperationalError``/``InterfaceError`` (Optuna wraps some of them in ``StorageInternalError``).
Those are worth retrying with exponential backoff; anything else (bad data, integrity errors,
programming errors) is raised at once.

Retrying a write is only safe when the write is idempotent or was not committed; Optuna's
``tell``/``report``/``set_user_attr`` are, ``create_new_trial`` may create a second trial if the
connection dropped after its commit.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import Any, TypeVar

from gannas.errors import StorageError
from storage.urls import redact_text

__all__ = ["DEFAULT_RETRY_ON", "call_with_retries", "caused_by"]

T = TypeVar("T")

logger = logging.getLogger(__name__)


def _default_retry_on() -> tuple[type[BaseException], ...]:
    import sqlalchemy.exc

    return (
        sqlalchemy.exc.OperationalError,
        sqlalchemy.exc.InterfaceError,
        sqlalchemy.exc.DisconnectionError,
        sqlalchemy.exc.TimeoutError,  # connection-pool checkout timeout
        ConnectionError,
    )


DEFAULT_RETRY_ON: tuple[type[BaseException], ...] | None = None
"""``None`` means the transient SQLAlchemy errors above (resolved lazily to keep imports light)."""


def caused_by(exc: BaseException | None, types: tuple[type[BaseException], ...]) -> bool:
    """Whether ``exc`` or an exception it was raised from is one of ``types``.

    Follows explicit chaining (``raise X from e``, as Optuna does); Ray's ``cause`` (a task's
    error re-raised by ``ray.get``, whose ``isinstance`` already matches the original type but
    whose chain continues there); and the error that broke the transaction behind a
    ``PendingRollbackError``: Optuna's ``_get_trials`` takes a dropped connection's
    ``OperationalError`` for "too many IN variables" and re-queries in the same, now invalid
    session, which raises ``PendingRollbackError`` while handling the first error.
    """
    from sqlalchemy.exc import PendingRollbackError

    seen: set[int] = set()
    current = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, types):
            return True
        seen.add(id(current))
        nxt = current.__cause__
        if nxt is None:
            ray_cause = getattr(current, "cause", None)
            nxt = ray_cause if isinstance(ray_cause, BaseException) else None
        # ``__context__`` in general would also match unrelated errors raised while handling a
        # transient one; a PendingRollbackError is about the error it was raised during.
        if nxt is None and isinstance(current, PendingRollbackError):
            nxt = current.__context__
        current = nxt
    return False


def call_with_retries(
    fn: Callable[..., T],
    *args: Any,
    attempts: int = 5,
    initial_delay: float = 0.2,
    max_delay: float = 5.0,
    retry_on: tuple[type[BaseException], ...] | None = DEFAULT_RETRY_ON,
    **kwargs: Any,
) -> T:
    """``fn(*args, **kwargs)``, retried up to ``attempts`` times on transient database errors.

    The delay doubles from ``initial_delay`` up to ``max_delay`` (with +-25 % jitter so workers that
    failed together do not retry together). Each retry is logged at WARNING with secrets redacted.
    After the last attempt the error is raised as :class:`StorageError`; non-transient errors are
    raised unchanged at once.
    """
    if attempts < 1:
        raise ValueError(f"attempts must be >= 1, got {attempts}")
    if initial_delay < 0 or max_delay < 0:
        raise ValueError(f"delays must be >= 0, got {initial_delay=}, {max_delay=}")
    transient = retry_on if retry_on is not None else _default_retry_on()
    name = getattr(fn, "__qualname__", None) or repr(fn)
    delay = initial_delay
    for attempt in range(1, attempts + 1):
        try:
            return fn(*args, **kwargs)
        except BaseException as exc:
            if not isinstance(exc, Exception) or not caused_by(exc, transient):
                raise
            reason = _describe(exc)
            if attempt == attempts:
                raise StorageError(
                    f"database call {name} failed after {attempts} attempts: {reason}; expected "
                    "the study database to be reachable (check the server and the storage URL)"
                ) from exc
            sleep_s = min(delay, max_delay) * random.uniform(0.75, 1.25)
            logger.warning(
                "database call %s failed (attempt %d/%d): %s; retrying in %.2fs",
                name,
                attempt,
                attempts,
                reason,
                sleep_s,
            )
            time.sleep(sleep_s)
            delay = min(delay * 2, max_delay)
    raise AssertionError("unreachable")  # pragma: no cover


def _describe(exc: BaseException) -> str:
    """One redacted line: the innermost driver message when SQLAlchemy/Optuna wrapped it."""
    inner: BaseException = exc
    while True:
        nxt = getattr(inner, "orig", None) or inner.__cause__
        if nxt is None or nxt is inner:
            break
        inner = nxt
    text = str(inner).strip() or type(inner).__name__
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), text)
    return redact_text(f"{type(inner).__name__}: {line}")

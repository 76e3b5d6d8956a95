"""Study-database URLs: where they come from, what kind they are, and how to print them safely.

Every URL that reaches a log line or an error message goes through :func:`redact_url` first, so a
password in ``postgresql://user:secret@host/db`` never leaves this process in plain text.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Literal, get_args

from gannas.errors import StorageError

if TYPE_CHECKING:  # pragma: no cover
    from sqlalchemy.engine import URL

StorageKind = Literal["sqlite", "postgresql", "mysql"]
"""The database backends Optuna's ``RDBStorage`` supports and gannas accepts."""

SUPPORTED_KINDS: tuple[str, ...] = get_args(StorageKind)
ENV_VAR = "GANNAS_STORAGE"
DEFAULT_SQLITE_NAME = "gannas.db"

# Fallback for strings SQLAlchemy cannot parse: hide whatever sits between "user:" and "@".
_CREDENTIALS_RE = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^:/@\s]*:)(?P<pw>[^@\s]*)@")
# Common spellings that mean "a database that lives only in this process".
_MEMORY_DATABASES = {"", ":memory:"}


def resolve_storage_url(url: str | None, *, must_exist: bool = False) -> str:
    """The study-database URL to use: ``url``, else ``$GANNAS_STORAGE``, else ``./gannas.db``.

    The result is validated (see :func:`validate_storage_url`) and a relative SQLite path is made
    absolute, because Ray workers may run in a different working directory than the controller.

    ``must_exist=True`` is for commands that only read: opening a SQLite file creates it, so a
    mistyped path would silently become a new, empty database that lists "no studies". Such a
    command is refused instead (see :func:`require_existing_database`).
    """
    from_env = False
    if url is None or not url.strip():
        url = os.environ.get(ENV_VAR, "").strip() or None
        from_env = url is not None
    if url is None:
        url = f"sqlite:///{Path.cwd().resolve() / DEFAULT_SQLITE_NAME}"
    try:
        if must_exist:
            require_existing_database(url.strip())
        return validate_storage_url(url.strip())
    except StorageError as exc:
        if not from_env:
            raise
        # The user typed no URL: say where the bad one came from.
        raise StorageError(f"{exc} (the URL is the value of ${ENV_VAR})") from None


def require_existing_database(url: str) -> None:
    """Raise :class:`StorageError` ``no study database at <path>`` unless the SQLite file of
    ``url`` exists and is not empty (an empty file would get a fresh schema written into it).

    Server URLs pass unchanged: connecting creates nothing there, and a missing database or study
    is reported when it is opened or loaded.
    """
    if storage_kind(url) != "sqlite":
        return
    path = sqlite_path(url)
    if path is None:
        return  # in-memory: validate_storage_url says why that cannot work
    path = path.expanduser()
    if not path.is_absolute():
        path = Path.cwd() / path
    if path.is_file() and path.stat().st_size > 0:
        return
    why = (
        "it is a directory"
        if path.is_dir()
        else "the file is empty"
        if path.is_file()
        else "no such file"
    )
    raise StorageError(
        f"no study database at {str(path)!r} ({why}); expected the SQLite file a search wrote: "
        f"check --storage (or ${ENV_VAR}), or create one with `gannas search`"
    )


def redact_url(url: str | URL) -> str:
    """``url`` as text with its password replaced by ``***`` (also for unparsable strings)."""
    from sqlalchemy.engine import URL, make_url

    if isinstance(url, URL):
        return url.render_as_string(hide_password=True)
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - any unparsable text still must not leak a password
        return redact_text(str(url))


def redact_text(text: str, *, secrets: tuple[str, ...] = ()) -> str:
    """``text`` with URL passwords and every string in ``secrets`` replaced by ``***``.

    Used on driver error messages, which may quote the URL or the connection string.
    """
    text = _CREDENTIALS_RE.sub(lambda m: f"{m.group('head')}***@", text)
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def url_password(url: str) -> str | None:
    """The password in ``url`` (to scrub it from messages), or ``None``."""
    from sqlalchemy.engine import make_url

    try:
        password = make_url(url).password
    except Exception:  # noqa: BLE001 - unparsable: nothing reliable to extract
        return None
    return None if password is None else str(password)


def storage_kind(url: str) -> StorageKind:
    """The backend of ``url``: ``"sqlite"``, ``"postgresql"`` or ``"mysql"``.

    Raises :class:`StorageError` for a malformed URL or an unsupported dialect.
    """
    backend = _parse(url).get_backend_name()
    if backend not in SUPPORTED_KINDS:
        hint = " (write postgresql://, not postgres://)" if backend == "postgres" else ""
        raise StorageError(
            f"unsupported study database {redact_url(url)!r}: dialect {backend!r} is not one of "
            f"{', '.join(SUPPORTED_KINDS)}{hint}"
        )
    return backend  # type: ignore[return-value]


def is_local_only(url: str) -> bool:
    """Whether ``url`` can only be shared by processes on one machine (SQLite files)."""
    return storage_kind(url) == "sqlite"


def sqlite_path(url: str) -> Path | None:
    """The database file of a SQLite ``url``; ``None`` for an in-memory database."""
    database = _parse(url).database or ""
    if database in _MEMORY_DATABASES or database.startswith("file::memory:"):
        return None
    return Path(database)


# DBAPI drivers to try, in order, for a URL that names no driver (``postgresql://``). SQLAlchemy
# 2.1 defaults PostgreSQL to psycopg 3, 2.0 to psycopg2; use whichever is installed.
_DRIVER_CANDIDATES: dict[str, tuple[tuple[str, str], ...]] = {
    "postgresql": (("psycopg", "psycopg"), ("psycopg2", "psycopg2")),
    "mysql": (("mysqldb", "MySQLdb"), ("pymysql", "pymysql")),
}


def with_installed_driver(url: str) -> str:
    """``url`` with an explicit, installed DBAPI driver when it names none.

    ``postgresql://...`` becomes ``postgresql+psycopg2://...`` when only psycopg2 is installed, so
    the same URL works whichever driver the image ships. URLs that name a driver are unchanged.
    """
    import importlib.util

    parsed = _parse(url)
    if "+" in parsed.drivername:
        return url
    candidates = _DRIVER_CANDIDATES.get(parsed.get_backend_name(), ())
    for driver, module in candidates:
        if importlib.util.find_spec(module) is not None:
            return parsed.set(drivername=f"{parsed.drivername}+{driver}").render_as_string(
                hide_password=False
            )
    return url


def validate_storage_url(url: str) -> str:
    """Check ``url`` and return it normalised (SQLite paths made absolute).

    Raises :class:`StorageError` with a one-line, redacted message for a malformed URL, an
    unsupported dialect, an in-memory SQLite database (workers in other processes cannot see it) or
    a SQLite file whose directory does not exist.
    """
    kind = storage_kind(url)
    if kind != "sqlite":
        return url
    path = sqlite_path(url)
    if path is None:
        raise StorageError(
            f"in-memory SQLite database {redact_url(url)!r} cannot hold a search: trial workers "
            "run in other processes and would not see it; expected a file such as "
            "sqlite:///gannas.db or a PostgreSQL URL"
        )
    path = path.expanduser()
    if not path.is_absolute():
        path = Path.cwd() / path
    if not path.parent.is_dir():
        raise StorageError(
            f"cannot use SQLite database {redact_url(url)!r}: directory {str(path.parent)!r} does "
            "not exist; create it first or choose another path"
        )
    if path.is_dir():
        raise StorageError(
            f"cannot use SQLite database {redact_url(url)!r}: {str(path)!r} is a directory, "
            "expected a database file path"
        )
    parsed = _parse(url)
    return parsed.set(database=str(path)).render_as_string(hide_password=False)


def _parse(url: str) -> URL:
    from sqlalchemy.engine import make_url

    if not isinstance(url, str) or not url.strip():
        raise StorageError(
            f"study database URL is empty; expected e.g. sqlite:///gannas.db or "
            f"postgresql://user:password@host:5432/db (or set ${ENV_VAR})"
        )
    try:
        return make_url(url)
    except Exception as exc:  # noqa: BLE001 - ArgumentError, ValueError from bad ports, ...
        reason = redact_text(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        raise StorageError(
            f"malformed study database URL {redact_url(url)!r} ({reason}); expected "
            "dialect://user:password@host:port/database, e.g. sqlite:///gannas.db or "
            "postgresql://user:password@host:5432/db"
        ) from None

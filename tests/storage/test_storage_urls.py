from __future__ import annotations

from pathlib import Path

import pytest

import storage
from gannas.errors import StorageError
from storage.urls import redact_url, resolve_storage_url, storage_kind, validate_storage_url


def test_resolve_prefers_argument_then_env_then_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GANNAS_STORAGE", raising=False)
    assert resolve_storage_url(None) == f"sqlite:///{tmp_path.resolve() / 'gannas.db'}"

    monkeypatch.setenv("GANNAS_STORAGE", "postgresql://u:pw@db.example:5432/studies")
    assert resolve_storage_url(None) == "postgresql://u:pw@db.example:5432/studies"
    assert resolve_storage_url("  ") == "postgresql://u:pw@db.example:5432/studies"

    explicit = f"sqlite:///{tmp_path / 'x.db'}"
    assert resolve_storage_url(explicit) == explicit


def test_must_exist_refuses_a_missing_or_empty_sqlite_file_without_creating_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Read-only commands: opening a mistyped SQLite path would create an empty database there.
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GANNAS_STORAGE", raising=False)
    cases = {
        f"sqlite:///{tmp_path / 'typo.db'}": (tmp_path / "typo.db", "no such file"),
        f"sqlite:///{tmp_path / 'nodir' / 'x.db'}": (tmp_path / "nodir" / "x.db", "no such file"),
        None: (tmp_path / "gannas.db", "no such file"),  # the default, ./gannas.db
    }
    for url, (path, why) in cases.items():
        with pytest.raises(StorageError) as info:
            resolve_storage_url(url, must_exist=True)
        assert str(info.value).startswith(f"no study database at {str(path)!r} ({why})")
        assert "--storage" in str(info.value)
    assert list(tmp_path.iterdir()) == []

    (tmp_path / "empty.db").touch()
    (tmp_path / "dir.db").mkdir()
    for name, why in (("empty.db", "the file is empty"), ("dir.db", "it is a directory")):
        with pytest.raises(StorageError, match=f"no study database at .*{name}' \\({why}\\)"):
            resolve_storage_url(f"sqlite:///{name}", must_exist=True)
    assert (tmp_path / "empty.db").stat().st_size == 0

    import optuna

    optuna.create_study(storage=f"sqlite:///{tmp_path / 'real.db'}", study_name="s")
    url = f"sqlite:///{tmp_path / 'real.db'}"
    assert resolve_storage_url(url, must_exist=True) == url
    # A server database is not a file: passed through, its absence is reported on connecting.
    pg = "postgresql://u:pw@db.example:5432/studies"
    assert resolve_storage_url(pg, must_exist=True) == pg


def test_relative_sqlite_path_is_made_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Ray workers may have another working directory: they must open the same file.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    assert resolve_storage_url("sqlite:///sub/s.db") == f"sqlite:///{tmp_path / 'sub' / 's.db'}"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://alice:s3cret@host:5432/db", "postgresql://alice:***@host:5432/db"),
        ("postgresql+psycopg2://alice:p%40ss@host/db", "postgresql+psycopg2://alice:***@host/db"),
        ("mysql://bob@host/db", "mysql://bob@host/db"),
        ("sqlite:////tmp/a.db", "sqlite:////tmp/a.db"),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected


def test_redact_unparsable_text_still_hides_password() -> None:
    out = redact_url("post gres://alice:s3cret@host/db")
    assert "s3cret" not in out and "alice:***@" in out


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("sqlite:////tmp/x.db", "sqlite"),
        ("postgresql://u@h/db", "postgresql"),
        ("postgresql+psycopg2://u@h/db", "postgresql"),
        ("mysql+pymysql://u@h/db", "mysql"),
    ],
)
def test_storage_kind(url: str, kind: str) -> None:
    assert storage_kind(url) == kind
    assert storage.is_local_only(url) is (kind == "sqlite")


def test_malformed_url_is_a_redacted_one_line_error() -> None:
    with pytest.raises(StorageError) as err:
        storage_kind("no-scheme-here:s3cret@")
    msg = str(err.value)
    assert "malformed study database URL" in msg and "expected" in msg
    assert "\n" not in msg

    with pytest.raises(StorageError) as err:
        storage_kind("postgresql://alice:s3cret@host:notaport/db")
    assert "s3cret" not in str(err.value)
    assert "alice:***@" in str(err.value)


def test_unsupported_dialect_names_the_supported_ones() -> None:
    with pytest.raises(StorageError, match=r"dialect 'oracle'.*sqlite, postgresql, mysql") as err:
        storage_kind("oracle://scott:tiger@host/db")
    assert "tiger" not in str(err.value)
    with pytest.raises(StorageError, match="write postgresql://"):
        storage_kind("postgres://u:pw@host/db")


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:"])
def test_in_memory_sqlite_is_refused_for_searches(url: str) -> None:
    with pytest.raises(StorageError, match="in-memory SQLite.*other processes"):
        validate_storage_url(url)


def test_missing_sqlite_directory_is_reported(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'nope' / 'x.db'}"
    with pytest.raises(StorageError, match=r"directory '.*nope' does not exist"):
        resolve_storage_url(url)


def test_sqlite_path_that_is_a_directory_is_reported(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="is a directory"):
        resolve_storage_url(f"sqlite:///{tmp_path}")


def test_import_storage_is_light() -> None:
    import subprocess
    import sys

    code = (
        "import sys, storage; "
        "heavy = [m for m in ('sqlalchemy', 'optuna', 'torch') if m in sys.modules]; "
        "print(heavy); assert not heavy, heavy; "
        "assert sorted(storage.__all__) == sorted(set(storage.__all__))"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    for name in storage.__all__:
        assert callable(getattr(storage, name)), name


def test_with_installed_driver_only_fills_a_missing_driver() -> None:
    import importlib.util

    from storage.urls import with_installed_driver

    assert (
        with_installed_driver("postgresql+psycopg2://u:pw@h/db")
        == "postgresql+psycopg2://u:pw@h/db"
    )
    assert with_installed_driver("sqlite:////tmp/x.db") == "sqlite:////tmp/x.db"
    filled = with_installed_driver("postgresql://u:pw@h/db")
    installed = [m for m in ("psycopg", "psycopg2") if importlib.util.find_spec(m) is not None]
    assert filled == (
        f"postgresql+{installed[0]}://u:pw@h/db" if installed else "postgresql://u:pw@h/db"
    )


def test_a_bad_url_from_the_environment_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GANNAS_STORAGE", "bogus")
    with pytest.raises(StorageError, match=r"'bogus'.*the value of \$GANNAS_STORAGE"):
        resolve_storage_url(None)
    # typed on the command line, the URL is the user's own: no mention of the variable
    with pytest.raises(StorageError) as raised:
        resolve_storage_url("bogus")
    assert "GANNAS_STORAGE" not in str(raised.value)

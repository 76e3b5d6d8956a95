"""Storage-mode fixtures: every test using ``storage_url`` runs on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from storage.testing import postgres_url_for_tests, storage_url_for_mode

_SKIP_PG = (
    "PostgreSQL test server not reachable on 127.0.0.1:5432 (or $GANNAS_TEST_POSTGRES_URL); "
    "start it with: pg_ctlcluster --skip-systemctl-redirect <version> main start"
)


@pytest.fixture(scope="session")
def postgres_admin_url() -> str:
    url = postgres_url_for_tests()
    if url is None:
        pytest.skip(_SKIP_PG)
    return url


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def storage_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty study database URL (a temp SQLite file, or a new PostgreSQL database)."""
    if request.param == "postgresql":
        request.getfixturevalue("postgres_admin_url")
    with storage_url_for_mode(request.param, tmp_path) as url:
        yield url


@pytest.fixture
def postgres_url(postgres_admin_url: str) -> Iterator[str]:
    """A fresh PostgreSQL database (tests using it must be marked ``postgres``)."""
    with storage_url_for_mode("postgresql", ".") as url:
        yield url


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that take a PostgreSQL fixture carry the ``postgres`` mark (``-m "not postgres"``)."""
    for item in items:
        if {"postgres_url", "postgres_admin_url"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.postgres)

"""docker-compose.yml: structure of the parsed YAML, plus `docker-compose config` if installed."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
GANNAS_SERVICES = ("ray-head", "ray-worker", "dashboard", "search")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    assert isinstance(env, dict), "environment must be a mapping"
    return env


def _command(service: dict[str, Any]) -> str:
    cmd = service["command"]
    return " ".join(cmd) if isinstance(cmd, list) else cmd


def _secret_values(node: Any, key: str = "") -> Any:
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _secret_values(v, str(k))
    elif isinstance(node, list):
        for item in node:
            yield from _secret_values(item, key)
    elif re.search(r"(?i)password|secret|token", key):
        yield key, node


def test_services_and_volumes(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == {"postgres", *GANNAS_SERVICES}
    assert {"pgdata", "artifacts"} <= set(compose["volumes"])
    pg = compose["services"]["postgres"]
    assert pg["image"].startswith("postgres:16")
    assert "pgdata:/var/lib/postgresql/data" in pg["volumes"]


def test_credentials_come_from_the_environment_only(compose: dict[str, Any]) -> None:
    pg_env = _env(compose["services"]["postgres"])
    assert pg_env["POSTGRES_PASSWORD"].startswith("${POSTGRES_PASSWORD:?")
    assert pg_env["POSTGRES_USER"].startswith("${POSTGRES_USER:?")
    raw = COMPOSE.read_text()
    # Every password-ish value is a required interpolation: no literal, no default.
    secrets = list(_secret_values(compose))
    assert secrets, "expected at least the postgres password"
    for key, value in secrets:
        assert re.fullmatch(r"\$\{[A-Z_]+:\?[^}]*\}", str(value)), (
            f"literal or defaulted {key}: {value}"
        )
    assert not re.search(r"(?i)(password|secret)[A-Z_]*:-", raw)
    urls = [_env(compose["services"][name])["GANNAS_STORAGE"] for name in GANNAS_SERVICES]
    for url in urls:
        creds = url.split("://", 1)[1].split("@", 1)[0]
        assert (
            creds
            == "${POSTGRES_USER:?set POSTGRES_USER}:${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD}"
        )
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()
    assert not re.search(r"(?i)(password|secret|token)\s*=", dockerfile)
    assert "torch==2.14.1" in dockerfile


def test_postgres_healthcheck_gates_dependents(compose: dict[str, Any]) -> None:
    services = compose["services"]
    test = services["postgres"]["healthcheck"]["test"]
    assert "pg_isready" in " ".join(test)
    for name in ("ray-head", "dashboard", "search"):
        assert services[name]["depends_on"]["postgres"]["condition"] == "service_healthy", name


def test_ray_cluster_and_gpu_reservation(compose: dict[str, Any]) -> None:
    services = compose["services"]
    head = _command(services["ray-head"])
    assert "ray start --head" in head and "--block" in head and "--dashboard-host=0.0.0.0" in head
    # Trials run on the GPU workers only: the head offers them neither CPUs nor GPUs.
    assert "--num-cpus=0" in head and "--num-gpus=0" in head
    assert any(str(p).endswith(":8265") for p in services["ray-head"]["ports"])
    worker = services["ray-worker"]
    assert "ray start --address=ray-head:6379" in _command(worker) and "--block" in _command(worker)
    (device,) = worker["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    # Scalable with --scale: no fixed container name, no host ports.
    assert "container_name" not in worker and "ports" not in worker


def test_all_gannas_processes_share_storage_and_artifacts(compose: dict[str, Any]) -> None:
    services = compose["services"]
    storages = {_env(services[name])["GANNAS_STORAGE"] for name in GANNAS_SERVICES}
    assert len(storages) == 1
    (storage,) = storages
    assert storage.startswith("postgresql://") and "@postgres:5432/" in storage
    for name in GANNAS_SERVICES:
        assert "artifacts:/artifacts" in services[name]["volumes"], name
    dashboard = _command(services["dashboard"])
    assert dashboard.startswith("gannas dashboard") and "--host 0.0.0.0" in dashboard
    assert "--artifacts /artifacts" in dashboard


def test_search_is_an_opt_in_job(compose: dict[str, Any]) -> None:
    search = compose["services"]["search"]
    assert search["profiles"] == ["job"]
    cmd = _command(search)
    assert "gannas search --address ray-head:6379" in cmd
    for var in ("GANNAS_SPACE", "GANNAS_DATASET", "GANNAS_TRIALS", "GANNAS_GPUS_PER_TRIAL"):
        assert f"$${var}" in cmd and var in _env(search)
    # The job's container has no GPU: without an explicit count, trials would reserve none.
    assert '--gpus-per-trial "$$GANNAS_GPUS_PER_TRIAL"' in cmd
    assert _env(search)["GANNAS_GPUS_PER_TRIAL"] == "${GANNAS_GPUS_PER_TRIAL:-1}"
    # Reference statistics are cached on the shared cache volume.
    assert _env(search)["GANNAS_CACHE_DIR"].startswith("/cache/")


def _compose_cli() -> list[str] | None:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker"):
        probe = subprocess.run(
            ["docker", "compose", "version"], capture_output=True, timeout=30, check=False
        )
        if probe.returncode == 0:
            return ["docker", "compose"]
    return None


def _run_config(
    cli: list[str], env: dict[str, str], tmp_path: Path
) -> subprocess.CompletedProcess[str]:
    empty_env_file = tmp_path / "empty.env"  # ignore a developer's .env next to the compose file
    empty_env_file.write_text("")
    base = {k: v for k, v in os.environ.items() if not k.startswith(("POSTGRES_", "GANNAS_"))}
    return subprocess.run(
        [*cli, "--env-file", str(empty_env_file), "-f", str(COMPOSE), "config", "-q"],
        env={**base, **env},
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )


def test_compose_config_validates(tmp_path: Path) -> None:
    cli = _compose_cli()
    if cli is None:
        pytest.skip(
            "neither docker-compose nor `docker compose` is installed "
            "(apt-get install -y docker-compose); structural checks above still ran"
        )
    ok = _run_config(cli, {"POSTGRES_USER": "gannas", "POSTGRES_PASSWORD": "pw"}, tmp_path)
    assert ok.returncode == 0, ok.stderr
    missing = _run_config(cli, {"POSTGRES_USER": "gannas"}, tmp_path)
    assert missing.returncode != 0
    assert "set POSTGRES_PASSWORD" in missing.stderr

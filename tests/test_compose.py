"""``compose.yaml``: validated by ``docker compose config`` where the compose plugin is installed, and its
topology (two replicas behind a load balancer on 8642, PostgreSQL with a volume, Redis, health checks,
credentials from an env file) checked as data everywhere."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def _compose_command() -> list[str] | None:
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    return None


def test_docker_compose_config_validates(tmp_path: Path) -> None:
    command = _compose_command()
    if command is None:
        pytest.skip("docker with the compose plugin is not installed here ('docker compose version' fails)")
    env = tmp_path / ".env"
    env.write_text("SWITCHBOARD_MASTER_KEY=sk-sb-master-0123456789abcdef\nPOSTGRES_PASSWORD=pw\n")
    out = subprocess.run(
        [
            *command,
            "--project-directory",
            str(ROOT),
            "--env-file",
            str(env),
            "-f",
            str(ROOT / "compose.yaml"),
            "config",
        ],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr


@pytest.fixture
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
    return data


def test_two_replicas_share_postgres_and_redis(compose: dict[str, Any]) -> None:
    services = compose["services"]
    replicas = [name for name in services if name.startswith("switchboard-")]
    assert len(replicas) == 2
    for name in replicas:
        svc = services[name]
        env = svc["environment"]
        assert env["SWITCHBOARD_DATABASE_URL"].startswith("postgresql://")
        assert "@postgres:5432/" in env["SWITCHBOARD_DATABASE_URL"]
        assert env["SWITCHBOARD_REDIS_URL"] == "redis://redis:6379/0"
        assert svc["env_file"] == ".env"
        assert svc["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert svc["depends_on"]["redis"]["condition"] == "service_healthy"
    assert "healthcheck" in services["postgres"] and "healthcheck" in services["redis"]
    assert any(v.startswith("pgdata:") for v in services["postgres"]["volumes"])
    assert "pgdata" in compose["volumes"]


def test_the_load_balancer_serves_8642_over_both(compose: dict[str, Any]) -> None:
    lb = compose["services"]["lb"]
    assert "8642:8642" in lb["ports"]
    conf = compose["configs"][lb["configs"][0]["source"]]["content"]
    assert "server switchboard-1:8642" in conf and "server switchboard-2:8642" in conf
    assert "proxy_buffering off" in conf  # streams pass as they come
    for name in ("switchboard-1", "switchboard-2"):
        assert lb["depends_on"][name]["condition"] == "service_healthy"


def test_the_image_health_checks_and_binds_all_interfaces() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "HEALTHCHECK" in dockerfile and "/healthz" in dockerfile
    assert '"--host", "0.0.0.0"' in dockerfile
    assert "USER switchboard" in dockerfile
    example = (ROOT / ".env.example").read_text()
    assert "SWITCHBOARD_MASTER_KEY=" in example and "POSTGRES_PASSWORD=" in example

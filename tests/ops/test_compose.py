"""docker-compose.yml: valid against the Compose specification, and shaped as the docs promise."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from importlib import resources
from typing import Any

import jsonschema
import pytest

from .conftest import REPO
from .yamlfiles import load, unknown_settings

COMPOSE = REPO / "docker-compose.yml"
PPW_SERVICES = ("scheduler", "worker", "sandbox", "demo")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load(COMPOSE)


@pytest.fixture(scope="module")
def compose_schema() -> dict[str, Any]:
    """The Compose specification's JSON schema, as vendored by check-jsonschema (no network)."""
    pytest.importorskip("check_jsonschema", reason="check-jsonschema (ships the compose-spec schema)")
    files = resources.files("check_jsonschema") / "builtin_schemas" / "vendor" / "compose-spec.json"
    schema: dict[str, Any] = json.loads(files.read_text(encoding="utf-8"))
    return schema


def schema_errors(schema: dict[str, Any], document: Any) -> list[str]:
    validator = jsonschema.validators.validator_for(schema)(schema)
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(document)]


def test_compose_file_matches_the_compose_spec(
    compose: dict[str, Any], compose_schema: dict[str, Any]
) -> None:
    assert schema_errors(compose_schema, compose) == []


def test_the_schema_check_can_fail(compose: dict[str, Any], compose_schema: dict[str, Any]) -> None:
    broken = copy.deepcopy(compose)
    broken["services"]["worker"]["restart_policy"] = "always"  # not a Compose key
    broken["services"]["scheduler"]["ports"] = "9000:9000"  # must be a list
    errors = "\n".join(schema_errors(compose_schema, broken))
    assert "'restart_policy' was unexpected" in errors
    assert "'9000:9000' is not of type 'array'" in errors


def test_docker_compose_config_accepts_it() -> None:
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("docker is not installed")
    if subprocess.run([docker, "compose", "version"], capture_output=True).returncode != 0:
        pytest.skip("the docker compose plugin is not installed (the schema test covers the file)")
    result = subprocess.run(
        [docker, "compose", "-f", str(COMPOSE), "--profile", "demo", "--profile", "rabbitmq", "config", "-q"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


def test_core_services_and_profiles(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["scheduler"]["command"] == ["scheduler"]
    assert services["worker"]["command"] == ["worker"]
    assert "profiles" not in services["redis"] and "profiles" not in services["worker"]
    assert services["rabbitmq"]["profiles"] == ["rabbitmq"]
    assert services["sandbox"]["profiles"] == ["demo"] and services["demo"]["profiles"] == ["demo"]
    assert services["demo"]["environment"]["PPW_PP_BASE_URL"] == "http://sandbox:8800"


def test_redis_persists_and_reports_health(compose: dict[str, Any]) -> None:
    redis = compose["services"]["redis"]
    command = redis["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert redis["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    assert any(volume.endswith(":/data") for volume in redis["volumes"])
    assert compose["services"]["worker"]["depends_on"]["redis"]["condition"] == "service_healthy"


def test_worker_scales(compose: dict[str, Any]) -> None:
    worker = compose["services"]["worker"]
    assert "ports" not in worker and "container_name" not in worker, "--scale worker=N needs both absent"


def test_long_running_services_restart(compose: dict[str, Any]) -> None:
    for name in ("redis", "scheduler", "worker", "rabbitmq"):
        assert compose["services"][name]["restart"] == "unless-stopped", name


def test_configuration_comes_from_dot_env_and_names_real_settings(compose: dict[str, Any]) -> None:
    for name in PPW_SERVICES:
        service = compose["services"][name]
        assert service["env_file"] == [{"path": ".env", "required": False}]
        assert unknown_settings(list(service.get("environment", {}))) == []
    assert (REPO / "deploy" / "Dockerfile").is_file()
    assert compose["services"]["worker"]["build"]["dockerfile"] == "deploy/Dockerfile"


def test_demo_sandbox_flags_exist_in_the_cli(compose: dict[str, Any]) -> None:
    from typer.testing import CliRunner

    from worker.cli import app

    command = compose["services"]["sandbox"]["command"]
    assert command[0] == "sandbox"
    result = CliRunner().invoke(app, ["sandbox", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for flag in [word for word in command if word.startswith("--")]:
        assert flag in result.output, flag

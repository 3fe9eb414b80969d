"""compose.yaml: valid Compose, and the stack keeps its promises (docs/compose.md).

The schema beside this file is the Compose Specification's (compose-spec/compose-spec,
schema/compose-spec.json, Apache-2.0; see NOTICE.md here). ``docker compose config`` (or
the older ``docker-compose config``) runs too where one is installed.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = Path(__file__).with_name("compose-spec.json")
LONG_RUNNING = {"timescaledb", "mosquitto", "ingest", "api", "prometheus", "grafana"}
ONE_SHOT = {"migrate", "broker-setup"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
    return data


def _errors(document: object) -> list[str]:
    validator = jsonschema_rs.Draft7Validator(json.loads(SCHEMA.read_text()))
    return [
        f"{'/'.join(map(str, e.instance_path))}: {e.message}"
        for e in validator.iter_errors(document)
    ]


def test_valid_against_the_compose_specification(compose: dict[str, Any]) -> None:
    assert _errors(compose) == []


def test_the_schema_catches_mistakes(compose: dict[str, Any]) -> None:
    broken = json.loads(json.dumps(compose))
    broken["services"]["api"]["healthcheck"]["intervall"] = "10s"
    broken["services"]["ingest"]["depends_on"]["migrate"]["condition"] = "service_done"
    assert len(_errors(broken)) == 2


def test_services_and_images_are_pinned(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == LONG_RUNNING | ONE_SHOT | {"simulator"}
    for name, service in services.items():
        image = service["image"]
        tag = image.rpartition(":")[2]
        assert ":" in image, name
        assert tag != "latest", name
        assert re.search(r"\d+\.\d+", tag), f"{name}: {image} is not pinned to a version"
        if "build" in service:
            assert service["build"] == "."


def test_healthchecks_and_start_order(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in LONG_RUNNING:
        assert services[name]["healthcheck"]["test"], name
        assert services[name]["restart"] == "unless-stopped", name
    for name in ONE_SHOT | {"simulator"}:
        assert services[name]["restart"] == "no", name
    for name, service in services.items():
        for needed, how in service.get("depends_on", {}).items():
            condition = how["condition"]
            if condition == "service_healthy":
                assert "healthcheck" in services[needed], f"{name} waits for {needed}"
            else:
                assert condition == "service_completed_successfully"
                assert needed in ONE_SHOT, f"{name} waits for {needed} to finish"
    ingest = services["ingest"]["depends_on"]
    assert ingest["migrate"]["condition"] == "service_completed_successfully"
    assert ingest["broker-setup"]["condition"] == "service_completed_successfully"
    assert services["api"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


def test_one_ingest_container_of_two_workers_and_a_simulator_profile(
    compose: dict[str, Any],
) -> None:
    """One plain subscription per host (the default): one container, its workers share it."""
    services = compose["services"]
    assert "deploy" not in services["ingest"]
    assert services["ingest"]["command"][-2:] == ["--workers", "2"]
    assert services["simulator"]["profiles"] == ["simulator"]
    assert all("profiles" not in s for n, s in services.items() if n != "simulator")


def test_published_ports_are_on_loopback(compose: dict[str, Any]) -> None:
    published = [p for s in compose["services"].values() for p in s.get("ports", [])]
    assert published
    for port in published:
        assert port.startswith("127.0.0.1:"), port
    assert "ports" not in compose["services"]["timescaledb"]


def test_secrets_are_required_and_listed_in_env_example() -> None:
    text = (ROOT / "compose.yaml").read_text()
    used = set(re.findall(r"\$\{([A-Z_]+)", text))
    secrets = {name for name in used if "PASSWORD" in name or name.endswith("_KEY")}
    assert secrets >= {"POSTGRES_PASSWORD", "API_ADMIN_KEY", "MQTT_ADMIN_PASSWORD"}
    for name in secrets:
        assert re.findall(rf"\$\{{{name}([^}}]*)\}}", text), name
        for modifier in re.findall(rf"\$\{{{name}([^}}]*)\}}", text):
            assert modifier.startswith(":?"), f"{name} must be required, not {modifier!r}"
    example = (ROOT / ".env.example").read_text()
    listed = set(re.findall(r"^([A-Z_]+)=", example, re.MULTILINE))
    assert secrets <= listed


def test_grafana_mounts_the_shared_dashboards(compose: dict[str, Any]) -> None:
    volumes = compose["services"]["grafana"]["volumes"]
    assert "./dashboards/provisioning:/etc/grafana/provisioning:ro" in volumes
    assert "./dashboards:/var/lib/grafana/dashboards:ro" in volumes
    assert "GRAFANA_DB_PASSWORD" in compose["services"]["grafana"]["environment"]


def test_the_dockerfile_builds_in_stages_and_runs_unprivileged() -> None:
    lines = [ln.strip() for ln in (ROOT / "Dockerfile").read_text().splitlines()]
    stages = [i for i, ln in enumerate(lines) if ln.upper().startswith("FROM ")]
    assert len(stages) >= 2
    final = lines[stages[-1] :]
    users = [ln.split()[1] for ln in final if ln.upper().startswith("USER ")]
    assert users
    assert users[-1].split(":")[0] not in ("root", "0")
    assert any(ln.startswith("COPY --from=builder") for ln in final)


def _compose_command() -> list[str] | None:
    docker = shutil.which("docker")
    if docker is not None:
        probe = subprocess.run([docker, "compose", "version"], capture_output=True, check=False)
        if probe.returncode == 0:
            return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy is not None else None


def test_docker_compose_config_accepts_it(tmp_path: Path) -> None:
    command = _compose_command()
    if command is None:
        pytest.skip("neither `docker compose` nor `docker-compose` is installed")
    env_file = tmp_path / ".env"
    env_file.write_text((ROOT / ".env.example").read_text().replace("change-me", "pw-123"))
    base = [*command, "--project-directory", str(ROOT), "-f", str(ROOT / "compose.yaml")]
    done = subprocess.run(
        [*base, "--env-file", str(env_file), "--profile", "simulator", "config"],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    resolved = yaml.safe_load(done.stdout)
    assert set(resolved["services"]) == LONG_RUNNING | ONE_SHOT | {"simulator"}
    # Without the secrets it refuses, naming what is missing.
    env_file.write_text("COMPOSE_PROJECT_NAME=telemetry\n")
    done = subprocess.run(
        [*base, "--env-file", str(env_file), "config"],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    assert done.returncode != 0
    assert "in .env (see .env.example)" in done.stderr

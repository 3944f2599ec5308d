"""systemd units for VMs: accepted by ``systemd-analyze verify`` and hardened as documented."""

from __future__ import annotations

import configparser
import shutil
import subprocess
from pathlib import Path

import pytest

from .conftest import REPO

UNITS = REPO / "deploy" / "systemd"
SERVICES = ("ppw-scheduler.service", "ppw-worker@.service")
HARDENING = {
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
    "CapabilityBoundingSet": "",
    "SystemCallArchitectures": "native",
}


def service_section(name: str) -> dict[str, list[str]]:
    """The [Service] section, keeping every value of repeated keys."""
    values: dict[str, list[str]] = {}
    section = None
    for raw in (UNITS / name).read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line
        elif section == "[Service]":
            key, _, value = line.partition("=")
            values.setdefault(key, []).append(value)
    return values


@pytest.mark.parametrize("name", SERVICES)
def test_units_are_hardened(name: str) -> None:
    service = service_section(name)
    for key, value in HARDENING.items():
        assert service.get(key) == [value], key
    assert service["User"] == ["ppw"]
    assert service["Restart"] == ["on-failure"]
    assert service["EnvironmentFile"] == ["/etc/ppw/ppw.env"]


def test_worker_instances_serve_health_on_their_instance_port() -> None:
    service = service_section("ppw-worker@.service")
    assert "PPW_HTTP_PORT=%i" in service["Environment"]
    assert service["ExecStart"] == ["/opt/ppw/bin/ppw worker"]
    assert service_section("ppw-scheduler.service")["ExecStart"] == ["/opt/ppw/bin/ppw scheduler"]


def test_units_parse_as_ini() -> None:
    for path in UNITS.iterdir():
        parser = configparser.ConfigParser(strict=False, interpolation=None)
        parser.optionxform = str  # type: ignore[assignment,method-assign]
        parser.read(path)
        assert parser.sections(), path.name


def test_systemd_analyze_verify(installed_ppw: Path, tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    # The units as a VM gets them, with /opt/ppw replaced by a real install so ExecStart exists.
    for path in UNITS.iterdir():
        text = path.read_text(encoding="utf-8").replace("/opt/ppw", str(installed_ppw))
        (tmp_path / path.name).write_text(text, encoding="utf-8")
    (tmp_path / "ppw-worker@9101.service").write_text(
        (tmp_path / "ppw-worker@.service").read_text(encoding="utf-8"), encoding="utf-8"
    )
    names = ["ppw-scheduler.service", "ppw-worker@9101.service", "ppw-workers.target"]
    result = subprocess.run(
        [analyze, "verify", *names], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    problems = [line for line in (result.stdout + result.stderr).splitlines() if "ppw" in line]
    assert result.returncode == 0 and not problems, result.stdout + result.stderr


def test_systemd_analyze_catches_a_broken_unit(installed_ppw: Path, tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    text = (
        (UNITS / "ppw-scheduler.service").read_text(encoding="utf-8").replace("/opt/ppw", str(installed_ppw))
    )
    (tmp_path / "ppw-scheduler.service").write_text(text.replace("Restart=", "Restat="), encoding="utf-8")
    result = subprocess.run(
        [analyze, "verify", "ppw-scheduler.service"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "Restat" in result.stdout + result.stderr

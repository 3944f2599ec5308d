"""The container image recipe and the install it performs, run here without a Docker daemon.

The Dockerfile's build stage is ``deploy/install.sh``; running that script into a fresh virtualenv
proves the wheel builds, carries its data files, installs with its declared dependencies and gives
a working ``ppw``. The Dockerfile itself is checked for the properties the docs promise.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from worker.process.health import CheckResult, HealthServer

from .conftest import REPO, make_settings

DOCKERFILE = REPO / "deploy" / "Dockerfile"
#: The container HEALTHCHECK and VM probe command: `python -m <PROBE>`.
PROBE = "worker.process.health"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = DOCKERFILE.read_text(encoding="utf-8")
    logical = text.replace("\\\n", " ")
    result = []
    for line in logical.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            result.append((keyword.upper(), " ".join(rest.split())))
    return result


def final_stage() -> list[tuple[str, str]]:
    steps = instructions()
    last_from = max(i for i, (keyword, _) in enumerate(steps) if keyword == "FROM")
    return steps[last_from:]


def test_dockerfile_is_multi_stage_and_slim() -> None:
    stages = [args for keyword, args in instructions() if keyword == "FROM"]
    assert len(stages) == 2
    assert all("-slim" in stage for stage in stages)
    assert ("COPY", "--from=build /opt/ppw /opt/ppw") in final_stage()


def test_build_stage_uses_the_install_script() -> None:
    runs = [args for keyword, args in instructions() if keyword == "RUN"]
    assert runs[0].startswith("sh deploy/install.sh /opt/ppw")


def test_image_runs_unprivileged_with_a_healthcheck() -> None:
    stage = dict((keyword, args) for keyword, args in final_stage() if keyword in ("USER", "HEALTHCHECK"))
    user = stage["USER"].split(":")[0]
    assert user not in ("0", "root")
    assert stage["HEALTHCHECK"].endswith(f'CMD ["python", "-m", "{PROBE}"]')
    assert ("ENTRYPOINT", '["ppw"]') in final_stage()


def test_build_context_sends_only_what_the_image_copies() -> None:
    lines = (REPO / "deploy" / "Dockerfile.dockerignore").read_text(encoding="utf-8").splitlines()
    rules = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    assert rules[0] == "*", "everything is excluded unless listed"
    assert {".env", ".ppw"} <= set(rules)
    included = {rule[1:].rstrip("/") for rule in rules if rule.startswith("!")}
    for keyword, args in instructions():
        if keyword == "COPY" and "--from=" not in args:
            sources = [word for word in args.split()[:-1] if not word.startswith("--")]
            assert {source.rstrip("/") for source in sources} <= included, args


def run(prefix: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PPW_", "VIRTUAL_ENV"))}
    return subprocess.run(
        [str(prefix / "bin" / args[0]), *args[1:]],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_installed_ppw_runs_from_the_wheel(installed_ppw: Path, tmp_path: Path) -> None:
    help_text = run(installed_ppw, "ppw", "--help", cwd=tmp_path)
    assert help_text.returncode == 0, help_text.stderr
    assert "PracticePanther automation worker" in help_text.stdout

    where = run(installed_ppw, "python", "-c", "import worker; print(worker.__file__)", cwd=tmp_path)
    assert where.stdout.strip().startswith(str(installed_ppw)), "the wheel's copy, not the checkout"

    data = run(
        installed_ppw,
        "python",
        "-c",
        "from worker.practicepanther import resources; print(resources.get('matters').path)",
        cwd=tmp_path,
    )
    assert data.returncode == 0, data.stderr
    assert data.stdout.strip() == "/api/v2/matters", "the packaged swagger ships in the wheel"


def test_health_probe_of_the_image(installed_ppw: Path, tmp_path: Path) -> None:
    with HealthServer(make_settings(), host="127.0.0.1", port=0) as server:
        alive = run(installed_ppw, "python", "-m", PROBE, "--url", server.url, cwd=tmp_path)
        server.register_check("token", lambda: CheckResult.failed("no token"))
        ready = run(installed_ppw, "python", "-m", PROBE, "--ready", "--url", server.url, cwd=tmp_path)
        url = server.url
    assert alive.returncode == 0, alive.stdout + alive.stderr
    assert '"status":"ok"' in alive.stdout
    assert ready.returncode == 1
    assert "no token" in ready.stdout
    gone = run(installed_ppw, "python", "-m", PROBE, "--url", url, "--timeout", "2", cwd=tmp_path)
    assert gone.returncode == 1
    assert "ConnectionRefusedError" in gone.stdout or "URLError" in gone.stdout


def test_health_probe_reads_the_port_from_the_environment(installed_ppw: Path, tmp_path: Path) -> None:
    with HealthServer(make_settings(), host="127.0.0.1", port=0) as server:
        port = server.url.rsplit(":", 1)[1]
        env = {**os.environ, "PPW_HTTP_PORT": port}
        probe = subprocess.run(
            [str(installed_ppw / "bin" / "python"), "-m", PROBE],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert probe.returncode == 0, probe.stdout + probe.stderr

"""Fixtures for the operations tests: settings built in code, and cleanup of process-wide state.

``configure_logging`` and ``init_sentry`` change the whole process (root handler, scrubber, Sentry
client); every test that calls them goes through these fixtures so other areas' tests, running
later in the same process, see the process as it was.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sentry_sdk

from worker.observability import scrub
from worker.observability.logs import PpwHandler, configure_logging
from worker.settings import Settings

REPO = Path(__file__).resolve().parents[2]

CLIENT_SECRET = "cs-live-4f9a8b7c6d5e"
BOT_TOKEN = "xoxb-1111-2222-abcdefghijkl"
SLACK_URL = "https://hooks.slack.com/services/T000/B000/XXXXXXXXXXXXXXXXXXXXXXXX"
HOOK_SECRET = "whsec-9q8w7e6r5t4y"
DSN = "https://0123456789abcdef@o1.ingest.sentry.invalid/42"


def make_settings(**values: Any) -> Settings:
    """Settings from keyword values (which win over ``PPW_`` variables), never from a ``.env`` file."""
    return Settings(_env_file=None, **values)


@pytest.fixture
def secret_settings() -> Settings:
    """Settings with one secret of each kind configured."""
    return make_settings(
        pp_client_secret=CLIENT_SECRET,
        slack_bot_token=BOT_TOKEN,
        slack_webhooks={"billing": SLACK_URL},
        webhook_secrets={"intake": HOOK_SECRET},
        sentry_dsn=DSN,
    )


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    previous = scrub.get_scrubber()
    yield
    for ours in [h for h in root.handlers if isinstance(h, PpwHandler)]:
        root.removeHandler(ours)
    for handler in handlers:
        if handler not in root.handlers:
            root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(False)
    scrub.set_scrubber(previous)


@pytest.fixture
def capture_logs(restore_logging: None) -> Callable[[Settings], io.StringIO]:
    """``stream = capture_logs(settings)``: configure logging into a string buffer."""

    def configure(settings: Settings) -> io.StringIO:
        stream = io.StringIO()
        configure_logging(settings, stream=stream)
        return stream

    return configure


@pytest.fixture
def reset_sentry() -> Iterator[None]:
    yield
    client = sentry_sdk.get_client()
    client.close(timeout=2)
    sentry_sdk.get_global_scope().set_client(None)


# An install of the built wheel, as deploy/install.sh (and so the Dockerfile) makes it --------------

#: Distributions in the development virtualenv that belong to the checkout itself, not to its deps.
_OWN = ("ppw-", "_ppw", "__editable__", "worker")


def _dependencies_only(site_packages: Path, into: Path) -> Path:
    """A directory of links to the dev venv's installed packages, minus ppw itself.

    The fresh virtualenv sees it through a ``.pth`` file, so installing the wheel resolves every
    dependency against packages already on this machine: no network, and no copy of the checkout.
    """
    into.mkdir()
    for entry in site_packages.iterdir():
        if entry.name.startswith(_OWN) or entry.suffix == ".pth":
            continue
        (into / entry.name).symlink_to(entry)
    return into


@pytest.fixture(scope="session")
def installed_ppw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtualenv with ppw installed by ``deploy/install.sh`` from a freshly built wheel."""
    import importlib.util
    import os
    import subprocess
    import sys
    import sysconfig

    if importlib.util.find_spec("hatchling") is None:
        pytest.skip(
            "hatchling (the build backend) is not in this virtualenv; the offline wheel build needs it"
        )
    root = tmp_path_factory.mktemp("install")
    prefix = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(prefix)], check=True, timeout=120)
    deps = _dependencies_only(Path(sysconfig.get_paths()["purelib"]), root / "deps")
    site = next((prefix / "lib").glob("python3*/site-packages"))
    (site / "zz_ppw_test_deps.pth").write_text(f"{deps}\n", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "PPW_", "VIRTUAL_ENV"))}
    env.update(
        PPW_WHEEL_ARGS="--no-build-isolation",
        PPW_INSTALL_ARGS="--no-index",
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        PYTHON=sys.executable,
    )
    done = subprocess.run(
        ["sh", str(REPO / "deploy" / "install.sh"), str(prefix)],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"ppw installed in {prefix}" in done.stdout
    return prefix

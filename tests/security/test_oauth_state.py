"""``ppw auth login`` refuses a redirect whose ``state`` is not the one it generated.

A redirect with a foreign ``state`` belongs to another login attempt, or to someone who wants this
worker connected to *their* PracticePanther account (login CSRF, RFC 6749 §10.12). The command is
run as typed (a child process printing the URL); the test plays the browser. A forged redirect is
refused in the browser tab and by the command's exit status, the code it carried is never
exchanged, and nothing is stored; the genuine redirect, arriving afterwards, is not accepted either
(the flow ended).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import httpx
import pytest

from tests.fixtures.client import SandboxAdmin, sandbox_settings
from worker.practicepanther.tokens import TokenStore
from worker.sandbox import SandboxServer
from worker.state import open_store

URL = re.compile(r"https?://\S+/OAuth/Authorize\S+")


def _login_process(
    sandbox: SandboxServer, tmp_path: Path, connection: str
) -> tuple[subprocess.Popen[str], str]:
    settings = sandbox_settings(sandbox, f"sqlite:///{tmp_path / 'state.db'}", connection)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PPW_")}
    env.update(
        PPW_PP_BASE_URL=settings.pp_base_url,
        PPW_PP_CLIENT_ID=settings.pp_client_id,
        PPW_PP_CLIENT_SECRET=settings.pp_client_secret.get_secret_value(),
        PPW_PP_REDIRECT_URI=settings.pp_redirect_uri,
        PPW_STATE_URL=settings.state_url,
        PPW_CONNECTION_ID=connection,
        PYTHONUNBUFFERED="1",
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "worker", "auth", "login", "--no-browser", "--timeout", "30"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    lines: list[str] = []
    for line in process.stdout:
        lines.append(line)
        found = URL.search(line)
        if found:
            return process, found.group(0)
    process.wait(10)
    pytest.fail("`ppw auth login` printed no authorize URL:\n" + "".join(lines))


def _with_state(location: str, state: str) -> str:
    parts = urlsplit(location)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    query["state"] = state
    return urlunsplit(parts._replace(query=urlencode(query)))


def test_forged_state_is_refused_and_nothing_is_stored(
    sandbox: SandboxServer, tmp_path: Path, connection_id: str
) -> None:
    admin = SandboxAdmin(sandbox.url)
    mark = admin.mark()
    process, authorize = _login_process(sandbox, tmp_path, connection_id)
    try:
        # the browser: PracticePanther approves and redirects with a code and the state ...
        approved = httpx.get(authorize, follow_redirects=False, timeout=10)
        assert approved.status_code == 302
        genuine = approved.headers["location"]
        # ... but what reaches the worker carries another state (an attacker's link)
        forged = httpx.get(_with_state(genuine, "attacker-chosen-state"), timeout=30)
        assert forged.status_code == 400
        assert "refused" in forged.text.lower()
        output, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    assert process.returncode != 0
    assert "state does not match" in output
    code = parse_qs(urlsplit(genuine).query)["code"][0]
    assert code not in output, "the authorization code is not printed"

    token_calls = [r for r in admin.requests(mark)["requests"] if r["path"] == "/OAuth/Token"]
    assert token_calls == [], "the code of a refused redirect is never exchanged"
    store = open_store(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        assert TokenStore(store, connection_id, None).load() is None, "nothing was stored"
    finally:
        store.close()
    with pytest.raises(httpx.TransportError):
        httpx.get(genuine, timeout=3)  # the listener is gone with the refused attempt
    admin.http.close()

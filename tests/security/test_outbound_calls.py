"""What leaves the worker over HTTP: signed so a receiver can trust it, and only to allowed hosts.

- A webhook step with ``secret: signing`` arrives with ``X-PPW-Signature``; a receiver holding the
  secret verifies it with :func:`worker.actions.signing.verify` (the reference the docs give), and
  the same check rejects a changed body, another secret and a replay past the tolerance.
- ``http.request`` to a host that ``PPW_HTTP_ALLOWED_HOSTS`` does not list is refused before any
  byte is sent, and so is a redirect from an allowed host to another one. Both runs are
  dead-lettered with the reason; the other host receives nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.chaos.conftest import Chaos
from tests.chaos.harness import eventually
from tests.fixtures.stubs import Reply, StubServer
from worker.actions.signing import DEFAULT_TOLERANCE, HEADER, verify

SIGNING = "whsec_receiver_shared_secret_42"

SIGNED_RULE = """\
- id: signed-hook
  trigger: {{resource: matters, on: updated, changed: status, to: Closed}}
  steps:
    - id: signed
      type: http.request
      with:
        url: "{hook}"
        secret: signing
        json: {{matter: "{{{{ record.id }}}}", name: "{{{{ record.display_name }}}}"}}
"""


def test_receiver_verifies_the_signature(chaos_factory: Callable[..., Chaos], redis_url: str) -> None:
    chaos = chaos_factory(
        state_url=redis_url, broker_url=redis_url, rules=SIGNED_RULE, PPW_WEBHOOK_SECRETS__SIGNING=SIGNING
    )
    chaos.process("run").start()
    eventually(chaos.primed, 20, "the first poll to prime matters")
    [matter] = chaos.close(chaos.open_matters(1))
    [request] = chaos.stub.wait_for(1, "/closed", timeout=30)

    header = request.header(HEADER)
    assert header and header.startswith("t=") and ",v1=" in header
    assert request.json["matter"] == matter["id"]
    assert verify(SIGNING, header, request.body), "the receiver accepts what the worker signed"
    assert not verify(SIGNING, header, request.body.replace(matter["id"].encode(), b"x" * 36)), "body changed"
    assert not verify("another-secret", header, request.body), "signed with another secret"
    stamp = int(header.split(",")[0].removeprefix("t="))
    assert not verify(SIGNING, header, request.body, now=stamp + DEFAULT_TOLERANCE + 1), "replayed later"
    assert request.header("Idempotency-Key"), "receivers can drop a repeat"
    assert SIGNING not in request.body.decode() and SIGNING not in str(request.headers)


@pytest.fixture
def elsewhere() -> Iterator[StubServer]:
    """A host that is not allowed; it must never receive anything."""
    server = StubServer().start()
    yield server
    server.stop()


DISALLOWED_RULES = """\
- id: to-elsewhere
  trigger: {{resource: matters, on: updated, changed: status, to: Closed}}
  steps:
    - id: direct
      type: http.request
      with: {{url: "{elsewhere}/collect", json: {{matter: "{{{{ record.id }}}}"}}}}
- id: via-redirect
  trigger: {{resource: matters, on: updated, changed: status, to: Closed}}
  steps:
    - id: redirected
      type: http.request
      with: {{url: "{hook}/bounce", json: {{matter: "{{{{ record.id }}}}"}}}}
"""


def test_hosts_not_allowed_are_refused(
    chaos_factory: Callable[..., Chaos], redis_url: str, elsewhere: StubServer
) -> None:
    rules = DISALLOWED_RULES.replace("{elsewhere}", elsewhere.url)
    chaos = chaos_factory(state_url=redis_url, broker_url=redis_url, rules=rules)
    chaos.stub.route("/closed/bounce", lambda _r: Reply(307, "", {"Location": f"{elsewhere.url}/collect"}))
    chaos.process("run").start()
    eventually(chaos.primed, 20, "the first poll to prime matters")
    chaos.close(chaos.open_matters(1))

    dead = eventually(
        lambda: (runs := [r for r in chaos.runs() if r.status == "dead"]) and len(runs) == 2 and runs,
        30,
        "both runs to be dead-lettered",
    )
    reasons = {r.rule_id: r.error or "" for r in dead}
    assert "refused" in reasons["to-elsewhere"] and "PPW_HTTP_ALLOWED_HOSTS" in reasons["to-elsewhere"]
    assert "redirect" in reasons["via-redirect"]
    assert all(r.attempts == 1 for r in dead), "a refusal is permanent: not retried"
    assert elsewhere.requests == [], "the host that is not allowed received nothing"
    assert len(chaos.stub.received("/closed/bounce")) == 1, "the allowed host was called once"

"""http.request: allowed hosts, HMAC signature, idempotency key, retries classified, redirects."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator

import pytest
from pydantic import SecretStr
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tests.actions.helpers import execute
from tests.fixtures.stubs import Reply, StubServer
from worker.actions.errors import StepError
from worker.actions.http import check_destination, host_allowed
from worker.actions.services import Services
from worker.actions.signing import verify
from worker.settings import Settings
from worker.state.base import StateStore

SECRET = "whsec-test-0123456789"
SWH_SECRET = "whsec_" + base64.b64encode(b"receiver-and-ppw-share-this-key").decode()


@pytest.fixture
def services(sqlite_store: StateStore) -> Iterator[Services]:
    settings = Settings(
        http_allowed_hosts=["127.0.0.1"],
        webhook_secrets={"intake": SecretStr(SECRET), "receiver": SecretStr(SWH_SECRET)},
        state_url="sqlite:///unused.db",
    )
    svc = Services(settings, sqlite_store)
    yield svc
    svc.close()


def test_no_allowed_hosts_refuses_every_destination(
    sqlite_store: StateStore, stub_server: StubServer
) -> None:
    svc = Services(Settings(), sqlite_store)
    with pytest.raises(StepError) as caught:
        execute(svc, "http.request", {"url": f"{stub_server.url}/hook", "json": {}}, connection="c")
    assert not caught.value.transient
    assert "PPW_HTTP_ALLOWED_HOSTS" in caught.value.message
    assert stub_server.received() == []


def test_host_not_in_the_list_is_refused(sqlite_store: StateStore) -> None:
    svc = Services(Settings(http_allowed_hosts=["hooks.example.com", "*.corp.example"]), sqlite_store)
    with pytest.raises(StepError, match="not in PPW_HTTP_ALLOWED_HOSTS"):
        execute(svc, "http.request", {"url": "https://evil.example.net/x"}, connection="c")


def test_signed_request_verifies_at_the_receiver(services: Services, stub_server: StubServer) -> None:
    body = {"matter": "m-1", "status": "Closed"}
    result = execute(
        services,
        "http.request",
        {"url": f"{stub_server.url}/hook", "json": body, "secret": "intake", "headers": {"X-Firm": "acme"}},
        connection="c",
    )
    [got] = stub_server.received("/hook")
    signature = got.header("X-PPW-Signature")
    assert signature is not None and signature.startswith("t=")
    assert verify(SECRET, signature, got.body)
    assert not verify("wrong-secret", signature, got.body)
    assert not verify(SECRET, signature, got.body + b" ")
    assert json.loads(got.body) == body
    assert got.header("X-Firm") == "acme"
    assert result.output["status"] == 200 and result.output["text"] == "ok"
    # the run history gets the request with the signature masked
    assert result.request["headers"]["X-PPW-Signature"] == "[redacted]"
    assert SECRET not in json.dumps(result.request)


def test_standard_webhooks_signature_verifies_with_the_standard_library(
    services: Services, stub_server: StubServer
) -> None:
    stub_server.script("/swh", Reply(503, "busy"))
    body = {"matter": "m-7", "status": "Closed"}
    params = {
        "url": f"{stub_server.url}/swh",
        "json": body,
        "secret": "receiver",
        "signature": "standard-webhooks",
    }
    with pytest.raises(StepError):
        execute(services, "http.request", params, connection="c")
    result = execute(services, "http.request", params, connection="c")
    first, retry = stub_server.received("/swh")
    receiver = Webhook(SWH_SECRET)
    for got in (first, retry):
        headers = {
            name: got.header(name) or "" for name in ("webhook-id", "webhook-timestamp", "webhook-signature")
        }
        assert receiver.verify(got.body, headers) == body
        # webhook-id is the idempotency key: the same on the retry, so the receiver dedupes on it
        assert headers["webhook-id"] == got.header("Idempotency-Key")
        assert got.header("X-PPW-Signature") is None
        with pytest.raises(WebhookVerificationError):
            receiver.verify(got.body + b" ", headers)
        with pytest.raises(WebhookVerificationError):
            Webhook("whsec_" + base64.b64encode(b"x" * 32).decode()).verify(got.body, headers)
    assert first.header("webhook-id") == retry.header("webhook-id")
    assert result.request["headers"]["webhook-signature"] == "[redacted]"
    assert SWH_SECRET not in json.dumps(result.request)


def test_standard_webhooks_signature_needs_a_whsec_secret_and_a_secret_at_all(
    services: Services, stub_server: StubServer
) -> None:
    with pytest.raises(StepError, match="whsec_<base64> secret in PPW_WEBHOOK_SECRETS__INTAKE") as caught:
        execute(
            services,
            "http.request",
            {"url": f"{stub_server.url}/x", "json": {}, "secret": "intake", "signature": "standard-webhooks"},
            connection="c",
        )
    assert not caught.value.transient and stub_server.received() == []
    with pytest.raises(Exception, match="needs secret: NAME"):
        execute(
            services,
            "http.request",
            {"url": f"{stub_server.url}/x", "signature": "standard-webhooks"},
            connection="c",
        )


def test_idempotency_key_is_stable_across_retries(services: Services, stub_server: StubServer) -> None:
    stub_server.script("/hook", Reply(503, "busy", {"Retry-After": "2"}))
    params = {"url": f"{stub_server.url}/hook", "json": {"a": 1}}
    with pytest.raises(StepError) as caught:
        execute(services, "http.request", params, connection="c")
    assert caught.value.transient and caught.value.retry_after == 2.0
    execute(services, "http.request", params, connection="c")
    execute(services, "http.request", params, connection="c", step_id="other")
    first, second, other = stub_server.received("/hook")
    key = first.header("Idempotency-Key")
    assert key and key == second.header("Idempotency-Key")
    assert other.header("Idempotency-Key") != key


def test_client_errors_are_permanent_and_server_errors_transient(
    services: Services, stub_server: StubServer
) -> None:
    stub_server.script("/hook", Reply(422, {"error": "bad matter"}), Reply(500, "oops"))
    params = {"url": f"{stub_server.url}/hook", "json": {}}
    with pytest.raises(StepError) as permanent:
        execute(services, "http.request", params, connection="c")
    assert not permanent.value.transient and "422" in permanent.value.message
    with pytest.raises(StepError) as transient:
        execute(services, "http.request", params, connection="c")
    assert transient.value.transient and transient.value.may_have_applied


def test_redirects_only_within_the_same_host(services: Services, stub_server: StubServer) -> None:
    stub_server.script("/old", Reply(307, "", {"Location": "/new"}))
    result = execute(
        services, "http.request", {"url": f"{stub_server.url}/old", "json": {"x": 1}}, connection="c"
    )
    assert result.output["status"] == 200
    assert [r.path for r in stub_server.received()] == ["/old", "/new"]
    assert stub_server.received("/new")[0].json == {"x": 1}

    stub_server.script("/away", Reply(302, "", {"Location": "https://elsewhere.example/steal"}))
    with pytest.raises(StepError, match="another host"):
        execute(services, "http.request", {"url": f"{stub_server.url}/away"}, connection="c")


def test_json_response_is_available_to_later_steps(services: Services, stub_server: StubServer) -> None:
    stub_server.script("/api", Reply(201, {"ticket": 42}))
    result = execute(services, "http.request", {"url": f"{stub_server.url}/api", "json": {}}, connection="c")
    assert result.output["status"] == 201 and result.output["json"] == {"ticket": 42}


@pytest.mark.parametrize(
    ("url", "allowed", "expected"),
    [
        ("https://hooks.example.com/x", ["hooks.example.com"], True),
        ("https://HOOKS.example.com./x", [" Hooks.Example.com ", ""], True),
        ("https://a.b.corp.example/x", ["*.corp.example"], True),
        ("https://corp.example/x", ["*.corp.example"], False),
        ("https://hooks.example.com:8443/x", ["hooks.example.com:8443"], True),
        ("https://hooks.example.com/x", ["hooks.example.com:8443"], False),
        ("http://hooks.example.com/x", ["hooks.example.com:80"], True),
        ("https://hooks.example.com/x", ["hooks.example.com:443"], True),
        ("https://evil.example.net/x", ["hooks.example.com", "*.corp.example"], False),
        ("https:///no-host", ["hooks.example.com"], False),
    ],
)
def test_host_allowed(url: str, allowed: list[str], expected: bool) -> None:
    assert host_allowed(url, allowed) is expected
    assert host_allowed(url, allowed) is expected, "the parsed allow list is reused"


def test_a_changed_allow_list_is_read_afresh() -> None:
    url = "https://hooks.example.com/x"
    assert host_allowed(url, ["hooks.example.com"])
    assert not host_allowed(url, ["other.example.com"])
    assert host_allowed(url, ("other.example.com", "hooks.example.com"))


def test_check_destination_hands_back_the_host() -> None:
    assert (
        check_destination("https://Hooks.Example.com:8443/x", ["hooks.example.com:8443"])
        == "hooks.example.com"
    )
    with pytest.raises(StepError, match="http:// or https://"):
        check_destination("ftp://hooks.example.com/x", ["hooks.example.com"])

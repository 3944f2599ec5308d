"""Sentry events leave without client records, message arguments, local variables or secrets.

The events are real: produced by sentry-sdk's Dramatiq and logging integrations around a real
Dramatiq worker, and caught by a transport stub (the SDK's own border to the network).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import dramatiq
import pytest
import sentry_sdk
from dramatiq.brokers.stub import StubBroker
from sentry_sdk.envelope import Envelope
from sentry_sdk.transport import Transport

from worker.observability import init_sentry, log_context
from worker.settings import Settings

from .conftest import BOT_TOKEN, CLIENT_SECRET, SLACK_URL, make_settings

PRIVILEGED = "Smith divorce: settlement offer 250k"
log = logging.getLogger("worker.tests.sentry")
log.setLevel(logging.INFO)  # as configure_logging sets the root; breadcrumbs start at INFO


class RecordingTransport(Transport):
    """Keeps envelopes in memory instead of sending them."""

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        super().__init__(options)
        self.envelopes: list[Envelope] = []

    def capture_envelope(self, envelope: Envelope) -> None:
        self.envelopes.append(envelope)

    @property
    def events(self) -> list[dict[str, Any]]:
        return [dict(event) for env in self.envelopes if (event := env.get_event()) is not None]

    def dump(self) -> str:
        return json.dumps([item.payload.json for env in self.envelopes for item in env.items], default=str)


@pytest.fixture
def transport(secret_settings: Settings, reset_sentry: None) -> Iterator[RecordingTransport]:
    recorder = RecordingTransport()
    assert init_sentry(secret_settings, transport=recorder)
    yield recorder


def test_without_a_dsn_sentry_stays_off(reset_sentry: None) -> None:
    assert init_sentry(make_settings()) is False
    assert not sentry_sdk.get_client().is_active()


def test_options_keep_pii_and_locals_out(transport: RecordingTransport) -> None:
    options = sentry_sdk.get_client().options
    assert not options.get("send_default_pii")
    assert options["include_local_variables"] is False
    collection = options.get("data_collection")
    if collection and collection.get("provided_by_user"):  # sentry-sdk versions with data_collection
        assert collection["user_info"] is False
        assert collection["http_bodies"] == []
        assert collection["queues"] is False
        assert collection["stack_frame_variables"] is False
    assert options["max_request_body_size"] == "never"
    assert options["release"].startswith("ppw@")


def test_dramatiq_failure_event_is_scrubbed(transport: RecordingTransport) -> None:
    broker = StubBroker()  # created after init_sentry, so the Sentry middleware is installed
    broker.emit_after("process_boot")
    assert any(type(m).__name__ == "SentryMiddleware" for m in broker.middleware)

    @dramatiq.actor(broker=broker, max_retries=0, queue_name="ops-sentry-test")
    def run_rule(event: dict[str, Any]) -> None:
        note = event["record"]["notes"]  # a local variable holding client data
        with log_context(event_id=event["id"], rule_id="close-matter"):
            log.info("calling %s?access_token=at-in-breadcrumb", "https://pp.example/api/v2/tasks")
            secret = f"client_secret={CLIENT_SECRET}"
            raise RuntimeError(f"PUT failed: Bearer at-live-123 rejected, {secret} {len(note)}")

    event = {
        "id": "ev-42",
        "record": {"id": "m1", "notes": PRIVILEGED},
        "previous": {"notes": PRIVILEGED},
        "changes": {"notes": {"old": None, "new": PRIVILEGED}},
    }
    worker = dramatiq.Worker(broker, worker_timeout=50)
    worker.start()
    try:
        run_rule.send(event)
        broker.join("ops-sentry-test", fail_fast=False, timeout=20_000)
        worker.join()
    finally:
        worker.stop()
    sentry_sdk.flush(timeout=5)

    dump = transport.dump()
    for leaked in (PRIVILEGED, CLIENT_SECRET, "at-live-123", "at-in-breadcrumb"):
        assert leaked not in dump

    failures = [e for e in transport.events if e.get("exception")]
    assert failures, "the failure reached Sentry"
    # Dramatiq logs the failure and its Sentry middleware captures it; the SDK keeps the first.
    (error,) = failures
    assert error["exception"]["values"][-1]["type"] == "RuntimeError"
    assert error["contexts"]["dramatiq"].get("data") in (None, "", "[Filtered]")
    assert "run_rule[" in error["logentry"]["message"], "the message is named by actor and id only"
    frames = error["exception"]["values"][-1]["stacktrace"]["frames"]
    assert frames and all("vars" not in frame for frame in frames)
    assert error["tags"]["event_id"] == "ev-42"
    assert error["tags"]["rule_id"] == "close-matter"
    crumbs = [c for c in error["breadcrumbs"]["values"] if c.get("category") == "worker.tests.sentry"]
    assert crumbs and "access_token=[redacted]" in crumbs[-1]["message"]


def test_logged_error_with_record_extra_is_scrubbed(transport: RecordingTransport) -> None:
    with log_context(event_id="ev-9", resource="matters"):
        log.error(
            "slack post to %s failed for %s",
            SLACK_URL,
            {"record": {"notes": PRIVILEGED}, "token": BOT_TOKEN},
            extra={"record": {"notes": PRIVILEGED}, "changes": {"notes": PRIVILEGED}, "attempt": 3},
        )
    sentry_sdk.flush(timeout=5)

    dump = transport.dump()
    for leaked in (PRIVILEGED, BOT_TOKEN, "XXXXXXXXXXXXXXXXXXXXXXXX"):
        assert leaked not in dump
    (event,) = transport.events
    assert event["logentry"]["params"] == []
    message = event["logentry"]["message"]
    assert message == "slack post to [redacted] failed for {'record': '[Filtered]', 'token': '[redacted]'}"
    assert event["extra"]["record"] == "[Filtered]"
    assert event["extra"]["attempt"] == 3
    assert event["tags"]["resource"] == "matters"


def test_captured_message_masks_known_secret_values(transport: RecordingTransport) -> None:
    sentry_sdk.capture_message(f"token endpoint rejected {CLIENT_SECRET}")
    sentry_sdk.flush(timeout=5)
    assert CLIENT_SECRET not in transport.dump()
    assert transport.events[0]["message"] == "token endpoint rejected [redacted]"

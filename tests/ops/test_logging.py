"""Log lines carry the bound context and never a secret, in both formats."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Any

import dramatiq

from worker.observability import bind, log_context, unbind
from worker.observability.scrub import MASK
from worker.settings import Settings

from .conftest import BOT_TOKEN, CLIENT_SECRET, HOOK_SECRET, REPO, SLACK_URL, make_settings

log = logging.getLogger("worker.tests.ops")
Capture = Callable[[Settings], io.StringIO]


def json_lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def test_json_records_carry_context_fields(capture_logs: Capture) -> None:
    stream = capture_logs(make_settings(log_format="json"))
    with log_context(connection="default", resource="matters"):
        with log_context(event_id="e1", rule_id="close-matter", run_id="r9"):
            log.info("running %s", "step 1")
        log.warning("after the run")
    log.info("outside")

    inner, after, outside = json_lines(stream)
    assert inner["message"] == "running step 1"
    assert inner["level"] == "INFO"
    assert inner["logger"] == "worker.tests.ops"
    assert {k: inner[k] for k in ("connection", "resource", "event_id", "rule_id", "run_id")} == {
        "connection": "default",
        "resource": "matters",
        "event_id": "e1",
        "rule_id": "close-matter",
        "run_id": "r9",
    }
    assert after["resource"] == "matters" and "event_id" not in after
    assert "resource" not in outside


def test_text_format_lists_standard_fields_first(capture_logs: Capture) -> None:
    stream = capture_logs(make_settings(log_format="text"))
    with log_context(run_id="r1", resource="tasks", connection="firm-a"):
        log.info("done", extra={"attempt": 2})
    line = stream.getvalue().strip()
    assert line.endswith(
        "INFO    worker.tests.ops [connection=firm-a resource=tasks run_id=r1 attempt=2] done"
    )


def test_bind_and_unbind_span_two_callbacks(capture_logs: Capture) -> None:
    stream = capture_logs(make_settings(log_format="json"))
    token = bind(event_id="e7", rule_id=None)
    log.info("bound")
    unbind(token)
    log.info("unbound")
    bound, unbound = json_lines(stream)
    assert bound["event_id"] == "e7" and "rule_id" not in bound
    assert "event_id" not in unbound


def test_context_does_not_leak_between_threads(capture_logs: Capture) -> None:
    stream = capture_logs(make_settings(log_format="json"))
    with log_context(event_id="main-thread"):
        thread = threading.Thread(target=lambda: log.info("from another thread"))
        thread.start()
        thread.join()
    (record,) = json_lines(stream)
    assert "event_id" not in record


def test_secrets_are_masked_in_message_args_extra_and_exception(
    capture_logs: Capture, secret_settings: Settings
) -> None:
    stream = capture_logs(secret_settings.model_copy(update={"log_format": "json"}))
    log.info("client secret %s and bot %s", CLIENT_SECRET, BOT_TOKEN)
    log.info("posting to %s", SLACK_URL, extra={"signing": HOOK_SECRET, "headers": {"Authorization": "x"}})
    log.info("token response %s", {"access_token": "at-runtime-1", "refresh_token": "rt-runtime-2"})
    try:
        raise RuntimeError(f"PUT failed, header Bearer at-runtime-3, secret {CLIENT_SECRET}")
    except RuntimeError:
        log.exception("step failed")

    output = stream.getvalue()
    for leaked in (CLIENT_SECRET, BOT_TOKEN, HOOK_SECRET, "XXXXXXXXXXXX", "at-runtime-1", "rt-runtime-2"):
        assert leaked not in output
    assert "at-runtime-3" not in output
    records = json_lines(stream)
    assert records[1]["signing"] == MASK
    assert records[1]["headers"] == {"Authorization": MASK}
    assert "RuntimeError: PUT failed" in str(records[3]["exc_info"])
    assert "Traceback" in str(records[3]["exc_info"])


def test_a_request_line_with_a_webhook_path_is_masked(
    capture_logs: Capture, secret_settings: Settings
) -> None:
    stream = capture_logs(secret_settings)
    path = SLACK_URL.split("hooks.slack.com", 1)[1]
    logging.getLogger("some.http.library").warning('"POST %s HTTP/1.1" 200 2', path)
    output = stream.getvalue()
    assert "XXXXXXXXXXXX" not in output
    assert f'"POST {MASK} HTTP/1.1" 200 2' in output


def test_text_format_masks_exception_text(capture_logs: Capture, secret_settings: Settings) -> None:
    stream = capture_logs(secret_settings)
    try:
        raise ValueError(f"bad secret {CLIENT_SECRET}")
    except ValueError:
        log.error("failed", exc_info=True)
    output = stream.getvalue()
    assert CLIENT_SECRET not in output
    assert f"ValueError: bad secret {MASK}" in output


def test_reconfiguring_replaces_the_handler(capture_logs: Capture) -> None:
    first = capture_logs(make_settings(log_format="json"))
    second = capture_logs(make_settings(log_format="text", log_level="WARNING"))
    log.info("dropped by level")
    log.warning("kept")
    assert first.getvalue() == ""
    assert second.getvalue().count("\n") == 1
    assert "kept" in second.getvalue()


def test_environment_drives_format_and_masking() -> None:
    """A real process configured only through PPW_ variables writes masked JSON to stderr."""
    script = (
        "import logging\n"
        "from worker.settings import get_settings\n"
        "from worker.observability import configure_logging, log_context\n"
        "configure_logging(get_settings())\n"
        "with log_context(resource='matters'):\n"
        "    logging.getLogger('worker.x').info('secret is %s', get_settings().pp_client_secret"
        ".get_secret_value())\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PPW_")}
    env.update(PPW_LOG_FORMAT="json", PPW_PP_CLIENT_SECRET=CLIENT_SECRET)
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO / "tests",
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    (record,) = [json.loads(line) for line in result.stderr.splitlines()]
    assert record["message"] == f"secret is {MASK}"
    assert record["resource"] == "matters"


def test_exception_carries_its_context_to_the_line_that_reports_it(capture_logs: Capture) -> None:
    stream = capture_logs(make_settings(log_format="json"))
    try:
        with log_context(resource="tasks"), log_context(event_id="e5", rule_id="r"):
            raise KeyError("matter_ref")
    except KeyError:
        log.exception("run failed")  # logged where the context has already been left
    (record,) = json_lines(stream)
    assert (record["resource"], record["event_id"], record["rule_id"]) == ("tasks", "e5", "r")


def test_client_records_stay_out_of_log_arguments(capture_logs: Capture) -> None:
    stream = capture_logs(make_settings(log_format="json"))
    privileged = "Smith divorce: settlement offer"
    message: dramatiq.Message[Any] = dramatiq.Message(
        queue_name="default",
        actor_name="run_rule",
        args=({"record": {"notes": privileged}},),
        kwargs={},
        options={},
    )
    log.error("Failed to process message %s with unhandled exception.", message)
    log.info("event %s", {"id": "e1", "changes": {"notes": {"old": None, "new": privileged}}})
    log.info("fired", extra={"record": {"notes": privileged}, "attempt": 1})
    first, second, third = json_lines(stream)
    assert privileged not in stream.getvalue()
    assert (
        first["message"]
        == f"Failed to process message run_rule[{message.message_id}] with unhandled exception."
    )
    assert second["message"] == "event {'id': 'e1', 'changes': '[Filtered]'}"
    assert (third["record"], third["attempt"]) == ("[Filtered]", 1)

"""teams.post against a local Workflows stand-in: text and Adaptive Cards, the card check, a 429
retried through the runner, a 400 for good, and the webhook URL in no history, error or log."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from tests.actions.helpers import execute
from tests.fixtures.stubs import Reply, StubServer
from worker.actions.base import step_type
from worker.actions.errors import StepError
from worker.actions.services import Services
from worker.delivery.app import DeliveryApp
from worker.delivery.dispatch import Dispatcher
from worker.delivery.rulebook import EngineRuleBook
from worker.delivery.runner import Runner
from worker.events import Change, Event
from worker.observability import scrub
from worker.observability.logs import PpwHandler, configure_logging
from worker.rules.checker import CheckConfig
from worker.rules.loader import load_text
from worker.rules.watcher import RuleRegistry
from worker.settings import Settings
from worker.state.base import StateStore

#: Shaped like a Workflows URL: the ``sig`` is the credential.
FLOW = "/workflows/4f1c0de5/triggers/manual/paths/invoke"
SIG = "sig=Zm9vYmFyYmF6cXV4c2VjcmV0c2ln"
QUERY = f"api-version=2016-06-01&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&{SIG}"

CARD = {
    "type": "AdaptiveCard",
    "version": "1.5",
    "body": [
        {"type": "TextBlock", "text": "Matter closed", "weight": "Bolder"},
        {"type": "FactSet", "facts": [{"title": "Matter", "value": "Smith v. Jones"}]},
    ],
    "actions": [{"type": "Action.OpenUrl", "title": "Open", "url": "https://app.practicepanther.com/"}],
}


def _settings(teams: StubServer, **values: object) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        teams_webhooks={"billing": SecretStr(f"{teams.url}{FLOW}?{QUERY}")},
        **values,
    )


def _services(store: StateStore, teams: StubServer) -> Services:
    return Services(_settings(teams), store)


def test_text_is_sent_as_a_card_with_one_textblock(sqlite_store: StateStore, stub_server: StubServer) -> None:
    stub_server.script(FLOW, Reply(202, ""))
    result = execute(
        _services(sqlite_store, stub_server),
        "teams.post",
        {"webhook": "billing", "text": "Hi"},
        connection="c",
    )
    [got] = stub_server.received(FLOW)
    assert got.header("Content-Type") == "application/json"
    assert got.json["type"] == "message"
    [attachment] = got.json["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = attachment["content"]
    assert card["type"] == "AdaptiveCard" and float(card["version"]) <= 1.5
    assert card["body"] == [{"type": "TextBlock", "text": "Hi", "wrap": True}]
    assert result.output == {"ok": True, "status": 202}
    assert result.request["webhook"] == "billing"
    assert "sig" not in json.dumps([result.request, result.response])


def test_a_card_from_the_rule_is_sent_as_written(sqlite_store: StateStore, stub_server: StubServer) -> None:
    execute(
        _services(sqlite_store, stub_server),
        "teams.post",
        {"webhook": "billing", "card": CARD},
        connection="c",
    )
    [got] = stub_server.received(FLOW)
    assert got.json["attachments"][0]["content"] == CARD


@pytest.mark.parametrize(
    ("card", "said"),
    [
        ({**CARD, "version": "1.6"}, "card.version: '1.6' is not an Adaptive Card version Teams accepts"),
        ({**CARD, "type": "MessageCard"}, "card.type: unknown card type 'MessageCard'"),
        ({k: v for k, v in CARD.items() if k != "body"}, "'body' is a required property"),
        ({**CARD, "body": {"type": "TextBlock"}}, "card.body: {'type': 'TextBlock'} is not of type 'array'"),
        ({**CARD, "body": [{"type": "Textblock", "text": "x"}]}, "unknown element type 'Textblock'"),
        ({**CARD, "body": [{"type": "TextBlock"}]}, "card.body[0]: 'text' is a required property"),
        (
            {**CARD, "body": [{"type": "Container", "items": [{"type": "Nope"}]}]},
            "card.body[0].items[0].type: unknown element type 'Nope'",
        ),
        ({**CARD, "actions": [{"type": "Action.OpenUrl"}]}, "card.actions[0]: 'url' is a required property"),
    ],
)
def test_cards_teams_would_refuse_are_rejected_by_the_model(card: dict[str, object], said: str) -> None:
    with pytest.raises(ValidationError) as caught:
        step_type("teams.post").params.model_validate({"webhook": "billing", "card": card})
    assert said in str(caught.value)


def test_rules_check_finds_a_bad_card_with_a_hint_and_lets_templates_be() -> None:
    rule = """\
- id: teams-rule
  trigger: {resource: matters, on: updated}
  steps:
    - type: teams.post
      with:
        webhook: billing
        card:
          type: AdaptiveCard
          version: 1.5
          body:
            - {type: TextBlock, text: "{{ record.name }} closed"}
            - {type: FactSet, facts: "{{ [] }}"}
            - {type: Textblok, text: x}
"""
    [diagnostic] = load_text(rule, "teams.yaml").diagnostics
    assert "card.body[2].type: unknown element type 'Textblok'" in diagnostic.message
    assert "TextBlock" in (diagnostic.hint or "")
    assert load_text(rule.replace("Textblok", "TextBlock"), "teams.yaml").diagnostics == []


def test_exactly_one_of_text_or_card() -> None:
    model = step_type("teams.post").params
    for params in ({"webhook": "billing"}, {"webhook": "billing", "text": "x", "card": CARD}):
        with pytest.raises(ValidationError, match="exactly one of 'text' or 'card'"):
            model.model_validate(params)


def test_unknown_webhook_name_is_permanent(sqlite_store: StateStore, stub_server: StubServer) -> None:
    with pytest.raises(StepError) as caught:
        execute(
            _services(sqlite_store, stub_server),
            "teams.post",
            {"webhook": "nosuch", "text": "x"},
            connection="c",
        )
    assert not caught.value.transient and "PPW_TEAMS_WEBHOOKS__NOSUCH" in caught.value.message


def test_400_is_permanent_and_429_transient_with_retry_after(
    sqlite_store: StateStore, stub_server: StubServer
) -> None:
    svc = _services(sqlite_store, stub_server)
    refused = {"error": {"code": "InvalidRequestContent", "message": f"bad card at {FLOW}?{QUERY}"}}
    stub_server.script(FLOW, Reply(400, refused), Reply(429, "", {"Retry-After": "7"}), Reply(503, ""))
    with pytest.raises(StepError) as bad:
        execute(svc, "teams.post", {"webhook": "billing", "text": "x"}, connection="c")
    assert not bad.value.transient and "400" in bad.value.message and "bad card at" in bad.value.message
    with pytest.raises(StepError) as limited:
        execute(svc, "teams.post", {"webhook": "billing", "text": "x"}, connection="c")
    assert limited.value.transient and limited.value.retry_after == 7.0
    with pytest.raises(StepError) as down:
        execute(svc, "teams.post", {"webhook": "billing", "text": "x"}, connection="c")
    assert down.value.transient
    for error in (bad, limited, down):
        assert "Zm9vYmFy" not in error.value.message and FLOW not in error.value.message


RULE = """\
- id: closed-to-teams
  trigger: {resource: matters, on: updated, changed: status, to: Closed}
  steps:
    - id: tell
      type: teams.post
      with:
        webhook: billing
        card:
          type: AdaptiveCard
          version: "1.5"
          body:
            - {type: TextBlock, text: "{{ record.name }} closed", wrap: true}
"""


def _run_rule(
    tmp_path: Path, store: StateStore, settings: Settings, connection: str
) -> tuple[DeliveryApp, Runner, str]:
    rules_dir = tmp_path / "rules"
    rules_dir.mkdir()
    (rules_dir / "teams.yaml").write_text(RULE)
    settings = settings.model_copy(update={"rules_dir": rules_dir})
    registry = RuleRegistry(settings=settings)
    registry.load()
    assert not registry.status()["errors"], registry.status()["errors"]
    app = DeliveryApp.create(
        settings, store, EngineRuleBook(lambda: registry.engine, settings), services=Services(settings, store)
    )
    event = Event.build(
        type="updated",
        resource="matters",
        record_id="m-1",
        revision="2026-04-06T10:00:01Z",
        connection=connection,
        record={"id": "m-1", "name": "Smith v. Jones", "status": "Closed"},
        changes={"status": Change(old="Open", new="Closed")},
    )
    app.events.save(event)
    [result] = Dispatcher(app).dispatch_many(connection, [event.id], lambda _c, _ids: None)
    [run_id] = result.runs
    return app, Runner(app), run_id


@pytest.fixture
def ppw_logs() -> Iterator[Callable[[Settings], io.StringIO]]:
    """ppw's own log handler (masking included) writing to a buffer; logging restored afterwards."""
    root = logging.getLogger()
    level, handlers, previous = root.level, list(root.handlers), scrub.get_scrubber()

    def capture(settings: Settings) -> io.StringIO:
        stream = io.StringIO()
        configure_logging(settings.model_copy(update={"log_level": "DEBUG"}), stream=stream)
        logging.getLogger("urllib3").setLevel(logging.DEBUG)  # its request lines show the URL's path
        return stream

    yield capture
    for ours in [h for h in root.handlers if isinstance(h, PpwHandler)]:
        root.removeHandler(ours)
    for handler in handlers:
        if handler not in root.handlers:
            root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger("urllib3").setLevel(logging.NOTSET)
    scrub.set_scrubber(previous)


def test_the_runner_retries_a_429_and_keeps_the_url_out_of_history_and_logs(
    sqlite_store: StateStore,
    stub_server: StubServer,
    tmp_path: Path,
    connection_id: str,
    ppw_logs: Callable[[Settings], io.StringIO],
) -> None:
    stub_server.script(FLOW, Reply(429, "slow down", {"Retry-After": "1"}), Reply(202, ""))
    settings = _settings(stub_server)
    logs = ppw_logs(settings)
    app, runner, run_id = _run_rule(tmp_path, sqlite_store, settings, connection_id)
    try:
        first = runner.run(connection_id, run_id)
        assert first.status == "retrying", first
        assert first.requeue_after is not None and first.requeue_after >= 1.0
        second = runner.run(connection_id, run_id)
        assert second.status == "succeeded", second
        got = stub_server.received(FLOW)
        assert len(got) == 2 and got[0].body == got[1].body
        assert got[1].json["attachments"][0]["content"]["body"][0]["text"] == "Smith v. Jones closed"
        run = app.history.get(connection_id, run_id)
        [step] = run.steps
        assert step.status == "done" and step.request["webhook"] == "billing"
        assert "answered 429" in logs.getvalue() and "POST [redacted]" in logs.getvalue()
        for text in (run.model_dump_json(), logs.getvalue()):
            assert "Zm9vYmFy" not in text and "4f1c0de5" not in text
    finally:
        app.close()


def test_the_webhook_url_is_a_secret_of_the_settings(stub_server: StubServer) -> None:
    settings = _settings(stub_server)
    assert f"{stub_server.url}{FLOW}?{QUERY}" in settings.secret_values()
    assert f"{FLOW}?{QUERY}" in settings.secret_values()  # as an HTTP library's request line shows it
    assert "Zm9vYmFy" not in repr(settings) and "Zm9vYmFy" not in str(settings.model_dump())


def test_describe_names_the_setting_not_the_url(stub_server: StubServer) -> None:
    described = step_type("teams.post").describe({"webhook": "billing", "text": "x"}, _settings(stub_server))
    assert described["url"] == "PPW_TEAMS_WEBHOOKS__BILLING"
    unset = step_type("teams.post").describe({"webhook": "other", "text": "x"}, _settings(stub_server))
    assert "NOT configured" in unset["url"]


def test_rules_check_warns_of_a_webhook_not_configured_where_it_runs(stub_server: StubServer) -> None:
    rule = RULE.replace("webhook: billing", "webhook: litigation")
    config = CheckConfig.from_settings(_settings(stub_server))
    [warning] = load_text(rule, "teams.yaml", config=config).diagnostics
    assert warning.severity == "warning" and "PPW_TEAMS_WEBHOOKS__LITIGATION" in (warning.hint or "")
    assert load_text(RULE, "teams.yaml", config=config).diagnostics == []

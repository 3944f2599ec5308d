"""The ``approval`` step's parameters as ``rules check`` sees them (the step class is the schema),
its links (signed, per approver, refused when tampered with), and the masking of links. The whole
ask-wait-decide path runs over real HTTP in tests/delivery/test_approvals.py."""

from __future__ import annotations

import pytest
from pydantic import SecretStr, ValidationError

from worker.actions.approval import ApprovalParams, approver_list
from worker.actions.approval_requests import ApprovalRequest, Approvals, BadLink, Decision
from worker.observability.scrub import Scrubber
from worker.rules.loader import load_text
from worker.settings import Settings
from worker.state.base import StateStore

RULE = """\
- id: write-off
  trigger: {resource: invoices, on: updated, changed: discount}
  steps:
    - id: partner
      type: approval
      with:
WITH
    - type: log
      if: steps.partner.approved
      with: {message: "approved by {{ steps.partner.by }} at {{ steps.partner.at }}"}
"""

SLACK = """\
        via: slack
        channel: "#billing"
        approvers: [U024BE7LH]
        text: "Write off {{ record.discount }}?"
        timeout: "2 business days"
"""


def _problems(with_: str) -> list[str]:
    return [d.message for d in load_text(RULE.replace("WITH\n", with_), "approval.yaml").diagnostics]


def test_a_good_approval_checks_clean_and_its_results_are_known() -> None:
    assert _problems(SLACK) == []
    text = RULE.replace("WITH\n", SLACK).replace("steps.partner.by", "steps.partner.who")
    [unknown] = load_text(text, "approval.yaml").diagnostics
    assert "'who'" in unknown.message and "'by'" in (unknown.hint or "")


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (('        channel: "#billing"\n', ""), "via: slack needs channel:"),
        (("U024BE7LH", "alice@firm.example"), "is not a Slack user id"),
        (('timeout: "2 business days"', 'timeout: "two days"'), "'two days' is not a duration"),
        (("via: slack", "via: email"), "channel: is for via: slack"),
        (("via: slack", "via: pigeon"), "via"),
        (('        text: "Write off {{ record.discount }}?"\n', ""), "text"),
        (('timeout: "2 business days"\n', 'timeout: "2 days"\n        on_decline: later\n'), "on_decline"),
    ],
)
def test_rules_check_names_what_is_wrong(change: tuple[str, str], expected: str) -> None:
    old, new = change
    problems = _problems(SLACK.replace(old, new))
    assert problems and any(expected in p for p in problems), problems


def test_email_approvers_are_addresses_checked_before_anything_is_sent() -> None:
    email = SLACK.replace("via: slack", "via: email").replace('        channel: "#billing"\n', "")
    assert _problems(email.replace("U024BE7LH", "a@firm.example, B <b@firm.example>")) == []
    problems = _problems(email.replace("U024BE7LH", "partner@"))
    assert "'partner@' is not an email address" in problems[0], problems
    assert _problems(email.replace("[U024BE7LH]", '"{{ record.matter_ref.display_name }}"')) == []


def test_approvers_in_any_spelling() -> None:
    assert approver_list("a@x.example, b@y.example") == ["a@x.example", "b@y.example"]
    assert approver_list(["U1AAA", "U1AAA", " U2BBB "]) == ["U1AAA", "U2BBB"]
    with pytest.raises(ValidationError, match="at least one approver"):
        ApprovalParams.model_validate({"via": "slack", "channel": "#x", "approvers": [], "text": "t"})


def _request(due: float = 2e9) -> ApprovalRequest:
    return ApprovalRequest(
        connection="c1",
        key="0123456789abcdef",
        run_id="r1",
        rule_id="write-off",
        step_id="partner",
        via="email",
        approvers=["a@firm.example"],
        text="Write off?",
        due=due,
        created=1.0,
    )


def test_links_are_signed_per_approver_and_refused_when_tampered_with(sqlite_store: StateStore) -> None:
    settings = Settings(approval_secret=SecretStr("x" * 40), public_url="https://ppw.firm.example/")
    approvals = Approvals(sqlite_store, settings)
    link = approvals.link(_request(), "a@firm.example")
    assert link.startswith("https://ppw.firm.example/approvals/")
    token = link.rsplit("/", 1)[1]
    read = approvals.read_link(token)
    assert (read.connection, read.key, read.approver, read.expires) == (
        "c1",
        "0123456789abcdef",
        "a@firm.example",
        2e9,
    )
    with pytest.raises(BadLink):
        approvals.read_link(token[:-2] + ("AA" if not token.endswith("AA") else "BB"))
    other = Approvals(sqlite_store, settings.model_copy(update={"approval_secret": SecretStr("y" * 40)}))
    with pytest.raises(BadLink):
        other.read_link(token)  # another deployment's secret
    with pytest.raises(ValueError, match="PPW_APPROVAL_SECRET"):
        Approvals(sqlite_store, Settings(public_url="https://x.example")).link(_request(), "a@firm.example")
    with pytest.raises(ValueError, match="PPW_PUBLIC_URL"):
        Approvals(sqlite_store, Settings(approval_secret=SecretStr("x" * 40))).link(_request(), "a")


def test_the_first_decision_stands(sqlite_store: StateStore) -> None:
    approvals = Approvals(sqlite_store, Settings())
    request = _request(due=4e9)
    first = Decision(decision="declined", by="a@firm.example", at=1.0, via="email")
    second = Decision(decision="approved", by="b@firm.example", at=2.0, via="email")
    assert approvals.decide(request, first) == (True, first)
    assert approvals.decide(request, second) == (False, first)
    assert approvals.decision("c1", request.key) == first


def test_links_and_the_new_secrets_are_masked() -> None:
    settings = Settings(
        slack_signing_secret=SecretStr("slack-signing-0123456789"),
        approval_secret=SecretStr("link-secret-0123456789"),
    )
    scrubber = Scrubber(settings.secret_values())
    link = "https://ppw.firm.example/approvals/eyJjIjoiYzEifQ.Nxje_rByV09weKDgmGEpaWoe3g4"
    text = f"sent {link} with slack-signing-0123456789"
    masked = scrubber.text(text)
    assert "eyJjIjoiYzEifQ" not in masked and "slack-signing-0123456789" not in masked
    assert "https://ppw.firm.example/approvals/" in masked

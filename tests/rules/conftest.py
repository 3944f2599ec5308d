"""Fixtures for the rules tests: settings with the example rules' secrets configured."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from worker.rules.ruleset import RuleSet
from worker.settings import Settings

HERE = Path(__file__).parent
REPO = HERE.parent.parent
RULES_DIR = REPO / "rules"
SAMPLES = HERE / "samples"
BROKEN = HERE / "broken"
VALID = HERE / "valid"

#: A fixed "now" for templates: Wednesday 15 April 2026, 10:00 in New York.
NOW = dt.datetime(2026, 4, 15, 14, 0, tzinfo=dt.UTC)

BILLING_URL = "https://hooks.slack.com/services/T000/B000/billingsecretvalue"
PARTNERS_URL = "https://hooks.slack.com/services/T000/B001/partnerssecretvalue"


def make_settings(**overrides: object) -> Settings:
    values: dict[str, object] = {
        "rules_dir": RULES_DIR,
        "timezone": "America/New_York",
        "slack_webhooks": {"billing": BILLING_URL, "partners": PARTNERS_URL},
        "webhook_secrets": {"intake": "hmac-secret-value-123"},
        "env_allowlist": ["FIRM_NAME"],
        "slack_bot_token": "xoxb-test-token-value",
        "slack_signing_secret": "slack-signing-secret-value",
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
def settings() -> Settings:
    return make_settings()


def fixed_clock() -> dt.datetime:
    return NOW


def rule_ids(ruleset: RuleSet) -> list[str]:
    return [r.id for r in ruleset]

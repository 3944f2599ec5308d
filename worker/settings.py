"""Configuration from the environment (prefix ``PPW_``) and an optional ``.env`` file.

Every field here is documented in ``.env.example``; a test keeps the two in step. Secrets are
``SecretStr`` so that printing the settings, logging them or sending them to Sentry shows
``**********`` instead of the value.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Annotated
from urllib.parse import unquote, urlsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

EMBEDDED_BROKER_URL = "memory://"
EMBEDDED_STATE_URL = "sqlite:///.ppw/state.db"

# Lists come from the environment as "a,b,c" (or a JSON list); NoDecode stops pydantic-settings from
# insisting on JSON before the validator below can split on commas.
CommaList = Annotated[list[str], NoDecode]


class Settings(BaseSettings):
    """All of ppw's settings; read once per process through :func:`get_settings`."""

    model_config = SettingsConfigDict(
        env_prefix="PPW_",
        env_file=".env",
        env_file_encoding="utf-8",
        env_nested_delimiter="__",
        extra="ignore",
    )

    # PracticePanther connection
    pp_base_url: str = "https://app.practicepanther.com"
    pp_client_id: str = ""
    pp_client_secret: SecretStr = SecretStr("")
    pp_redirect_uri: str = "http://127.0.0.1:8765/callback"
    connection_id: str = "default"
    token_encryption_key: SecretStr | None = None
    http_timeout: float = 30.0
    rate_limit_per_second: float = 5.0
    max_retries: int = 5
    retry_wait: float = 0.5
    retry_wait_max: float = 30.0
    retry_after_max: float = 60.0

    # Infrastructure
    broker_url: str = EMBEDDED_BROKER_URL
    state_url: str = EMBEDDED_STATE_URL
    http_host: str = "0.0.0.0"
    http_port: int = 9000
    # One process runs Python on one core (the GIL): past four threads, their hand-offs cost more
    # than the overlap gains when steps are quick (docs/benchmarks.md); raise it for slow receivers.
    worker_threads: int = 4
    shutdown_grace: float = 30.0
    queue_prefix: str = "ppw"
    broker_heartbeat_timeout: float = 60.0
    broker_maintenance_chance: int = 1000

    # Polling
    poll_interval: float = 60.0
    poll_jitter: float = 5.0
    poll_overlap: float = 120.0
    poll_sweep_interval: float = 30.0
    poll_page_size: int = 1000
    poll_timeout: float = 300.0
    poll_lease: float = Field(default=30.0, gt=0)
    poll_resources: CommaList = Field(default_factory=list)
    poll_use_updated_since: CommaList = Field(default_factory=list)
    flood_limit: int = 100
    #: seconds between refreshes of the custom field definitions (by the scheduler's leader)
    custom_fields_refresh: float = Field(default=3600.0, gt=0)
    backfill_since: dict[str, str] = Field(default_factory=dict)
    #: seconds between reconciles of a resource (deleted records); 0 never; per resource below
    reconcile_interval: float = Field(default=86400.0, ge=0)
    reconcile_intervals: dict[str, float] = Field(default_factory=dict)
    #: ids per listing request of a reconcile (``$select=id`` pages are small)
    reconcile_page_size: int = Field(default=1000, ge=2)

    # Rules
    rules_dir: Path = Path("rules")
    timezone: str = "UTC"
    #: public holidays that are not business days: country codes with an optional subdivision
    #: (``US``, ``US-FL``, ``GB-ENG``); empty, only weekends are (worker/calendar.py)
    holidays: CommaList = Field(default_factory=list)
    #: the firm's own closures: dates ``2026-12-24`` and ranges ``2026-12-24..2026-12-31``
    closures: CommaList = Field(default_factory=list)
    #: a YAML list of named closures (``- {date: 2026-12-24, name: Firm retreat}``)
    closures_file: Path | None = None
    env_allowlist: CommaList = Field(default_factory=list)
    rule_burst_per_minute: int = 10
    # A broken rule is logged, counted and shown in /readyz while the other rules run; strict, the
    # process refuses to start instead (a bad rule file fails the rollout).
    strict_rules: bool = False

    # Actions
    slack_webhooks: dict[str, SecretStr] = Field(default_factory=dict)
    slack_bot_token: SecretStr | None = None
    slack_api_url: str = "https://slack.com/api"
    teams_webhooks: dict[str, SecretStr] = Field(default_factory=dict)
    #: smtp://user:pass@host:587?starttls=true or smtps://user:pass@host:465 (the password is secret)
    smtp_url: SecretStr | None = None
    smtp_from: str = ""
    smtp_timeout: float = Field(default=30.0, gt=0)
    webhook_secrets: dict[str, SecretStr] = Field(default_factory=dict)
    #: the Slack app's signing secret: verifies clicks on approval buttons (POST /slack/interactivity)
    slack_signing_secret: SecretStr | None = None
    #: the worker's HTTP server as approvers' browsers reach it (https://ppw.firm.example): approval links
    public_url: str = ""
    #: signs approval links (at least 32 characters; ``openssl rand -hex 32``)
    approval_secret: SecretStr | None = None
    http_allowed_hosts: CommaList = Field(default_factory=list)
    run_retention_days: int = 30
    #: days the console's audit trail keeps an entry (it also keeps at most 10,000)
    audit_retention_days: int = Field(default=365, gt=0)
    #: date-relative triggers whose moment passed less than this long ago (seconds) still fire when
    #: ppw first sees the record (priming, a new rule); 0: only moments still ahead
    trigger_backfill: float = Field(default=0.0, ge=0)
    #: the longest a wait step may wait (seconds); longer waits fail the step and `rules check` flags them
    wait_max: float = Field(default=731 * 86400.0, gt=0)
    retry_base: float = 2.0
    retry_max: float = 300.0
    run_lease: float = 30.0
    breaker_pause: float = 900.0

    # Inbound webhooks and schedules
    webhook_max_body: int = 256 * 1024
    webhook_replay_window: float = 300.0
    webhook_rate_per_minute: int = 60
    webhook_dedupe_window: float = 300.0
    webhook_idempotency_ttl: float = 86_400.0
    schedule_grace: float = 3_600.0
    schedule_query_limit: int = 1_000
    schedule_tick: float = 5.0

    # Web console (worker/console/, docs/console.md): off unless enabled, on loopback by default
    console_enabled: bool = False
    console_host: str = "127.0.0.1"
    console_port: int = 9100
    #: ``PPW_CONSOLE_USERS__ALICE=operator:$argon2id$...``: name → ``role:argon2 hash`` (viewer|operator)
    console_users: dict[str, SecretStr] = Field(default_factory=dict)
    #: signs the session cookies (at least 32 characters; ``openssl rand -hex 32``)
    console_secret: SecretStr | None = None
    #: mark the session cookie Secure (set it behind a TLS-terminating proxy); HTTPS requests always are
    console_secure_cookies: bool = False
    #: seconds a console login lasts
    console_session_ttl: float = Field(default=8 * 3600.0, gt=0)
    #: sign in the user an authenticating proxy names in this header (``X-Forwarded-User``); empty: off
    console_trusted_header: str = ""
    #: peer addresses (IPs or CIDRs) of that proxy: the header from any other address is ignored
    console_trusted_proxies: CommaList = Field(default_factory=list)
    #: ``PPW_CONSOLE_PROXY_ROLES__ALICE=operator``: the role of a user signed in by the proxy
    console_proxy_roles: dict[str, str] = Field(default_factory=dict)
    #: role of a proxy user not in ``console_proxy_roles``: viewer, operator, or none (refused)
    console_proxy_default_role: str = "viewer"

    # Observability
    sentry_dsn: SecretStr | None = None
    sentry_environment: str = "production"
    sentry_traces_sample_rate: float = 0.0
    log_format: str = "text"
    log_level: str = "INFO"

    @field_validator(
        "poll_resources",
        "poll_use_updated_since",
        "env_allowlist",
        "http_allowed_hosts",
        "holidays",
        "closures",
        "console_trusted_proxies",
        mode="before",
    )
    @classmethod
    def _split_commas(cls, value: object) -> object:
        """Accept ``a,b,c`` from the environment as well as a JSON list."""
        if isinstance(value, str):
            if value.strip().startswith("["):
                return json.loads(value)
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator(
        "slack_webhooks",
        "teams_webhooks",
        "webhook_secrets",
        "backfill_since",
        "reconcile_intervals",
        "console_users",
        "console_proxy_roles",
        mode="before",
    )
    @classmethod
    def _lower_keys(cls, value: object) -> object:
        """``PPW_SLACK_WEBHOOKS__BILLING`` (``PPW_TEAMS_WEBHOOKS__BILLING``) is referenced from rules
        as ``billing``."""
        if isinstance(value, dict):
            return {str(k).lower(): v for k, v in value.items()}
        return value

    @field_validator("closures_file", mode="before")
    @classmethod
    def _no_file(cls, value: object) -> object:
        """``PPW_CLOSURES_FILE=`` (empty) means no file."""
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("log_format")
    @classmethod
    def _check_log_format(cls, value: str) -> str:
        if value not in ("text", "json"):
            raise ValueError("PPW_LOG_FORMAT must be 'text' or 'json'")
        return value

    @property
    def uses_embedded_broker(self) -> bool:
        return self.broker_url.startswith("memory://")

    @property
    def uses_embedded_state(self) -> bool:
        return self.state_url.startswith("sqlite:")

    def secret_values(self) -> list[str]:
        """Every configured secret, so log and error scrubbers can mask them wherever they appear."""
        values: list[SecretStr | None] = [
            self.pp_client_secret,
            self.token_encryption_key,
            self.slack_bot_token,
            self.sentry_dsn,
            self.smtp_url,
            self.console_secret,
            self.slack_signing_secret,
            self.approval_secret,
            *self.slack_webhooks.values(),
            *self.teams_webhooks.values(),
            *self.webhook_secrets.values(),
        ]
        secrets = [v.get_secret_value() for v in values if v is not None and v.get_secret_value()]
        # a request line logged by an HTTP library shows a webhook's path, not its whole URL
        hooks = [*self.slack_webhooks.values(), *self.teams_webhooks.values()]
        secrets += [path for url in hooks if (path := _secret_path(url))]
        if self.smtp_url is not None:
            secrets += _url_password(self.smtp_url)
        # a console user's password hash (after ``role:``): no page or log line needs it
        secrets += [h for v in self.console_users.values() if (h := v.get_secret_value().partition(":")[2])]
        return secrets


def _secret_path(url: SecretStr) -> str | None:
    """The path and query of a secret URL, when long enough to be the secret part of it."""
    parts = urlsplit(url.get_secret_value())
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    return path if len(path.strip("/")) >= 12 else None


def _url_password(url: SecretStr) -> list[str]:
    """The password of a URL with credentials, as written and decoded (``p%40ss`` is ``p@ss``)."""
    try:
        raw = urlsplit(url.get_secret_value()).netloc.rpartition("@")[0].partition(":")[2]
    except ValueError:
        return []
    return sorted({raw, unquote(raw)} - {""})


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings; tests call ``get_settings.cache_clear()`` after changing env."""
    return Settings()

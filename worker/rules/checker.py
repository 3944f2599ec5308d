"""Checks a validated rule against the catalogue and the template language, with no broker and no
PracticePanther connection: everything ``ppw rules check`` reports beyond the schema.

Every problem becomes a :class:`~worker.rules.diagnostics.Diagnostic` at the offending node; for
templates, at the line inside the template and the column of the offending name.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from jinja2 import nodes
from pydantic import SecretStr

from worker.actions.base import registry
from worker.calendar import CalendarError, parse_duration
from worker.events import Event
from worker.hints import did_you_mean, one_of
from worker.practicepanther import customfields, resources
from worker.practicepanther.customfields import CustomFieldError, Definitions
from worker.practicepanther.resources import Definition, Resource
from worker.rules import branches, fieldcheck
from worker.rules.context import allowed_env, env_view, event_view, payload_view, rule_view, steps_view
from worker.rules.diagnostics import Diagnostic
from worker.rules.fieldcheck import Issue
from worker.rules.model import Query, RecordTrigger, Rule, ScheduleTrigger, WebhookTrigger
from worker.rules.source import Path_, SourceMap
from worker.rules.templatecheck import Scope, StepInfo, TemplateChecker
from worker.rules.templating import (
    CompileError,
    RenderError,
    RulesEnvironment,
    is_template,
    parse_expression,
)
from worker.rules.views import ChangesView, Placeholder, RecordView
from worker.settings import Settings


@dataclass(frozen=True)
class CheckConfig:
    """The deployment facts a check uses (all optional: a check runs anywhere)."""

    timezone: str = "UTC"
    env_allowlist: list[str] = field(default_factory=list)
    slack_webhooks: frozenset[str] | None = None
    has_bot_token: bool | None = None
    teams_webhooks: frozenset[str] | None = None
    has_smtp: bool | None = None
    webhook_secrets: frozenset[str] | None = None
    http_allowed_hosts: list[str] = field(default_factory=list)
    #: the account's custom field definitions (an export file or the state store's cache); None
    #: leaves labels unchecked
    custom_fields: Definitions | None = None
    #: the longest a wait step may wait (``PPW_WAIT_MAX``), seconds
    wait_max: float = Settings.model_fields["wait_max"].default
    #: the ``PPW_`` settings that hold a value here (a named secret as ``PPW_X__NAME``); None when
    #: not known, so nothing is said about what a step type ``needs``
    configured: frozenset[str] | None = None

    @classmethod
    def from_settings(cls, settings: Settings, custom_fields: Definitions | None = None) -> CheckConfig:
        return cls(
            custom_fields=custom_fields,
            timezone=settings.timezone,
            env_allowlist=list(settings.env_allowlist),
            slack_webhooks=frozenset(settings.slack_webhooks),
            has_bot_token=settings.slack_bot_token is not None
            and bool(settings.slack_bot_token.get_secret_value()),
            teams_webhooks=frozenset(settings.teams_webhooks),
            has_smtp=settings.smtp_url is not None and bool(settings.smtp_url.get_secret_value()),
            webhook_secrets=frozenset(settings.webhook_secrets),
            http_allowed_hosts=list(settings.http_allowed_hosts),
            wait_max=settings.wait_max,
            configured=configured_settings(settings),
        )


def configured_settings(settings: Settings) -> frozenset[str]:
    """The names of the settings that hold a value (``PPW_SLACK_BOT_TOKEN``, and for the named
    secrets one name each: ``PPW_TEAMS_WEBHOOKS__PARTNERS``); values are never kept."""
    names: set[str] = set()
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        variable = "PPW_" + name.upper()
        if isinstance(value, dict):
            names.update(f"{variable}__{str(key).upper().replace('-', '_')}" for key in value)
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if value not in (None, "", [], {}):
            names.add(variable)
    return frozenset(names)


#: About how long each duration unit lasts (a business day: a week is five of them).
_UNIT_SECONDS = {
    "seconds": 1.0,
    "minutes": 60.0,
    "hours": 3600.0,
    "days": 86400.0,
    "weeks": 604800.0,
    "business_days": 86400.0 * 7 / 5,
}


class RuleChecker:
    """Checks one rule (already valid against the model). ``data`` is the rule as written."""

    def __init__(
        self,
        rule: Rule,
        data: dict[str, Any],
        source: SourceMap,
        base: Path_,
        env: RulesEnvironment,
        config: CheckConfig,
    ) -> None:
        self.rule = rule
        self.data = data
        self.source = source
        self.base = base
        self.env = env
        self.config = config
        self.templates = TemplateChecker(env)
        self.diagnostics: list[Diagnostic] = []
        self.resource = resources.get(rule.resource) if rule.resource else None

    # -- reporting ------------------------------------------------------------------------------
    def _at(
        self,
        path: Path_,
        message: str,
        hint: str | None = None,
        *,
        at_key: bool = False,
        severity: str = "error",
        needle: str | None = None,
    ) -> None:
        full = (*self.base, *path)
        position = None
        if needle:
            line, column = self.source.key(full) if at_key else self.source.value(full)
            text = self.source.lines[line] if line < len(self.source.lines) else ""
            found = text.find(needle, column)
            position = (line, found) if found >= 0 else None
        self.diagnostics.append(
            self.source.diagnostic(
                full,
                message,
                hint=hint,
                severity=severity,
                rule=self.rule.id,
                at_key=at_key,
                position=position,
            )
        )

    def _issue(self, issue: Issue) -> None:
        self._at(issue.path, issue.message, issue.hint, at_key=issue.at_key, severity=issue.severity)

    # -- entry point ------------------------------------------------------------------------------
    def _scope(self, steps: dict[str, StepInfo] | None, later: list[str]) -> Scope:
        rule = self.rule
        webhook, schedule = rule.webhook_trigger, rule.schedule_trigger
        query = schedule.query if schedule is not None else None
        return Scope(
            self.resource,
            steps,
            later,
            self.config.env_allowlist,
            kind=rule.trigger_kind,
            payload_schema=webhook.schema_ if webhook is not None else None,
            results=resources.get(query.resource) if query is not None else None,
            custom_labels=self._custom_labels(),
        )

    def _custom_labels(self) -> tuple[str, ...] | None:
        definitions = self.config.custom_fields
        resource = self.resource
        if definitions is None or resource is None or not definitions.known(resource.name):
            return None
        return tuple(definitions.labels(resource.name))

    def _custom_field(self, resource: str, label: str, path: Path_) -> customfields.CustomField | None:
        """The definition of ``label`` on ``resource``; reports an unknown label (with a near one)
        or a resource without custom fields. None also when the definitions are not known."""
        if resource not in customfields.SCOPES:
            self._at(
                path,
                f"{resource} have no custom fields",
                f"custom fields exist on {', '.join(customfields.SCOPES)}",
            )
            return None
        definitions = self.config.custom_fields
        if definitions is None or not definitions.known(resource):
            return None
        try:
            return definitions.find(resource, label)
        except CustomFieldError as exc:
            self._at(path, exc.message, exc.hint, needle=label)
            return None

    def _custom_values(self, resource: str, values: Any, path: Path_) -> None:
        """``custom:`` of a create or update step: known labels, and literal values their type takes."""
        if not isinstance(values, dict):
            return
        for label, value in values.items():
            found = self._custom_field(resource, str(label), (*path, label))
            if found is None or (isinstance(value, str) and is_template(value)):
                continue
            try:
                customfields.encode(found, value)
            except CustomFieldError as exc:
                self._at((*path, label), exc.message, exc.hint)

    def run(self) -> list[Diagnostic]:
        self._trigger()
        condition_scope = self._scope(None, [])
        for path, source in self._conditions(self.data.get("conditions"), ("conditions",)):
            self._expression(path, source, condition_scope)
        self._steps()
        return self.diagnostics

    # -- trigger ------------------------------------------------------------------------------------
    def _trigger(self) -> None:
        trigger = self.rule.trigger
        if isinstance(trigger, RecordTrigger):
            resource = resources.get(trigger.resource)
            if not resource.pollable:
                self._at(
                    ("trigger", "resource"),
                    f"{resource.name} cannot be watched: PracticePanther offers no way to list its changes",
                    f"watchable resources: {', '.join(r.name for r in resources.pollable())}",
                )
            raw_changed = self.data.get("trigger", {}).get("changed")
            for index, name in enumerate(trigger.changed):
                path: Path_ = (
                    ("trigger", "changed", index) if isinstance(raw_changed, list) else ("trigger", "changed")
                )
                label = customfields.custom_label(name)
                if label is not None:
                    found = self._custom_field(resource.name, label, path)
                    if found is not None and len(trigger.changed) == 1:
                        self._custom_transition(found)
                    continue
                if name not in resource.fields:
                    self._at(
                        path,
                        f"unknown field {name!r} on {resource.name}",
                        fieldcheck.suggest(name, resource.fields),
                    )
            if len(trigger.changed) == 1 and trigger.changed[0] in resource.fields:
                spec = resource.fields[trigger.changed[0]]
                for key in ("from", "to"):
                    if key in self.data.get("trigger", {}):
                        for issue in fieldcheck.check_enum(
                            spec, self.data["trigger"][key], ("trigger", key), resource.name
                        ):
                            self._issue(issue)
            if trigger.at is not None:
                self._date_field(resource, trigger.at)
            if "deleted" in trigger.on and len(trigger.on) == 1 and trigger.changed:
                self._at(
                    ("trigger", "changed"),
                    "'changed' has no meaning for deleted records",
                    "drop changed:, or also fire on updated",
                    severity="warning",
                )
        elif isinstance(trigger, ScheduleTrigger) and trigger.query is not None:
            self._query(trigger.query)
        elif isinstance(trigger, WebhookTrigger):
            self._webhook_verify(trigger)
            known = self.config.webhook_secrets
            name = trigger.secret_name
            if trigger.scheme != "none" and known is not None and not {name, name.replace("-", "_")} & known:
                variable = "PPW_WEBHOOK_SECRETS__" + name.upper().replace("-", "_")
                self._at(
                    ("trigger", "secret" if trigger.secret else "webhook"),
                    f"no secret {name!r} is configured here: every delivery to /hooks/{trigger.webhook} "
                    "would be refused",
                    f"set {variable} where the worker runs",
                    severity="warning",
                )

    def _webhook_verify(self, trigger: WebhookTrigger) -> None:
        """``allow_unsigned`` where it means something, and a warning where a hook is open to anyone."""
        if trigger.allow_unsigned and trigger.scheme != "none":
            self._at(
                ("trigger", "allow_unsigned"),
                f"allow_unsigned has no effect: deliveries are verified with {trigger.scheme}",
                "drop allow_unsigned",
                severity="warning",
            )
        elif trigger.scheme == "none":
            self._at(
                ("trigger", "verify"),
                f"/hooks/{trigger.webhook} accepts unsigned deliveries: "
                "anyone who can reach it starts the rule",
                "prefer the sender's signature scheme (verify: standard-webhooks, stripe, github, ...)",
                severity="warning",
            )

    def _custom_transition(self, found: customfields.CustomField) -> None:
        """``from:``/``to:`` of a custom field: a dropdown's values must be among its options."""
        trigger = self.data.get("trigger", {})
        for key in ("from", "to"):
            if key not in trigger or found.value_type != "DropDownList" or not found.options:
                continue
            values = trigger[key] if isinstance(trigger[key], list) else [trigger[key]]
            for index, value in enumerate(values):
                if value is None or (isinstance(value, str) and is_template(value)):
                    continue
                if str(value) not in found.options:
                    where: Path_ = (
                        ("trigger", key, index) if isinstance(trigger[key], list) else ("trigger", key)
                    )
                    self._at(
                        where,
                        f"{value!r} is not an option of the custom field {found.label!r}",
                        did_you_mean(str(value), found.options) or f"expected {one_of(found.options)}",
                    )

    def _query(self, query: Query) -> None:
        base: Path_ = ("trigger", "query")
        resource = resources.get(query.resource)
        if query.filter:
            self._odata((*base, "filter"), query.filter, resource.model, resource.name)
        if query.orderby:
            for message, hint, needle in fieldcheck.check_orderby(
                query.orderby, resource.model, resource.name
            ):
                self._at((*base, "orderby"), message, hint, needle=needle)
        for issue in fieldcheck.check_params(resource, query.params, (*base, "params")):
            self._issue(issue)
        scope = Scope(None, None, [], self.config.env_allowlist, kind="query")
        raw = self.data.get("trigger", {}).get("query", {})
        for path, text in _template_strings({k: raw.get(k) for k in ("filter", "params") if k in raw}, base):
            self._template(path, text, scope)

    # -- conditions and steps ---------------------------------------------------------------------
    def _conditions(self, value: Any, path: Path_) -> Iterator[tuple[Path_, str]]:
        if isinstance(value, str):
            yield path, value
        elif isinstance(value, list):
            for index, item in enumerate(value):
                yield from self._conditions(item, (*path, index))
        elif isinstance(value, dict):
            for key, item in value.items():
                yield from self._conditions(item, (*path, key))

    def _steps(self) -> None:
        """Every step as it runs, decline branches included (:mod:`worker.rules.branches`), each
        checked at the lines it is written on and seeing the results of the steps that can have run
        before it."""
        flat = self.rule.flat_steps
        first_use: dict[str, Path_] = {}
        for item in flat:
            step = item.step
            if step.id is None:
                continue
            if step.id in first_use:
                line, _ = self.source.value((*self.base, *first_use[step.id], "id"))
                self._at(
                    (*item.path, "id"),
                    f"step id {step.id!r} is used twice in this rule",
                    f"first used at line {line + 1}; step ids name results (steps.<id>) and must be "
                    "unique, decline branches included",
                )
            else:
                first_use[step.id] = item.path
        infos: dict[str, StepInfo] = {}
        for index, item in enumerate(flat):
            step, where = item.step, item.path
            later = [s.step.id for s in flat[index:] if s.step.id and s.step.id not in item.visible]
            scope = self._scope({name: infos[name] for name in item.visible if name in infos}, later)
            raw = branches.node_at(self.data, where)
            if item.own_if is not None:
                self._expression((*where, "if"), item.own_if, scope)
            raw_with = raw.get("with") if isinstance(raw, dict) else None
            if isinstance(raw_with, dict):  # a branch's steps are checked as steps of their own
                fields = branches.branch_fields(step.action)
                raw_with = {k: v for k, v in raw_with.items() if not (k in fields and isinstance(v, list))}
            for path, text in _template_strings(raw_with, (*where, "with")):
                self._template(path, text, scope)
            self._step_params(where, step.action, step.raw_with(), step.type != step.action)
            if step.action == "wait":
                self._wait(where, step.raw_with(), scope)
            if step.id and step.id not in infos:
                infos[step.id] = _step_info(step.action, step.params)

    def _date_field(self, resource: resources.Resource, name: str) -> None:
        """``at:`` names a date or datetime field of the resource (or a custom date field)."""
        path: Path_ = ("trigger", "at")
        label = customfields.custom_label(name)
        if label is not None:
            self._custom_field(resource.name, label, path)
            return
        spec = resource.fields.get(name)
        if spec is None:
            self._at(
                path, f"unknown field {name!r} on {resource.name}", fieldcheck.suggest(name, resource.fields)
            )
        elif spec.kind != "datetime":
            dates = sorted(n for n, f in resource.fields.items() if f.kind == "datetime")
            self._at(path, f"{resource.name}.{name} is not a date", f"date fields: {', '.join(dates)}")

    def _wait(self, where: Path_, params: dict[str, Any], scope: Scope) -> None:
        """A wait's ``unless:``/``while:`` are conditions (checked like ``if:``), and a literal
        ``for:`` may not pass ``PPW_WAIT_MAX``."""
        for name in ("unless", "while"):
            if isinstance(params.get(name), str):
                self._expression((*where, "with", name), params[name], scope)
        written = params.get("for")
        if written is None or (isinstance(written, str) and "{{" in written):
            return
        try:
            duration = parse_duration(written)
        except CalendarError:
            return  # the parameter model already said what is wrong with it
        seconds = abs(duration.amount) * _UNIT_SECONDS[duration.unit]
        if seconds > self.config.wait_max:
            self._at(
                (*where, "with", "for"),
                f"waits {duration}, longer than PPW_WAIT_MAX ({self.config.wait_max / 86400:g} days)",
                "wait less, or raise PPW_WAIT_MAX where the worker runs",
            )

    def _step_params(self, where: Path_, action: str, params: dict[str, Any], shorthand: bool) -> None:
        base: Path_ = (*where, "with")
        data_path: Path_ = base if shorthand else (*base, "data")
        name = resources.resolve_name(str(params.get("resource")))
        resource = resources.catalogue()[name] if name is not None else None
        if action in ("practicepanther.create", "practicepanther.update") and resource is not None:
            create = action == "practicepanther.create"
            for issue in fieldcheck.check_data(resource, params.get("data") or {}, data_path, create=create):
                self._issue(issue)
            if params.get("custom"):
                custom_path: Path_ = (*base, "custom")
                self._custom_values(resource.name, params["custom"], custom_path)
        elif action == "practicepanther.find" and resource is not None:
            if params.get("filter"):
                self._odata((*base, "filter"), params["filter"], resource.model, resource.name)
            if params.get("orderby"):
                for message, hint, needle in fieldcheck.check_orderby(
                    params["orderby"], resource.model, resource.name
                ):
                    self._at((*base, "orderby"), message, hint, needle=needle)
            for issue in fieldcheck.check_params(resource, params.get("params") or {}, (*base, "params")):
                self._issue(issue)
        elif action == "practicepanther.find_or_create" and resource is not None:
            match = params.get("match") or {}
            data = params.get("data") or {}
            for issue in fieldcheck.check_fields(resource, match, (*base, "match")):
                self._issue(issue)
            for issue in fieldcheck.check_data(resource, data, (*base, "data"), create=False):
                self._issue(issue)
            missing = [n for n in resource.required_on_create if n not in match and n not in data]
            if missing:
                names = ", ".join(repr(n) for n in missing)
                self._at(
                    base,
                    f"creating {resource.name} needs {names}",
                    "give them in match: or data: (a template value counts)",
                    at_key=True,
                )
        elif action == "slack.post":
            self._slack(base, params)
        elif action == "slack.update" and self.config.has_bot_token is False:
            self._at(
                base,
                "slack.update needs PPW_SLACK_BOT_TOKEN, which is not set here",
                "set it where the worker runs",
                severity="warning",
                at_key=True,
            )
        elif action == "teams.post":
            self._unconfigured(
                (*base, "webhook"),
                "Teams webhook",
                params.get("webhook"),
                self.config.teams_webhooks,
                "PPW_TEAMS_WEBHOOKS",
            )
        elif action == "email.send" and self.config.has_smtp is False:
            self._at(
                base,
                "email.send needs PPW_SMTP_URL, which is not set here",
                "set it where the worker runs (smtp://user:pass@host:587)",
                severity="warning",
                at_key=True,
            )
        elif action == "http.request":
            self._http(base, params)
        self._needs(base, action, params)

    def _needs(self, base: Path_, action: str, params: dict[str, Any]) -> None:
        """Warn when a step type that says which settings it ``needs`` lacks some here."""
        needs = getattr(registry().get(action), "needs", None)
        known = self.config.configured
        if needs is None or known is None:
            return
        missing = [name for name in needs(params) if name not in known]
        if missing:
            via = f" via {params['via']}" if isinstance(params.get("via"), str) else ""
            self._at(
                base,
                f"{action}{via} needs {', '.join(missing)}, "
                f"which {'is' if len(missing) == 1 else 'are'} not set here",
                f"set {'it' if len(missing) == 1 else 'them'} where the worker runs (see docs/rules.md)",
                severity="warning",
                at_key=True,
            )

    def _unconfigured(
        self, path: Path_, what: str, name: Any, known: Any, variable: str, *, also: str = ""
    ) -> None:
        """Warn when a secret a rule names by ``name`` is not configured where the check runs."""
        if name and known is not None and name not in known:
            self._at(
                path,
                f"{what} {name!r} is not configured here{also}",
                f"set {variable}__{str(name).upper().replace('-', '_')} where the worker runs",
                severity="warning",
            )

    def _slack(self, base: Path_, params: dict[str, Any]) -> None:
        self._unconfigured(
            (*base, "webhook"),
            "Slack webhook",
            params.get("webhook"),
            self.config.slack_webhooks,
            "PPW_SLACK_WEBHOOKS",
        )
        if params.get("channel") and self.config.has_bot_token is False:
            self._at(
                (*base, "channel"),
                "posting to a channel needs PPW_SLACK_BOT_TOKEN",
                "set it where the worker runs, or use webhook: NAME",
                severity="warning",
            )

    def _http(self, base: Path_, params: dict[str, Any]) -> None:
        self._unconfigured(
            (*base, "secret"),
            "signing secret",
            params.get("secret"),
            self.config.webhook_secrets,
            "PPW_WEBHOOK_SECRETS",
        )
        for name, value in (params.get("headers") or {}).items():
            if name.lower() in ("authorization", "x-api-key", "api-key", "cookie") and not is_template(
                str(value)
            ):
                self._at(
                    (*base, "headers", name),
                    f"header {name!r} holds a credential written into the rule",
                    "rule files are not secret; use secret: NAME to sign requests instead",
                )
        url = str(params.get("url") or "")
        allowed = self.config.http_allowed_hosts
        if allowed and not is_template(url.split("/")[2] if url.count("/") >= 2 else url):
            host = urlsplit(url).hostname or ""
            if host and host not in allowed:
                self._at(
                    (*base, "url"),
                    f"host {host!r} is not in PPW_HTTP_ALLOWED_HOSTS",
                    f"allowed: {', '.join(allowed)}",
                    severity="warning",
                )

    def _odata(self, path: Path_, text: str, model: Definition, label: str) -> None:
        for message, hint, needle in fieldcheck.check_filter(text, model, label):
            self._at(path, message, hint, needle=needle)
        for expression in _UNQUOTED_PAYLOAD.findall(text):
            if "odata" not in expression:
                self._at(
                    path,
                    "a value from the webhook's body goes into this filter unquoted",
                    "write {{ payload.x | odata }}: it quotes the value, so a sender cannot change "
                    "what the filter matches",
                    severity="warning",
                    needle="payload",
                )
                break

    # -- templates ----------------------------------------------------------------------------------
    def _expression(self, path: Path_, source: str, scope: Scope) -> None:
        text = source.strip()
        if text.startswith("{{") and text.endswith("}}") and text.count("{{") == 1:
            self._at(
                path,
                "conditions are bare expressions; the {{ }} makes this a text template",
                "drop the {{ }} (as with Ansible's when:)",
                severity="warning",
            )
            text = text[2:-2]
        try:
            tree = parse_expression(self.env, text)
        except CompileError as exc:
            self._template_error(
                path,
                exc.line,
                f"expression syntax: {exc.message}",
                "a condition is one Jinja expression, e.g. record.status == 'Closed'",
                None,
            )
            return
        findings = self._findings(path, tree, scope)
        if not findings:
            self._dry_run(path, lambda: self.env.expression(text), scope)

    def _template(self, path: Path_, source: str, scope: Scope) -> None:
        try:
            tree = self.env.parse(source)
        except Exception as exc:
            line = getattr(exc, "lineno", None) or 1
            message = getattr(exc, "message", None) or str(exc)
            self._template_error(path, line, f"template syntax: {message}", _syntax_hint(message), None)
            return
        findings = self._findings(path, tree, scope)
        if not findings:
            self._dry_run(path, lambda: self.env.template(source), scope)

    def _findings(self, path: Path_, tree: nodes.Node, scope: Scope) -> bool:
        findings = self.templates.check(tree, scope)
        for finding in findings:
            self._template_error(
                path, finding.line, finding.message, finding.hint, finding.needle, finding.severity
            )
        return any(f.severity == "error" for f in findings)

    def _template_error(
        self,
        path: Path_,
        line: int,
        message: str,
        hint: str | None,
        needle: str | None,
        severity: str = "error",
    ) -> None:
        full = (*self.base, *path)
        position = self.source.template_position(full, line, needle)
        self.diagnostics.append(
            self.source.diagnostic(
                full,
                message,
                hint=hint,
                severity=severity,
                rule=self.rule.id,
                position=position,
                code="template",
            )
        )

    def _dry_run(self, path: Path_, compile_: Any, scope: Scope) -> None:
        """Render against a sample record so size and loop bombs are caught at check time."""
        try:
            template = compile_()
            template(self._sample_context(scope))
        except CompileError as exc:
            self._template_error(
                path, exc.line, f"template syntax: {exc.message}", _syntax_hint(exc.message), None
            )
        except RenderError as exc:
            if exc.kind in ("limit", "security"):
                self._template_error(
                    path,
                    exc.line,
                    exc.message,
                    "rules are limited in size and time so one rule cannot stall the worker",
                    None,
                )

    def _sample_context(self, scope: Scope) -> dict[str, Any]:
        resource = scope.resource
        record = sample_record(resource.model) if resource is not None else {}
        if resource is not None and self.config.custom_fields is not None:
            record.update(sample_custom_values(self.config.custom_fields, resource.name))
        event = Event.build(
            type="updated",
            resource=resource.name if resource else "record",
            record_id="sample",
            revision="sample",
        )
        steps = {name: Placeholder(f"steps.{name}") for name in (scope.steps or {})}
        env = env_view(allowed_env(self.config.env_allowlist, []), self.config.env_allowlist)
        moment = dt.datetime(2026, 1, 5, 9, 0, tzinfo=self.env.firm_zone)
        results = scope.results
        return {
            "event": event_view(event),
            "record": RecordView.of(record, resource.name if resource else None),
            "previous": RecordView.of(record, resource.name if resource else None),
            "changes": ChangesView.of({}, resource.name if resource else None),
            "env": env,
            "now": lambda: moment,
            "steps": steps_view(steps),
            "rule": rule_view(self.rule.id, self.rule.description, "sample"),
            "payload": payload_view({}),
            "results": [RecordView(sample_record(results.model), results.model, results.name)]
            if results is not None
            else [],
            "slot": moment,
        }


_UNQUOTED_PAYLOAD = re.compile(r"\{\{([^}]*\bpayload\b[^}]*)\}\}")


def _syntax_hint(message: str) -> str:
    if "unexpected '}'" in message or "unexpected end of template" in message:
        return "check that every {{ has a matching }} and every {% a matching %}"
    if "expected token" in message:
        return "check the brackets and quotes of the expression"
    return "Jinja syntax: {{ expression }} for values, {% if %}...{% endif %} for statements"


def _template_strings(value: Any, path: Path_) -> Iterator[tuple[Path_, str]]:
    if isinstance(value, str):
        if is_template(value):
            yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _template_strings(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _template_strings(item, (*path, index))


def _step_info(action: str, params: Any) -> StepInfo:
    """What the step type says later steps may read of its result."""
    step_type = registry().get(action)
    if step_type is None:
        return StepInfo()
    found = step_type.result_resource(params)
    if found is not None:
        name, is_list = found
        resource: Resource = resources.get(name)
        return StepInfo(resource.model, name, is_list, extra=step_type.result_keys or frozenset())
    keys = step_type.result_keys
    return StepInfo(keys=keys) if keys is not None else StepInfo()


_SAMPLES = {
    "string": "sample",
    "uuid": "00000000-0000-0000-0000-000000000000",
    "datetime": "2026-01-05T09:00:00",
    "integer": 1,
    "number": 1.0,
    "boolean": True,
}


_CUSTOM_SAMPLES: dict[str, Any] = {
    "Number": 1.0,
    "Currency": 1.0,
    "Date": "2026-01-05T00:00:00",
    "DateTime": "2026-01-05T09:00:00",
    "Checkbox": True,
    "Contact": {"id": "00000000-0000-0000-0000-000000000000", "display_name": "sample"},
}


def sample_custom_values(definitions: Definitions, resource: str) -> dict[str, Any]:
    """The custom field list of a sample record: a plausible value for every definition."""
    name = customfields.VALUES_FIELDS.get(resource)
    if name is None or not definitions.known(resource):
        return {}
    values = []
    for found in definitions.fields(resource):
        sample = found.options[0] if found.options else _CUSTOM_SAMPLES.get(found.value_type, "sample")
        ref = {"id": found.id, "label": found.label, "value_type": found.value_type}
        values.append({"custom_field_ref": ref, found.slot: sample})
    return {name: values}


def sample_record(model: Definition, depth: int = 0) -> dict[str, Any]:
    """A record with a plausible value in every field, for dry-running templates."""
    record: dict[str, Any] = {}
    for name, spec in model.fields.items():
        if spec.enum:
            record[name] = spec.enum[0]
        elif spec.kind == "object":
            nested = fieldcheck.definition(spec.ref)
            record[name] = sample_record(nested, depth + 1) if nested is not None and depth < 2 else {}
        elif spec.kind == "array":
            nested = fieldcheck.definition(spec.item_ref)
            if nested is not None and depth < 2:
                record[name] = [sample_record(nested, depth + 1)]
            else:
                record[name] = ["sample"] if spec.item_kind == "string" else []
        else:
            record[name] = _SAMPLES.get(spec.kind, "sample")
    return record

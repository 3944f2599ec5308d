"""The rule model: what a rule file may say, as pydantic models.

A rule is *trigger* (which change of which resource), *conditions* (Jinja expressions that must
all hold, Ansible ``when:`` style) and *steps* (what to do, in order). Triggers are discriminated by
their key, so new kinds (``webhook:``, ``schedule:``/``every:``) sit beside record triggers without
ambiguity; steps are discriminated by ``type:`` and take the ``with:`` model of that type's class
in the step type registry (:mod:`worker.actions.base`).

The models check shape and literal values. Everything that needs the PracticePanther catalogue or
the Jinja parser (field names inside templates, enum values, earlier step ids) is checked by
:mod:`worker.rules.checker`, which can point at a line inside a template.
"""

from __future__ import annotations

import functools
import operator
import re
import typing
import zoneinfo
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union

from croniter import croniter
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    GetCoreSchemaHandler,
    PrivateAttr,
    Tag,
    create_model,
    field_validator,
    model_validator,
)
from pydantic_core import CoreSchema, PydanticCustomError

from worker.actions import base as step_types
from worker.actions.params import ResourceName, SecretName
from worker.calendar import CalendarError, parse_duration, parse_time_of_day
from worker.hints import suggest
from worker.rules import branches

EventKind = Literal["created", "updated", "deleted"]
Mode = Literal["parallel", "queued", "single", "restart"]

_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")
STEP_ID_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|hr|d)?\s*$")
_DURATION_UNITS = {None: 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hr": 3600, "d": 86400}


def _listify(value: Any) -> Any:
    """A scalar where a list is expected means a list of one (``on: updated``)."""
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _rule_id(value: str) -> str:
    if not _ID_RE.match(value):
        raise PydanticCustomError(
            "rule_id",
            "rule id '{value}' is not a slug",
            {
                "value": value,
                "hint": "use lower-case letters, digits, '-', '_' and '.', e.g. 'matter-closed'",
            },
        )
    return value


def _step_id(value: str) -> str:
    if not STEP_ID_RE.match(value):
        raise PydanticCustomError(
            "step_id",
            "step id '{value}' cannot be used as steps.{value} in templates",
            {"value": value, "hint": "use letters, digits and '_' (e.g. closing_task)"},
        )
    return value


RuleId = Annotated[str, AfterValidator(_rule_id), Field(max_length=100)]
StepId = Annotated[str, AfterValidator(_step_id), Field(max_length=64)]
Expression = Annotated[str, Field(min_length=1, description="A Jinja expression, without {{ }}")]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


# -- triggers ---------------------------------------------------------------------------------------


def _default_on() -> list[EventKind]:
    return ["created", "updated"]


class RecordTrigger(_Model):
    """A PracticePanther record was created, updated or deleted (found by polling)."""

    resource: ResourceName
    on: Annotated[
        list[EventKind],
        BeforeValidator(_listify, json_schema_input_type=EventKind | list[EventKind]),
        Field(min_length=1),
    ] = Field(default_factory=_default_on)
    changed: Annotated[list[str], BeforeValidator(_listify, json_schema_input_type=str | list[str])] = Field(
        default_factory=list, description="Fire only when one of these fields changed"
    )
    from_: Any = Field(None, alias="from", description="Value (or list of values) the field changed from")
    to: Any = Field(None, description="Value (or list of values) the field changed to")
    fetch: bool = Field(False, description="GET the full (detailed) record before evaluating")
    at: str | None = Field(
        None, description="A date field (or custom.<label>): fire when that moment comes, once per date"
    )
    offset: str | None = Field(None, description='Added to the date of at: "-3 business days", "-60 days"')
    time: str | None = Field(None, description='With at: the time of day in the firm zone, "09:00"')
    for_: str | None = Field(
        None, alias="for", description="With changed/to: fire once the field has held the value this long"
    )

    @property
    def timed(self) -> bool:
        """A date-relative (``at``) or "for" trigger: it fires when its moment comes (a ``due``
        event), never on the change itself."""
        return self.at is not None or self.for_ is not None

    @property
    def has_from(self) -> bool:
        return "from_" in self.model_fields_set

    @property
    def has_to(self) -> bool:
        return "to" in self.model_fields_set

    @model_validator(mode="after")
    def _transition_needs_one_field(self) -> RecordTrigger:
        if (self.has_from or self.has_to) and len(self.changed) != 1:
            raise PydanticCustomError(
                "transition_field",
                "'from'/'to' need 'changed' to name exactly one field",
                {"hint": "e.g. changed: status, from: Open, to: Closed"},
            )
        return self

    @model_validator(mode="after")
    def _timed_shapes(self) -> RecordTrigger:
        if self.at is not None and (self.changed or self.for_ is not None):
            raise PydanticCustomError(
                "timed_trigger",
                "'at' fires on a date: it does not go with 'changed' or 'for'",
                {"hint": "e.g. at: due_date, offset: -3 business days, time: '09:00'"},
            )
        if (self.offset is not None or self.time is not None) and self.at is None:
            raise PydanticCustomError(
                "timed_trigger", "'offset'/'time' shift the date of 'at'", {"hint": "add at: <a date field>"}
            )
        if self.for_ is not None and not (len(self.changed) == 1 and self.has_to):
            raise PydanticCustomError(
                "timed_trigger",
                "'for' needs changed: (one field) and to: (the value it must hold)",
                {"hint": "e.g. changed: status, to: Pending, for: 14 days"},
            )
        for name, text in (("offset", self.offset), ("for", self.for_)):
            if text is not None:
                try:
                    parse_duration(text)
                except CalendarError as exc:
                    raise PydanticCustomError(
                        "duration", f"{name}: {{message}}", {"message": str(exc)}
                    ) from None
        if self.time is not None:
            try:
                parse_time_of_day(self.time)
            except CalendarError as exc:
                raise PydanticCustomError("time_of_day", "time: {message}", {"message": str(exc)}) from None
        return self


WebhookAuth = Literal["hmac", "bearer"]
#: How a hook's sender signs (``verify:``); each is a scheme of :data:`worker.triggers.auth.SCHEMES`
#: (a test keeps the two lists the same).
WebhookVerify = Literal[
    "hmac", "standard-webhooks", "stripe", "github", "typeform", "calendly", "bearer", "none"
]


class WebhookTrigger(_Model):
    """An inbound webhook: ``POST /hooks/<webhook>`` on the worker's HTTP server.

    The sender proves it knows the secret ``PPW_WEBHOOK_SECRETS__<NAME>`` (``NAME`` is ``secret``,
    default the hook's own name) the way that sender signs, ``verify:``: ``hmac`` (default, ppw's
    own timestamped ``X-PPW-Signature``), ``standard-webhooks``, ``stripe``, ``github``,
    ``typeform``, ``calendly``, ``bearer`` (``Authorization: Bearer <secret>``) or ``none``, which
    needs ``allow_unsigned: true`` beside it. ``auth:`` is the older spelling of ``hmac``/``bearer``.
    ``schema`` (a JSON Schema) validates the body before anything is queued.
    """

    webhook: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]*$", max_length=64)]
    verify: WebhookVerify = Field(
        "hmac",
        description="How the sender signs: hmac (default, X-PPW-Signature), standard-webhooks, stripe, "
        "github, typeform, calendly, bearer (Authorization) or none (needs allow_unsigned: true)",
    )
    auth: WebhookAuth = Field("hmac", description="Older spelling of verify: hmac or bearer")
    allow_unsigned: bool = Field(False, description="Accept verify: none (anyone may call the hook)")
    secret: SecretName | None = Field(
        None, description="Name of PPW_WEBHOOK_SECRETS__<NAME> (default: the hook's name)"
    )
    schema_: dict[str, Any] | None = Field(None, alias="schema", description="JSON Schema of the body")

    @property
    def scheme(self) -> str:
        """The ``verify:`` scheme in force (``auth:`` if only that is given, else ``hmac``)."""
        return self.auth if "verify" not in self.model_fields_set else self.verify

    @model_validator(mode="after")
    def _one_scheme_and_unsigned_on_purpose(self) -> WebhookTrigger:
        if {"verify", "auth"} <= self.model_fields_set and self.verify != self.auth:
            raise PydanticCustomError(
                "webhook_verify",
                "'auth: {auth}' and 'verify: {verify}' disagree",
                {"auth": self.auth, "verify": self.verify, "hint": "drop auth:; verify: replaces it"},
            )
        if self.scheme == "none" and not self.allow_unsigned:
            raise PydanticCustomError(
                "webhook_unsigned",
                "verify: none lets anyone on the network start this rule",
                {
                    "hint": "pick the sender's scheme (e.g. verify: standard-webhooks), "
                    "or say allow_unsigned: true"
                },
            )
        return self

    @property
    def secret_name(self) -> str:
        """The name under ``PPW_WEBHOOK_SECRETS__`` the sender's secret is configured as."""
        return self.secret or self.webhook

    @field_validator("schema_")
    @classmethod
    def _valid_schema(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None:
            import jsonschema

            try:
                jsonschema.Draft202012Validator.check_schema(value)
            except jsonschema.SchemaError as exc:
                raise PydanticCustomError(
                    "json_schema", "invalid JSON Schema: {problem}", {"problem": exc.message}
                ) from None
        return value


class Query(_Model):
    """Records a schedule trigger fetches at each slot (every page): the run sees them as ``results``.

    ``filter`` and ``params`` may be templates over ``slot`` (the slot's time) and ``now()``.
    """

    resource: ResourceName
    filter: str | None = Field(None, description="OData $filter; may use {{ slot }}")
    params: dict[str, Any] = Field(default_factory=dict, description="List parameters of the resource")
    orderby: str | None = Field(None, description="OData $orderby, e.g. 'due_date asc'")
    limit: Annotated[int, Field(ge=1, le=5000)] | None = Field(
        None, description="Most records fetched (default PPW_SCHEDULE_QUERY_LIMIT)"
    )


def _duration(value: Any) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        match = _DURATION_RE.match(str(value))
        if not match:
            raise PydanticCustomError(
                "duration", "'{value}' is not a duration", {"value": value, "hint": "e.g. 30s, 15m, 2h, 1d"}
            )
        seconds = float(match.group(1)) * _DURATION_UNITS[match.group(2)]
    if seconds < 60:
        raise PydanticCustomError(
            "duration", "schedules run at most once a minute", {"hint": "use every: 1m or longer"}
        )
    return seconds


def _grace(value: Any) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(max(value, 0))
    match = _DURATION_RE.match(str(value))
    if not match:
        raise PydanticCustomError(
            "duration", "'{value}' is not a duration", {"value": value, "hint": "e.g. 0, 10m, 2h"}
        )
    return float(match.group(1)) * _DURATION_UNITS[match.group(2)]


def _cron(value: str) -> str:
    if not croniter.is_valid(value):
        raise PydanticCustomError(
            "cron",
            "'{value}' is not a cron expression",
            {
                "value": value,
                "hint": "five fields: minute hour day-of-month month day-of-week, e.g. '0 8 * * MON-FRI'",
            },
        )
    return value


def _timezone(value: str) -> str:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise PydanticCustomError(
            "timezone",
            "unknown time zone '{value}'",
            {"value": value, "hint": suggest(value, zoneinfo.available_timezones())},
        ) from None
    return value


class ScheduleTrigger(_Model):
    """A time-based trigger: a cron ``schedule`` or an interval (``every``), optionally over a query."""

    schedule: Annotated[str, AfterValidator(_cron)] | None = None
    every: Annotated[float, BeforeValidator(_duration, json_schema_input_type=str | float)] | None = Field(
        None, description="e.g. 15m, 1h"
    )
    timezone: Annotated[str, AfterValidator(_timezone)] | None = Field(
        None, description="Time zone of the cron expression (default PPW_TIMEZONE)"
    )
    query: Query | None = None
    grace: Annotated[float, BeforeValidator(_grace, json_schema_input_type=str | float)] | None = Field(
        None, description="How late a missed slot may still run (default PPW_SCHEDULE_GRACE), e.g. 2h"
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> ScheduleTrigger:
        if (self.schedule is None) == (self.every is None):
            raise PydanticCustomError(
                "schedule_kind",
                "a schedule trigger needs exactly one of 'schedule' (cron) or 'every'",
                {"hint": "schedule: '0 8 * * MON-FRI' or every: 15m"},
            )
        return self


def _trigger_kind(value: Any) -> str | None:
    if isinstance(value, BaseModel):
        return {RecordTrigger: "record", WebhookTrigger: "webhook", ScheduleTrigger: "schedule"}.get(
            type(value)
        )
    if not isinstance(value, dict):
        return None
    if "resource" in value:
        return "record"
    if "webhook" in value:
        return "webhook"
    if "schedule" in value or "every" in value:
        return "schedule"
    return None


Trigger = Annotated[
    Annotated[RecordTrigger, Tag("record")]
    | Annotated[WebhookTrigger, Tag("webhook")]
    | Annotated[ScheduleTrigger, Tag("schedule")],
    Discriminator(
        _trigger_kind,
        custom_error_type="trigger_kind",
        custom_error_message="a trigger needs 'resource' (a record change), 'webhook' or 'schedule'/'every'",
        custom_error_context={"hint": "e.g. trigger: {resource: matters, on: updated}"},
    ),
]


# -- conditions -------------------------------------------------------------------------------------


_CONDITIONS = BeforeValidator(_listify, json_schema_input_type=Union["Condition", list["Condition"]])


class AnyOf(_Model):
    """Holds when at least one of the conditions holds."""

    any: Annotated[list[Condition], _CONDITIONS, Field(min_length=1)]


class AllOf(_Model):
    """Holds when every condition holds."""

    all: Annotated[list[Condition], _CONDITIONS, Field(min_length=1)]


class NotOf(_Model):
    """Holds when none of the conditions holds (``not: [a, b]`` is ``not (a or b)``)."""

    not_: Annotated[list[Condition], _CONDITIONS, Field(alias="not", min_length=1)]


def _condition_kind(value: Any) -> str | None:
    if isinstance(value, str):
        return "expr"
    if isinstance(value, AnyOf):
        return "any"
    if isinstance(value, AllOf):
        return "all"
    if isinstance(value, NotOf):
        return "not"
    if isinstance(value, dict) and len(value) == 1:
        key = next(iter(value))
        return key if key in ("any", "all", "not") else None
    return None


Condition = Annotated[
    Annotated[Expression, Tag("expr")]
    | Annotated[AnyOf, Tag("any")]
    | Annotated[AllOf, Tag("all")]
    | Annotated[NotOf, Tag("not")],
    Discriminator(
        _condition_kind,
        custom_error_type="condition_kind",
        custom_error_message="a condition is an expression (a string) or one of any:, all:, not:",
        custom_error_context={"hint": "quote expressions that contain ': ' or start with a quote"},
    ),
]

AnyOf.model_rebuild()
AllOf.model_rebuild()
NotOf.model_rebuild()


# -- steps ------------------------------------------------------------------------------------------


class StepBase(_Model):
    """What every step has besides its type and ``with:`` block."""

    id: StepId | None = Field(None, description="Name for later steps: steps.<id>")
    name: str | None = Field(None, description="Shown in run history")
    if_: Expression | None = Field(None, alias="if", description="Run only when this expression holds")
    continue_on_error: bool = Field(False, description="A failure of this step does not stop the rule")

    # Filled in by the concrete step models built below.
    type: str
    with_: Any

    @property
    def action(self) -> str:
        """The canonical step type (shorthands such as ``create_task`` expanded)."""
        of = step_types.shorthands().get(self.type)
        return of.name if of is not None else self.type

    @property
    def params(self) -> BaseModel:
        """The validated parameters for :attr:`action` (a shorthand's data wrapped into them)."""
        of = step_types.shorthands().get(self.type)
        if of is not None:
            return of.params.model_validate(of.expand(self.type, self.with_))
        params: BaseModel = self.with_
        return params

    def raw_with(self) -> dict[str, Any]:
        """The ``with:`` block as written, canonical form: what templates are rendered from."""
        of = step_types.shorthands().get(self.type)
        if of is not None:
            return of.expand(self.type, self.with_)
        dumped: dict[str, Any] = self.with_.model_dump(by_alias=True, exclude_unset=True)
        return dumped

    def label(self, index: int) -> str:
        return self.id or self.name or f"step {index + 1} ({self.type})"

    @model_validator(mode="after")
    def _branch_needs_an_id(self) -> StepBase:
        found = branches.branch_of(self)
        if found is not None and self.id is None:
            raise PydanticCustomError(
                "branch_id",
                "a {type} step with {key}: as a list of steps needs an id",
                {
                    "type": self.type,
                    "key": found[0],
                    "hint": "e.g. id: partner (the branch runs when steps.partner.declined)",
                },
            )
        return self


class _BranchingStep(StepBase):
    """A step whose ``with:`` may hold steps (:mod:`worker.rules.branches`): its model is built
    when the rule's is, since it refers back to :class:`Step`."""

    model_config = ConfigDict(defer_build=True)


def _choice_or_branch(value: Any) -> str:
    """A list is a branch of steps, anything else one of the words (errors of one kind only)."""
    return "branch" if isinstance(value, list) else "choice"


def _branching_params(params: type[BaseModel], names: tuple[str, ...]) -> type[BaseModel]:
    """``params`` with each of ``names`` typed as its literal choices or a list of steps (the step
    type declares the list loosely: it cannot know the rule model)."""
    annotations: dict[str, Any] = {}
    namespace: dict[str, Any] = {
        "__module__": params.__module__,
        "__qualname__": params.__qualname__,
        "__doc__": params.__doc__,
        "model_config": ConfigDict(defer_build=True),
        "__annotations__": annotations,
    }
    for name in names:
        info = params.model_fields[name]
        words = [a for a in typing.get_args(info.annotation) if typing.get_origin(a) is not list]
        annotations[name] = Annotated[
            Annotated[functools.reduce(operator.or_, words), Tag("choice")]
            | Annotated[list[Step], Tag("branch")],
            Discriminator(_choice_or_branch),
        ]
        namespace[name] = Field(info.default, description=info.description)
    metaclass: Any = type(params)
    made: type[BaseModel] = metaclass(params.__name__, (params,), namespace)
    return made


@functools.cache
def _step_model(step_type: str, params: Any) -> type[StepBase]:
    """The model of a step of ``step_type`` (cached: a rebuild of :class:`Rule` reuses it)."""
    class_name = "Step_" + re.sub(r"\W", "_", step_type)
    names = branches.branch_fields(step_type)
    base: type[StepBase] = _BranchingStep if names else StepBase
    fields: dict[str, Any] = {
        "type": (Literal[step_type], Field(description=f"Step type {step_type}")),
        "with_": (_branching_params(params, names) if names else params, Field(alias="with")),
    }
    model: type[StepBase] = create_model(class_name, __base__=base, **fields)
    return model


def step_models() -> dict[str, type[StepBase]]:
    """One model per accepted ``type:`` (canonical and shorthand), from the step type registry."""
    canonical = {name: _step_model(name, st.params) for name, st in step_types.registry().items()}
    shorthand = {name: _step_model(name, st.shorthand_with) for name, st in step_types.shorthands().items()}
    return dict(sorted({**canonical, **shorthand}.items()))


if TYPE_CHECKING:
    Step = StepBase
else:

    class Step:
        """One variant per step type, told apart by ``type:``, built from the registry whenever
        the rule model's schema is built: a step type defined later (a new module, a test's toy
        class) rebuilds :class:`Rule` through :func:`worker.actions.base.on_change`."""

        @classmethod
        def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
            variants = [Annotated[model, Tag(name)] for name, model in step_models().items()]
            return handler.generate_schema(
                Annotated[functools.reduce(operator.or_, variants), Discriminator("type")]
            )


# -- rate limit and rule ----------------------------------------------------------------------------

_PERIODS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
_PERIOD_ALIASES = {"s": "second", "sec": "second", "m": "minute", "min": "minute", "h": "hour", "d": "day"}


class RateLimit(_Model):
    """At most ``max`` runs of the rule per ``per``; ``"10/minute"`` is accepted too."""

    max: Annotated[int, Field(ge=1)]
    per: Literal["second", "minute", "hour", "day"] = "minute"

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, value: Any) -> Any:
        if isinstance(value, str):
            count, _, period = value.partition("/")
            period = _PERIOD_ALIASES.get(period.strip().lower(), period.strip().lower())
            if period.endswith("s") and period[:-1] in _PERIODS:
                period = period[:-1]
            if not count.strip().isdigit() or period not in _PERIODS:
                raise PydanticCustomError(
                    "rate_limit", "'{value}' is not a rate limit", {"value": value, "hint": "e.g. 10/minute"}
                )
            return {"max": int(count), "per": period}
        return value

    @property
    def period_seconds(self) -> int:
        return _PERIODS[self.per]


class Rule(_Model):
    """One automation: when ``trigger`` fires and ``conditions`` hold, run ``steps`` in order."""

    id: RuleId
    description: str = ""
    enabled: bool = True
    trigger: Trigger
    conditions: Annotated[list[Condition], _CONDITIONS] = Field(default_factory=list)
    steps: Annotated[list[Step], Field(min_length=1)]
    mode: Mode = Field(
        "queued",
        description="Runs for the same record: parallel, queued (in order), single (drop a new run "
        "while one runs or waits) or restart (a new run cancels the waiting one)",
    )
    rate_limit: RateLimit | None = Field(None, description="Default: PPW_RULE_BURST_PER_MINUTE per minute")
    allow_own_changes: bool = Field(False, description="Also fire on changes made by ppw itself")
    dry_run: bool = Field(False, description="Evaluate and record what the steps would do, but do not act")

    _flat: tuple[branches.FlatStep, ...] = PrivateAttr(default=())

    @model_validator(mode="after")
    def _flatten_branches(self) -> Rule:
        """Decline branches become guarded steps of :attr:`steps` (:mod:`worker.rules.branches`)."""
        flat = branches.flatten(self.steps)
        if len(flat) != len(self.steps) or any(f.guards for f in flat):
            object.__setattr__(self, "steps", [f.step for f in flat])
        self._flat = tuple(flat)
        return self

    @property
    def flat_steps(self) -> tuple[branches.FlatStep, ...]:
        """Every step as it runs (:attr:`steps`, in order) with where it is written and what it sees."""
        return self._flat

    @property
    def record_trigger(self) -> RecordTrigger | None:
        return self.trigger if isinstance(self.trigger, RecordTrigger) else None

    @property
    def resource(self) -> str | None:
        """The resource whose record the templates see as ``record`` (record triggers only: a
        schedule's query records are ``results``, a webhook's body is ``payload``)."""
        if isinstance(self.trigger, RecordTrigger):
            return self.trigger.resource
        return None

    @property
    def webhook_trigger(self) -> WebhookTrigger | None:
        return self.trigger if isinstance(self.trigger, WebhookTrigger) else None

    @property
    def schedule_trigger(self) -> ScheduleTrigger | None:
        return self.trigger if isinstance(self.trigger, ScheduleTrigger) else None

    @property
    def trigger_kind(self) -> Literal["record", "webhook", "schedule"]:
        if isinstance(self.trigger, WebhookTrigger):
            return "webhook"
        if isinstance(self.trigger, ScheduleTrigger):
            return "schedule"
        return "record"


def _rebuild() -> None:
    Rule.model_rebuild(force=True)


step_types.on_change(_rebuild)

#: Keys a rule file may use at the top of a rule (for did-you-mean on typos).
RULE_KEYS = tuple(field.alias or name for name, field in Rule.model_fields.items())

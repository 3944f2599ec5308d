"""The ``with:`` block of the built-in step types, as pydantic models, and the field types they share.

Each step type's class (:class:`worker.actions.base.StepType`) names its model here, so a model is
the single declaration of what a step accepts: ``ppw rules check`` validates rule files against it,
``ppw rules schema`` turns it into the editor schema, and the runner validates the *rendered*
parameters with the same model before the step acts.

Which values may be templates: anything that is data (record fields, ids, filters, texts, URLs,
headers, bodies) may contain ``{{ ... }}``. Structural choices (which resource, which Slack webhook or
signing secret, result handling, method, level, timeout) must be literal, so that a rules check can
verify them and so that a secret is only ever referenced by name.
"""

from __future__ import annotations

import re
from email.headerregistry import Address
from email.utils import getaddresses
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from worker.actions import cards
from worker.hints import closest, one_of
from worker.practicepanther import resources

# -- shared field types ------------------------------------------------------------------------

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


def _resource_check(*, create: bool = False, update: bool = False, listing: bool = False) -> Any:
    """A validator that accepts any spelling of a resource (``time_entries``, ``timeentries``,
    ``TimeEntries``) and returns the catalogue name, so that what runs, what is recorded and what
    messages say never depend on how the rule spelled it."""

    def check(name: str) -> str:
        known = resources.catalogue()
        resolved = resources.resolve_name(name)
        if resolved is None:
            raise PydanticCustomError(
                "unknown_resource",
                "unknown resource '{name}'",
                {"name": name, "hint": _resource_hint(name)},
            )
        resource = known[resolved]
        for wanted, able, verb in (
            (create, resource.can_create, "create"),
            (update, resource.can_update, "update"),
            (listing, resource.can_list, "list"),
        ):
            if wanted and not able:
                capable = [
                    n
                    for n, r in known.items()
                    if {"create": r.can_create, "update": r.can_update, "list": r.can_list}[verb]
                ]
                raise PydanticCustomError(
                    "resource_not_capable",
                    "PracticePanther's API cannot {verb} {name}",
                    {
                        "name": resolved,
                        "verb": verb,
                        "hint": f"resources that can: {', '.join(sorted(capable))}",
                    },
                )
        return resolved

    return check


def _resource_hint(name: str) -> str:
    """Did-you-mean over every spelling (``TimeEntrys`` is near ``TimeEntries``), naming the
    catalogue resource, or the list of resources when nothing is near."""
    by_spelling = {s: n for n in resources.catalogue() for s in resources.spellings(n)}
    match = closest(name, by_spelling)
    if match is None:
        return f"expected {one_of(resources.catalogue())}"
    return f"did you mean {by_spelling[match]!r}?"


def _names(predicate: Any = None) -> list[str]:
    return sorted(n for n, r in resources.catalogue().items() if predicate is None or predicate(r))


def _spelling_order(spelling: str) -> tuple[str, str]:
    """Alphabetical regardless of case, and the same order on every run (schema.json is committed)."""
    return spelling.lower(), spelling


def _resource_schema(predicate: Any = None, description: str | None = None) -> WithJsonSchema:
    """The editor schema of a resource field: ppw's names first (what completion offers first),
    then PracticePanther's spellings of the same resources (``timeentries``, ``TimeEntries``)."""
    names = _names(predicate)
    others = sorted({s for n in names for s in resources.spellings(n)} - set(names), key=_spelling_order)
    schema: dict[str, Any] = {"type": "string", "enum": [*names, *others]}
    if description:
        schema["description"] = description
    return WithJsonSchema(schema)


ResourceName = Annotated[
    str,
    AfterValidator(_resource_check()),
    _resource_schema(
        description="A PracticePanther resource: ppw's name (time_entries) or PracticePanther's "
        "(timeentries, TimeEntries)"
    ),
]
CreatableResource = Annotated[
    str,
    AfterValidator(_resource_check(create=True)),
    _resource_schema(lambda r: r.can_create),
]
UpdatableResource = Annotated[
    str,
    AfterValidator(_resource_check(update=True)),
    _resource_schema(lambda r: r.can_update),
]
ListableResource = Annotated[
    str,
    AfterValidator(_resource_check(listing=True)),
    _resource_schema(lambda r: r.can_list),
]
FindableResource = Annotated[
    str,
    AfterValidator(_resource_check(create=True, listing=True)),
    _resource_schema(lambda r: r.can_create and r.can_list),
]


def _secret_name(value: str) -> str:
    if not _NAME_RE.match(value):
        raise PydanticCustomError(
            "secret_name",
            "'{value}' is not a secret name",
            {
                "value": value,
                "hint": "name the secret (e.g. 'billing' for PPW_SLACK_WEBHOOKS__BILLING); "
                "never put the URL or key itself in a rule",
            },
        )
    return value


SecretName = Annotated[
    str,
    AfterValidator(_secret_name),
    Field(description="Name of a secret configured in the environment (never the secret itself)"),
]

RecordData = Annotated[
    dict[str, Any],
    Field(description="Field values of the PracticePanther record; values may be templates"),
]

CustomValues = Annotated[
    dict[str, Any],
    Field(
        description="Custom field values by label (matters, contacts, accounts), e.g. "
        "{'Case Stage': 'Settlement'}; values may be templates"
    ),
]


class Params(BaseModel):
    """Base of every ``with:`` model: unknown keys are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


# -- PracticePanther -----------------------------------------------------------------------------


class CreateParams(Params):
    """``practicepanther.create``: POST a new record."""

    resource: CreatableResource
    data: RecordData = Field(default_factory=dict)
    custom: CustomValues = Field(default_factory=dict)


class UpdateParams(Params):
    """``practicepanther.update``: GET the record, merge ``data`` into it, PUT the whole of it back.

    PracticePanther's PUT replaces the whole record, so the executor never sends ``data`` alone.
    ``custom`` sets the custom fields it names by label and keeps every other one.
    """

    resource: UpdatableResource
    id: Annotated[str, Field(min_length=1, description="Record id; usually a template")]
    data: RecordData = Field(default_factory=dict)
    custom: CustomValues = Field(default_factory=dict)


class FindParams(Params):
    """``practicepanther.find``: list records with an OData ``filter`` and/or the list ``params``.

    ``result: first`` gives one record (or none), ``all`` a list. ``not_found`` says what happens
    when nothing matches: ``fail`` the run, ``continue`` with the result ``none`` (or ``[]``), or
    ``stop`` the rule quietly.
    """

    resource: ListableResource
    filter: str | None = Field(None, description="OData $filter, e.g. \"status eq 'Open'\"")
    params: dict[str, Any] = Field(default_factory=dict, description="List parameters of the resource")
    orderby: str | None = Field(None, description="OData $orderby, e.g. 'updated_at desc'")
    limit: Annotated[int, Field(ge=1, le=1000)] | None = None
    result: Literal["first", "all"] = "first"
    not_found: Literal["fail", "continue", "stop"] = "fail"


class FindOrCreateParams(Params):
    """``practicepanther.find_or_create``: find a record whose fields equal ``match``, else create
    one from ``match`` and ``data`` together."""

    resource: FindableResource
    match: Annotated[dict[str, Any], Field(min_length=1)]
    data: RecordData = Field(default_factory=dict)


class FindContactByEmailParams(Params):
    """``find_contact_by_email``: the contact whose email is ``email`` (compared case-insensitively),
    a shorthand for ``practicepanther.find`` on contacts."""

    email: Annotated[str, Field(min_length=1, description="An email address; usually a template")]
    not_found: Literal["fail", "continue", "stop"] = "fail"


class FindMatterParams(Params):
    """``find_matter``: the matter with this ``number`` and/or ``name``, a shorthand for
    ``practicepanther.find`` on matters."""

    number: int | Annotated[str, Field(min_length=1)] | None = Field(
        None, description="The matter number, e.g. 1042 or a template"
    )
    name: Annotated[str, Field(min_length=1)] | None = Field(None, description="The matter's name")
    not_found: Literal["fail", "continue", "stop"] = "fail"

    @model_validator(mode="after")
    def _number_or_name(self) -> FindMatterParams:
        if self.number is None and self.name is None:
            raise PydanticCustomError(
                "find_matter", "find_matter needs 'number' or 'name'", {"hint": "e.g. number: 1042"}
            )
        return self


# -- Slack -----------------------------------------------------------------------------------------


class SlackPostParams(Params):
    """``slack.post``: to an incoming webhook by name, or to a channel with the bot token."""

    webhook: SecretName | None = Field(None, description="Name of PPW_SLACK_WEBHOOKS__<NAME>")
    channel: str | None = Field(
        None, description="'#channel' or a channel/user id (needs PPW_SLACK_BOT_TOKEN)"
    )
    text: str | None = None
    blocks: list[dict[str, Any]] | None = None
    thread: str | None = Field(
        None,
        description="Reply in the thread of this message's ts, e.g. '{{ steps.notice.ts }}' (channel only)",
    )

    @model_validator(mode="after")
    def _one_destination(self) -> SlackPostParams:
        if self.thread is not None and self.channel is None:
            raise PydanticCustomError(
                "slack_thread",
                "thread: needs channel: (an incoming webhook cannot reply in a thread)",
                {"hint": "post with channel: and PPW_SLACK_BOT_TOKEN"},
            )
        if (self.webhook is None) == (self.channel is None):
            raise PydanticCustomError(
                "slack_destination",
                "slack.post needs exactly one of 'webhook' or 'channel'",
                {"hint": "webhook: billing (PPW_SLACK_WEBHOOKS__BILLING) or channel: '#billing'"},
            )
        if self.text is None and not self.blocks:
            raise PydanticCustomError(
                "slack_message", "slack.post needs 'text' or 'blocks'", {"hint": "add text: ..."}
            )
        return self


class SlackUpdateParams(Params):
    """``slack.update``: edit a message posted earlier with the bot token (``chat.update``)."""

    channel: str = Field(
        description="Channel id of the message, e.g. '{{ steps.notice.channel }}' (needs PPW_SLACK_BOT_TOKEN)"
    )
    ts: str = Field(description="The message's ts, e.g. '{{ steps.notice.ts }}'")
    text: str | None = None
    blocks: list[dict[str, Any]] | None = None

    @model_validator(mode="after")
    def _some_message(self) -> SlackUpdateParams:
        if self.text is None and not self.blocks:
            raise PydanticCustomError(
                "slack_message", "slack.update needs 'text' or 'blocks'", {"hint": "add text: ..."}
            )
        return self


# -- Microsoft Teams ---------------------------------------------------------------------------------


def _has_template(value: Any) -> bool:
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def _template_free(error: Any) -> bool:
    """Whether a schema error is about a literal value: a template (``facts: "{{ steps.f.facts }}"``)
    is checked once rendered, when the runner validates the rendered card with the same model."""
    return not _has_template(error.instance)


def _check_card(card: dict[str, Any]) -> dict[str, Any]:
    card = cards.normalise(card)
    problem = cards.card_problem(card, keep=_template_free)
    if problem is not None:
        message, hint = problem
        raise PydanticCustomError("adaptive_card", "{message}", {"message": message, "hint": hint})
    return card


AdaptiveCard = Annotated[
    dict[str, Any],
    AfterValidator(_check_card),
    WithJsonSchema(cards.editor_schema()),
]


class TeamsPostParams(Params):
    """``teams.post``: a message to a Teams channel through a Workflows webhook, by name."""

    webhook: SecretName = Field(description="Name of PPW_TEAMS_WEBHOOKS__<NAME>")
    text: str | None = Field(None, description="Sent as a card with one TextBlock (Teams markdown)")
    card: AdaptiveCard | None = None

    @model_validator(mode="after")
    def _text_or_card(self) -> TeamsPostParams:
        if (self.text is None) == (self.card is None):
            raise PydanticCustomError(
                "teams_message",
                "teams.post needs exactly one of 'text' or 'card'",
                {"hint": "text: ... or card: {type: AdaptiveCard, version: '1.5', body: [...]}"},
            )
        return self


# -- email -----------------------------------------------------------------------------------------


def email_addresses(value: Any, field: str, *, skip_templates: bool = False) -> list[Address]:
    """The addresses of ``value`` (one string, possibly ``"a@x.com, B <b@y.org>"``, or a list of
    them); a ``ValueError`` naming ``field`` for anything that is not one.

    An address needs a local part, an ``@`` and a domain with a dot; line breaks are refused (they
    would smuggle headers in). ``skip_templates`` passes over unrendered templates (rules check).
    """
    if value is None:
        return []
    found: list[Address] = []
    for index, item in enumerate([value] if isinstance(value, str) else value):
        where = field if isinstance(value, str) else f"{field}[{index}]"
        if not isinstance(item, str):
            raise ValueError(f"{where}: {item!r} is not an email address")
        if skip_templates and _has_template(item):
            continue
        if "\r" in item or "\n" in item:
            raise ValueError(f"{where}: {item!r} has a line break")
        if not item.strip():
            continue
        parts = getaddresses([item])
        for name, spec in parts:
            shown = item if len(parts) == 1 or not spec else spec
            try:
                address: Address | None = Address(display_name=name, addr_spec=spec)
            except (ValueError, IndexError, TypeError):
                address = None
            if address is None or not address.username or "." not in address.domain.strip("[]."):
                raise ValueError(f"{where}: {shown!r} is not an email address (expected name@firm.example)")
            found.append(address)
    return found


Addresses = str | list[str]


class EmailSendParams(Params):
    """``email.send``: a message through ``PPW_SMTP_URL``."""

    to: Addresses = Field(description="Address(es): 'a@firm.example', 'A <a@x>, b@y' or a list; templates")
    cc: Addresses | None = None
    bcc: Addresses | None = None
    reply_to: Addresses | None = None
    from_: str | None = Field(None, alias="from", description="Overrides PPW_SMTP_FROM")
    subject: Annotated[str, Field(min_length=1)]
    text: str = Field(description="The plain-text body")
    html: str | None = Field(None, description="An HTML body besides text (sent as multipart/alternative)")

    @field_validator("to", "cc", "bcc", "reply_to", "from_")
    @classmethod
    def _addresses(cls, value: Addresses | None, info: ValidationInfo) -> Addresses | None:
        field = "from" if info.field_name == "from_" else str(info.field_name)
        hint = {"hint": "e.g. Jane Doe <jane@firm.example>, or a list of addresses"}
        try:
            found = email_addresses(value, field, skip_templates=True)
        except ValueError as exc:
            raise PydanticCustomError("email_address", "{message}", {"message": str(exc), **hint}) from None
        if field == "from" and len(found) > 1:
            raise PydanticCustomError("email_address", "from: one address only", hint)
        templated = any(_has_template(v) for v in ([value] if isinstance(value, str) else value or []))
        if field == "to" and not found and not templated:
            raise PydanticCustomError("email_address", "to: no address", hint)
        return value


# -- HTTP ------------------------------------------------------------------------------------------


class HttpRequestParams(Params):
    """``http.request``: call a webhook or API; ``secret`` signs the body with HMAC-SHA256."""

    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "POST"
    url: Annotated[str, Field(min_length=1)]
    headers: dict[str, str] = Field(default_factory=dict)
    json_body: Any = Field(None, alias="json")
    secret: SecretName | None = Field(None, description="Name of PPW_WEBHOOK_SECRETS__<NAME> for signing")
    signature: Literal["ppw", "standard-webhooks"] = Field(
        "ppw",
        description="How the body is signed with secret: ppw (X-PPW-Signature, default) or "
        "standard-webhooks (webhook-id, webhook-timestamp, webhook-signature)",
    )
    timeout: Annotated[float, Field(gt=0, le=60)] = 10.0

    @model_validator(mode="after")
    def _url_scheme(self) -> HttpRequestParams:
        if "signature" in self.model_fields_set and self.secret is None:
            raise PydanticCustomError(
                "signature_secret",
                "signature: {signature} needs secret: NAME to sign with",
                {"signature": self.signature, "hint": "add secret: NAME (PPW_WEBHOOK_SECRETS__NAME)"},
            )
        if not self.url.startswith(("http://", "https://", "{{")):
            raise PydanticCustomError(
                "url_scheme",
                "url must start with https:// or http://",
                {"hint": "e.g. https://hooks.example.com/intake"},
            )
        return self


# -- log -------------------------------------------------------------------------------------------


class LogParams(Params):
    """``log``: write a line to the worker's log (and the run history)."""

    message: str
    level: Literal["debug", "info", "warning", "error"] = "info"

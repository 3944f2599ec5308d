"""A schedule's ``query:``: the records fetched at each slot, every page of them, for ``results``.

``filter`` and ``params`` may be templates over ``slot`` (the slot's time in the schedule's time
zone), ``now()`` (the same moment: a retried slot renders the same query), ``env`` and ``rule``;
``{{ slot | add_days(1) | utc | isoformat }}`` is tomorrow at the slot's time, with the offset
PracticePanther needs in a ``$filter`` date.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Protocol

from worker.calendar import Calendar
from worker.rules.context import allowed_env, env_view, rule_view
from worker.rules.model import Query
from worker.rules.templating import RulesEnvironment, compile_value, environment, render_value
from worker.rules.views import unwrap
from worker.settings import Settings


class Lister(Protocol):
    """What a query needs of the PracticePanther client."""

    def list(
        self,
        resource: str,
        *,
        filter: str | None = None,
        orderby: str | list[str] | None = None,
        params: dict[str, Any] | None = None,
        page_size: int = 200,
        limit: int | None = None,
    ) -> Any: ...


@dataclass(frozen=True)
class RenderedQuery:
    """A query with its templates rendered for one slot."""

    resource: str
    filter: str | None
    params: dict[str, Any]
    orderby: str | None
    limit: int

    def describe(self) -> dict[str, Any]:
        """For ``ppw rules test``: the request that fetches the first page."""
        query: dict[str, Any] = dict(self.params)
        if self.filter:
            query["$filter"] = self.filter
        if self.orderby:
            query["$orderby"] = self.orderby
        return {"resource": self.resource, "params": query, "limit": self.limit}


@dataclass(frozen=True)
class QueryResult:
    records: list[dict[str, Any]]
    truncated: bool


def render_query(
    query: Query,
    slot: dt.datetime,
    settings: Settings,
    *,
    rule_id: str = "",
    limit: int = 1000,
    env: RulesEnvironment | None = None,
) -> RenderedQuery:
    """``query`` with its ``filter`` and ``params`` rendered for ``slot`` (raises ``RenderError``)."""
    env = env or environment(settings.timezone, Calendar.from_settings(settings))
    allowlist = list(settings.env_allowlist)
    variables = {
        **env.globals,
        "slot": slot,
        "now": lambda: slot,
        "env": env_view(allowed_env(allowlist, settings.secret_values()), allowlist),
        "rule": rule_view(rule_id, "", ""),
    }
    flt = render_value(compile_value(env, query.filter), variables) if query.filter else None
    params = unwrap(render_value(compile_value(env, dict(query.params)), variables))
    return RenderedQuery(
        resource=query.resource,
        filter=str(flt) if flt not in (None, "") else None,
        params={k: v for k, v in params.items() if v not in (None, "")},
        orderby=query.orderby,
        limit=query.limit or limit,
    )


def run_query(rendered: RenderedQuery, client: Lister) -> QueryResult:
    """Every matching record up to the limit (one more is asked for, to know if there were more)."""
    page_size = min(rendered.limit + 1, 500)
    found = list(
        client.list(
            rendered.resource,
            filter=rendered.filter,
            orderby=rendered.orderby,
            params=rendered.params or None,
            page_size=page_size,
            limit=rendered.limit + 1,
        )
    )
    return QueryResult(found[: rendered.limit], truncated=len(found) > rendered.limit)

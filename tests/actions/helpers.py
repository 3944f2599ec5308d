"""Building step contexts for executor tests."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from worker.actions.base import StepContext, StepResult, step_type
from worker.actions.services import Services
from worker.events import Event


def event(connection: str, record_id: str = "m-1", **record: Any) -> Event:
    return Event.build(
        type="updated",
        resource="matters",
        record_id=record_id,
        revision="2026-04-06T10:00:00Z",
        connection=connection,
        record={"id": record_id, **record},
    )


def execute(
    services: Services,
    name: str,
    params: dict[str, Any],
    *,
    connection: str,
    ev: Event | None = None,
    rule_id: str = "rule-a",
    step_id: str = "s1",
    uncertain: bool = False,
) -> StepResult:
    """Validate ``params`` with the step type's model and run its executor, as the runner does."""
    model: type[BaseModel] = step_type(name).params
    ctx = StepContext(
        services=services,
        connection=connection,
        event=ev or event(connection),
        rule_id=rule_id,
        step_id=step_id,
        run_id="run-1",
        uncertain=uncertain,
    )
    return step_type(name).run(model.model_validate(params), ctx)

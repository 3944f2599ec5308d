"""``log``: a line in the worker's log and the run history; handy for dry runs and new rules."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from worker.actions.base import StepContext, StepResult, StepType
from worker.actions.params import LogParams

if TYPE_CHECKING:
    from worker.settings import Settings

log = logging.getLogger("worker.rules.log")

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


class Log(StepType):
    """``log``: writes nothing anywhere but the log, so it acts in a dry run too."""

    name = "log"
    params = LogParams
    writes = False
    result_keys = frozenset({"message"})
    with_doc = "`message`, `level: debug\\|info\\|warning\\|error`"
    result_doc = "`message`"

    def run(self, params: LogParams, ctx: StepContext) -> StepResult:
        message = ctx.services.mask_text(params.message)
        log.log(_LEVELS[params.level], "%s", message)
        return StepResult(output={"message": message}, request={"level": params.level, "message": message})

    def describe(self, params: dict[str, Any], settings: Settings) -> dict[str, Any]:
        return {"log": params.get("level", "info"), "message": params.get("message")}

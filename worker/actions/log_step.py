"""``log``: a line in the worker's log and the run history; handy for dry runs and new rules."""

from __future__ import annotations

import logging

from worker.actions.base import StepContext, StepResult, executor
from worker.actions.params import LogParams

log = logging.getLogger("worker.rules.log")

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


@executor("log", params=LogParams, writes=False)
def write(params: LogParams, ctx: StepContext) -> StepResult:
    message = ctx.services.mask_text(params.message)
    log.log(_LEVELS[params.level], "%s", message)
    return StepResult(output={"message": message}, request={"level": params.level, "message": message})

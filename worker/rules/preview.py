"""What a step would send, described without sending it (``ppw rules test``/``explain``).

Secrets stay names: a Slack webhook shows as ``PPW_SLACK_WEBHOOKS__BILLING`` (and whether it is
configured), a signing secret as its name; everything shown is also passed through the deployment's
scrubber, so a secret value that found its way into a template is masked too. What a step would
send is its step type's to say (:meth:`worker.actions.base.StepType.describe`).
"""

from __future__ import annotations

from typing import Any

from worker.actions.base import registry
from worker.observability.scrub import Scrubber
from worker.settings import Settings


def describe(action: str, params: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """The request(s) a step with rendered ``params`` would make, secrets masked."""
    scrubber = Scrubber(settings.secret_values())
    return {k: scrubber.value(v) for k, v in _describe(action, params, settings).items()}


def _describe(action: str, params: dict[str, Any], settings: Settings) -> dict[str, Any]:
    found = registry().get(action)
    return found.describe(params, settings) if found is not None else {"params": params}

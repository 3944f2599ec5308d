"""Actions: the step types a rule's ``steps:`` can use, one class each, and what they share.

- :mod:`~worker.actions.base`: ``StepType`` (name, parameters, result keys, shorthands, masking,
  ``run()``), the registry built from its subclasses, and the context a step runs in.
- :mod:`~worker.actions.errors`: the errors steps raise (transient or permanent).
- One module per family of step types: ``practicepanther``, ``slack``, ``teams``, ``mail``
  (``email.send``), ``http``, ``log_step``, ``wait``, ``approval`` (its requests and decisions in
  ``approval_requests``, shared with the approval endpoints); ``params`` holds their parameter
  models, ``cards`` the Adaptive Card schema ``teams.post`` checks cards against, ``outbound``
  the HTTP client for deliveries, ``signing`` the webhook signature, ``services`` the shared
  clients.

The names in ``__all__`` are resolved lazily: defining a step type registers it, so the step
modules are imported when the registry is first read, not with this package.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from worker.exports import lazy_exports

_EXPORTS = {
    "WaitParams": "worker.actions.wait",
    "WaitStep": "worker.actions.wait",
    "ApprovalRequest": "worker.actions.approval_requests",
    "Approvals": "worker.actions.approval_requests",
    "BadLink": "worker.actions.approval_requests",
    "Decision": "worker.actions.approval_requests",
    "read_slack_value": "worker.actions.approval_requests",
    "show_on_slack": "worker.actions.approval",
    "Outbound": "worker.actions.outbound",
    "TransportFailure": "worker.actions.outbound",
    "StepContext": "worker.actions.base",
    "StepResult": "worker.actions.base",
    "StepType": "worker.actions.base",
    "all_step_types": "worker.actions.base",
    "registry": "worker.actions.base",
    "result_resource": "worker.actions.base",
    "step_type": "worker.actions.base",
    "PermanentStepError": "worker.actions.errors",
    "StepError": "worker.actions.errors",
    "StopRun": "worker.actions.errors",
    "TransientStepError": "worker.actions.errors",
    "CancelRun": "worker.actions.errors",
    "WaitUntil": "worker.actions.errors",
    "Services": "worker.actions.services",
    "signature": "worker.actions.signing",
    "standard_webhooks_key": "worker.actions.signing",
    "standard_webhooks_signature": "worker.actions.signing",
}

__all__ = [
    "ApprovalRequest",
    "Approvals",
    "BadLink",
    "CancelRun",
    "Decision",
    "Outbound",
    "PermanentStepError",
    "Services",
    "StepContext",
    "StepError",
    "StepResult",
    "StepType",
    "StopRun",
    "TransientStepError",
    "TransportFailure",
    "WaitParams",
    "WaitStep",
    "WaitUntil",
    "all_step_types",
    "read_slack_value",
    "registry",
    "result_resource",
    "show_on_slack",
    "signature",
    "standard_webhooks_key",
    "standard_webhooks_signature",
    "step_type",
]

if TYPE_CHECKING:
    from worker.actions.approval import show_on_slack
    from worker.actions.approval_requests import (
        ApprovalRequest,
        Approvals,
        BadLink,
        Decision,
        read_slack_value,
    )
    from worker.actions.base import (
        StepContext,
        StepResult,
        StepType,
        all_step_types,
        registry,
        result_resource,
        step_type,
    )
    from worker.actions.errors import (
        CancelRun,
        PermanentStepError,
        StepError,
        StopRun,
        TransientStepError,
        WaitUntil,
    )
    from worker.actions.outbound import Outbound, TransportFailure
    from worker.actions.services import Services
    from worker.actions.signing import signature, standard_webhooks_key, standard_webhooks_signature
    from worker.actions.wait import WaitParams, WaitStep

__getattr__ = lazy_exports(__name__, _EXPORTS)

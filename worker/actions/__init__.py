"""Actions: the step types a rule's ``steps:`` can use, one class each, and what they share.

- :mod:`~worker.actions.base`: ``StepType`` (name, parameters, result keys, shorthands, masking,
  ``run()``), the registry built from its subclasses, and the context a step runs in.
- :mod:`~worker.actions.errors`: the errors steps raise (transient or permanent).
- One module per family of step types: ``practicepanther``, ``slack``, ``teams``, ``mail``
  (``email.send``), ``http``, ``log_step``; ``params`` holds their parameter models, ``cards`` the
  Adaptive Card schema ``teams.post`` checks cards against, ``outbound`` the HTTP client for
  deliveries, ``signing`` the webhook signature, ``services`` the shared clients.

The names in ``__all__`` are resolved lazily: defining a step type registers it, so the step
modules are imported when the registry is first read, not with this package.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from worker.exports import lazy_exports

_EXPORTS = {
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
    "CancelRun",
    "PermanentStepError",
    "Services",
    "StepContext",
    "StepError",
    "StepResult",
    "StepType",
    "StopRun",
    "TransientStepError",
    "WaitUntil",
    "all_step_types",
    "registry",
    "result_resource",
    "signature",
    "standard_webhooks_key",
    "standard_webhooks_signature",
    "step_type",
]

if TYPE_CHECKING:
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
    from worker.actions.services import Services
    from worker.actions.signing import signature, standard_webhooks_key, standard_webhooks_signature

__getattr__ = lazy_exports(__name__, _EXPORTS)

"""The one base class of every error ppw raises on purpose, and the properties retries read.

Every error ppw raises itself is a :class:`PpwError`, so a retry decision asks the error instead
of guessing from its type or probing it with ``getattr``. Three properties, each with a safe
default (permanent, no wait asked, nothing applied) that a subclass overrides:

``transient``
    A retry may succeed later: the far side is down, busy, rate limiting us, or a lock is held.
``retry_after``
    Seconds the far side asked us to wait (an HTTP ``Retry-After``), or None when it did not say.
``may_have_applied``
    The operation may have taken effect although we saw a failure (a read timeout, a 500), so a
    retry must first look for its effect before repeating a write.

Where an error is also caught as a builtin (``ValueError``, ``LookupError``, ``RuntimeError``) or
as a library's (Jinja's ``SecurityError``), that stays its second base.

The tree (``tests/test_errors.py`` keeps it complete: every class must be named here, with the
module it lives in)::

    * PpwError (worker.errors)
      x StepError (worker.actions.errors): transient or not, as the step said
        + PermanentStepError (worker.actions.errors)
        + TransientStepError (worker.actions.errors)
      x StopRun (worker.actions.errors): not a failure; ends the run as succeeded
      x WaitUntil (worker.actions.errors): not a failure; the run waits, stored, until due
      x CancelRun (worker.actions.errors): not a failure; ends the run as cancelled
      x RunBusy (worker.delivery.timers): a worker holds the run; try again shortly
      x RunNotWaiting (worker.process.run_commands): only a waiting run can be cancelled
      x ConsoleConfigError (worker.console.auth): bad PPW_CONSOLE_* settings; the console refuses to start
      x ConsoleDisabled (worker.console.server): PPW_CONSOLE_ENABLED is off
      x Denied (worker.console.web): a refused request (403), with what the page says
      x BadFilter (worker.console.lists): a list's filter or cursor unreadable (400, names it)
      x TryError (worker.console.tryit): a "try it" input that cannot be tried (400, 404, 502)
      x BadLink (worker.actions.approval_requests): an approval link not signed by us
      x TransportFailure (worker.actions.outbound): transient
      x PracticePantherError (worker.practicepanther.errors): 403, other statuses
        + AuthError (worker.practicepanther.errors)
          - ReauthorizationRequired (worker.practicepanther.errors)
        + NotFound (worker.practicepanther.errors)
        + InvalidRequest (worker.practicepanther.errors): 400/422
        + RateLimited (worker.practicepanther.errors): transient, retry_after
        + ServerError (worker.practicepanther.errors): transient
        + TransportError (worker.practicepanther.errors): transient
        + LoginError (worker.practicepanther.errors)
      x TokenStoreError (worker.practicepanther.tokens)
      x CustomFieldError (worker.practicepanther.customfields): permanent
      x CalendarError (worker.calendar): a calendar setting, closure or duration unreadable
      x StateError (worker.state.base): transient
        + LockNotAcquired (worker.state.locks)
        + UnsafeStateStore (worker.state.durability): permanent
        + _WrongType (worker.state.sqlite)
      x BackupError (worker.state.backup): a state backup not written or not restored
        + BackupFileError (worker.state.backup): not a complete, valid backup; nothing imported
        + TargetNotEmpty (worker.state.backup): the connection holds state; --replace
        + ImportIncomplete (worker.state.backup): stopped part-way; --replace again
      x PagingError (worker.polling.paging)
      x PollAborted (worker.polling.poller)
      x ReconcileAborted (worker.polling.reconcile): the lease was lost; nothing removed
      x HeldBatchNotFound (worker.polling.held)
      x DictionaryMissing (worker.polling.dictionaries): a snapshot names a dictionary not kept
      x SnapshotUnreadable (worker.polling.snapshots): cut short, corrupt, or its dictionary gone
      x EventNotFound (worker.eventstore)
      x RunNotFound (worker.delivery.history)
      x ReplayError (worker.delivery.replay)
      x NeedsSharedBroker (worker.process.run)
      x BrokenRules (worker.process.run)
      x BrokerURLError (worker.process.broker)
      x CompileError (worker.rules.templating)
      x RenderError (worker.rules.templating)
      x TemplateLimitError (worker.rules.templating)

The sandbox (``worker.sandbox``) is a simulator of PracticePanther, not part of ppw's error
surface, and keeps its own exceptions.
"""

from __future__ import annotations

__all__ = ["PpwError"]


class PpwError(Exception):
    """Base class of every error ppw raises on purpose; by default permanent and not applied."""

    @property
    def transient(self) -> bool:
        """Whether trying again later may succeed."""
        return False

    @property
    def retry_after(self) -> float | None:
        """Seconds the far side asked us to wait before trying again, if it said."""
        return None

    @property
    def may_have_applied(self) -> bool:
        """Whether the operation may have taken effect: a retry must check before writing again."""
        return False

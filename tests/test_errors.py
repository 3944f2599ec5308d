"""One error base: every exception class in worker/ is a PpwError, the drawn tree is complete and
true, and the base's properties drive the retry decisions."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re

import httpx
import pytest
from jinja2.sandbox import SecurityError

import worker
from worker import errors as errors_module
from worker.actions.errors import PermanentStepError, StepError, StopRun, TransientStepError
from worker.actions.outbound import TransportFailure
from worker.actions.practicepanther import _client_error
from worker.delivery.failures import classify
from worker.errors import PpwError
from worker.polling.held import HeldBatchNotFound
from worker.practicepanther import errors as pp_errors
from worker.practicepanther.errors import (
    AuthError,
    InvalidRequest,
    NotFound,
    PracticePantherError,
    RateLimited,
    ServerError,
    TransportError,
)
from worker.practicepanther.retry import retryable
from worker.process.broker import BrokerURLError
from worker.rules.templating import TemplateLimitError
from worker.state.base import StateError
from worker.state.durability import UnsafeStateStore
from worker.state.locks import LockNotAcquired

#: Packages whose exceptions are not ppw's: the sandbox simulates PracticePanther.
EXCLUDED = ("worker.sandbox", "worker.__main__")
TREE_LINE = re.compile(r"^(?P<indent> *)[*x+\-] (?P<name>\w+) \((?P<module>worker[\w.]*)\)")


def _defined_exceptions() -> dict[type[BaseException], str]:
    found: dict[type[BaseException], str] = {}
    for info in pkgutil.walk_packages(worker.__path__, "worker."):
        if info.name.startswith(EXCLUDED):
            continue
        module = importlib.import_module(info.name)
        for obj in vars(module).values():
            if inspect.isclass(obj) and issubclass(obj, BaseException) and obj.__module__ == info.name:
                found[obj] = info.name
    return found


def _tree() -> list[tuple[int, str, str]]:
    """``(indent, class name, module)`` for each line of the drawing in worker/errors.py."""
    lines = [TREE_LINE.match(line) for line in (errors_module.__doc__ or "").splitlines()]
    return [(len(m["indent"]), m["name"], m["module"]) for m in lines if m]


def test_every_exception_in_worker_is_a_ppw_error() -> None:
    outside = sorted(
        f"{module}.{cls.__qualname__}"
        for cls, module in _defined_exceptions().items()
        if not issubclass(cls, PpwError)
    )
    assert not outside, f"not under worker.errors.PpwError: {outside}"


def test_the_tree_names_every_class_where_it_lives() -> None:
    drawn = {(name, module) for _, name, module in _tree()}
    defined = {(cls.__name__, module) for cls, module in _defined_exceptions().items()}
    assert defined - drawn == set(), "add these to the tree in worker/errors.py"
    assert drawn - defined == set(), "these are drawn in worker/errors.py but no longer exist there"


def test_the_tree_draws_each_class_under_its_parent() -> None:
    tree = _tree()
    classes = {(cls.__name__, module): cls for cls, module in _defined_exceptions().items()}
    drawn = {classes[(name, module)] for _, name, module in tree}
    stack: list[tuple[int, type[BaseException]]] = []
    for indent, name, module in tree:
        cls = classes[(name, module)]
        while stack and stack[-1][0] >= indent:
            stack.pop()
        if not stack:
            assert cls is PpwError
        else:
            parent = next(base for base in cls.__mro__[1:] if base in drawn)
            assert stack[-1][1] is parent, (
                f"{name} is drawn under {stack[-1][1].__name__}, is a {parent.__name__}"
            )
        stack.append((indent, cls))


def test_second_bases_stay_for_callers_that_catch_builtins() -> None:
    assert issubclass(BrokerURLError, ValueError)
    assert issubclass(HeldBatchNotFound, LookupError)
    assert issubclass(StateError, RuntimeError)
    assert issubclass(TemplateLimitError, SecurityError)
    assert not hasattr(pp_errors, "ValidationError"), "pydantic's name stays pydantic's"


def test_the_base_is_permanent_and_not_applied_by_default() -> None:
    error = PpwError("boom")
    assert (error.transient, error.retry_after, error.may_have_applied) == (False, None, False)
    failure = classify(error)
    assert not failure.transient and failure.retry_after is None and not failure.may_have_applied


@pytest.mark.parametrize(
    ("error", "transient", "retry_after", "applied"),
    [
        (RateLimited("slow down", retry_after=2), True, 2.0, False),
        (ServerError("oops", status=500), True, None, True),
        (ServerError("unavailable", status=503), True, None, False),
        (TransportError("read timeout", request_sent=True), True, None, True),
        (TransportError("refused", request_sent=False), True, None, False),
        (NotFound("gone", status=404), False, None, False),
        (InvalidRequest("no subject", model_state={"subject": ["required"]}), False, None, False),
        (AuthError("logged out"), False, None, False),
        (StateError("redis down"), True, None, False),
        (LockNotAcquired("held"), True, None, False),
        (UnsafeStateStore("maxmemory-policy allkeys-lru"), False, None, False),
        (TransientStepError("429", retry_after=3.0, may_have_applied=True), True, 3.0, True),
        (PermanentStepError("bad channel"), False, None, False),
        (StepError("as said", transient=True), True, None, False),
        (StopRun("not found: stop"), False, None, False),
        (TransportFailure("ReadTimeoutError", sent=True), True, None, True),
        (TransportFailure("ConnectTimeoutError", sent=False), True, None, False),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, BaseException) else None,
)
def test_the_properties_drive_classification(
    error: PpwError, transient: bool, retry_after: float | None, applied: bool
) -> None:
    assert (error.transient, error.retry_after, error.may_have_applied) == (transient, retry_after, applied)
    failure = classify(error)
    assert failure.transient is transient
    assert failure.retry_after == retry_after
    assert failure.may_have_applied is applied
    assert failure.kind == type(error).__name__


def test_other_exceptions_are_classified_by_type_not_by_probing() -> None:
    class LooksTransient(Exception):
        transient = True
        retry_after = 5.0

    assert not classify(LooksTransient("a bug")).transient
    assert classify(httpx.ConnectError("refused")).transient
    assert classify(ConnectionResetError()).transient
    assert classify(TimeoutError()).transient
    assert not classify(ValueError("bad parameter")).transient


def test_practicepanther_retries_read_the_same_properties() -> None:
    assert retryable("POST", ServerError("oops", status=503))
    assert not retryable("POST", ServerError("oops", status=500)), "a create that may have landed"
    assert retryable("PUT", ServerError("oops", status=500))
    assert not retryable("GET", NotFound("gone"))
    assert not retryable("GET", StateError("not a PracticePanther error"))


def test_a_practicepanther_failure_becomes_a_step_error_with_its_properties() -> None:
    limited = _client_error(RateLimited("slow down", retry_after=4.0, method="GET", path="/api/v2/matters"))
    assert limited.transient and limited.retry_after == 4.0 and not limited.may_have_applied
    landed = _client_error(ServerError("oops", method="POST", path="/api/v2/tasks", status=500))
    assert landed.transient and landed.may_have_applied
    logged_out = _client_error(AuthError("401", method="GET", path="/api/v2/matters"))
    assert logged_out.transient and "ppw auth login" in logged_out.message
    forbidden = _client_error(PracticePantherError("forbidden", status=403))
    assert not forbidden.transient and forbidden.retry_after is None

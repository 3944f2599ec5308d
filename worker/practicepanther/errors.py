"""Typed errors for everything that can go wrong talking to PracticePanther.

Each error names the HTTP method and the URL *path* (never the query string, which can carry an
OData filter with client names, and never a header, which carries the bearer token), so it is
safe to log and to send to Sentry. The root is a :class:`~worker.errors.PpwError`, and its three
properties drive the retry policy and the callers:

``transient``
    Trying the same request again later may succeed (rate limit, outage, network blip).
``retry_after``
    PracticePanther's ``Retry-After`` in seconds (only a :class:`RateLimited` carries one).
``may_have_applied``
    The server may have processed the request although we saw a failure (a read timeout, a 500).
    Retrying such a failure is only safe for idempotent requests; a create is not retried.
"""

from __future__ import annotations

from worker.errors import PpwError


class PracticePantherError(PpwError):
    """Base class: a PracticePanther call failed.

    Parameters
    ----------
    message:
        What went wrong, in words an operator understands. Must not contain a secret.
    method, path:
        The request, e.g. ``GET`` and ``/api/v2/matters`` (no query string).
    status:
        The HTTP status, or None when no response arrived.
    """

    def __init__(
        self,
        message: str,
        *,
        method: str = "",
        path: str = "",
        status: int | None = None,
    ) -> None:
        self.message = message
        self.method = method
        self.path = path
        self.status = status
        #: Set when the failure happened before the API request was sent (getting a token).
        self.before_request = False
        super().__init__(message)

    @property
    def transient(self) -> bool:
        """Whether the same request may succeed later; the base case is a permanent failure."""
        return False

    @property
    def may_have_applied(self) -> bool:
        """Whether PracticePanther may have acted on the API request despite the error."""
        return not self.before_request and self._may_have_applied()

    def _may_have_applied(self) -> bool:
        return False

    def __str__(self) -> str:
        where = f"{self.method} {self.path}".strip()
        status = f" -> {self.status}" if self.status is not None else ""
        return f"{where}{status}: {self.message}" if where else self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"


class AuthError(PracticePantherError):
    """PracticePanther refused our credentials, even after refreshing the access token."""


class ReauthorizationRequired(AuthError):
    """The refresh token or client credentials are dead (``invalid_grant``/``invalid_client``).

    Permanent until someone runs ``ppw auth login`` again; retrying only hammers the token endpoint.
    """


class NotFound(PracticePantherError):
    """The record or path does not exist (404)."""


class InvalidRequest(PracticePantherError):
    """PracticePanther rejected the request body or query (400/422), ASP.NET Web API style.

    ``model_state`` maps a field (``value.subject``) to its messages, as PracticePanther sends them.
    """

    def __init__(
        self,
        message: str,
        *,
        model_state: dict[str, list[str]] | None = None,
        method: str = "",
        path: str = "",
        status: int | None = 400,
    ) -> None:
        self.model_state = model_state or {}
        super().__init__(message, method=method, path=path, status=status)

    def __str__(self) -> str:
        details = "; ".join(f"{k}: {' '.join(v)}" for k, v in self.model_state.items())
        return f"{super().__str__()} ({details})" if details else super().__str__()


class RateLimited(PracticePantherError):
    """PracticePanther answered 429; ``retry_after`` is its ``Retry-After`` in seconds, if it sent one."""

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        method: str = "",
        path: str = "",
        status: int | None = 429,
    ) -> None:
        super().__init__(message, method=method, path=path, status=status)
        self._retry_after = retry_after

    @property
    def transient(self) -> bool:
        return True

    @property
    def retry_after(self) -> float | None:
        return self._retry_after


class ServerError(PracticePantherError):
    """PracticePanther failed (5xx). A 503 means it did not process the request; others may have."""

    @property
    def transient(self) -> bool:
        return True

    def _may_have_applied(self) -> bool:
        return self.status != 503


class TransportError(PracticePantherError):
    """No usable response: connection refused, DNS, TLS, timeout, connection dropped.

    ``request_sent`` is False when the failure happened before any byte of the request left
    (connect errors, connect and pool timeouts), so the server cannot have acted on it.
    """

    def __init__(
        self,
        message: str,
        *,
        request_sent: bool,
        method: str = "",
        path: str = "",
    ) -> None:
        super().__init__(message, method=method, path=path, status=None)
        self.request_sent = request_sent

    @property
    def transient(self) -> bool:
        return True

    def _may_have_applied(self) -> bool:
        return self.request_sent


class LoginError(PracticePantherError):
    """``ppw auth login`` could not complete (state mismatch, consent denied, timeout, busy port)."""

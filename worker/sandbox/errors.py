"""Errors the sandbox answers with, shaped like PracticePanther's ASP.NET Web API responses."""

from __future__ import annotations

from typing import Any

INVALID_REQUEST = "The request is invalid."


class ApiError(Exception):
    """An HTTP error answer: raised anywhere in a handler, rendered as JSON by the app.

    Parameters
    ----------
    status:
        The HTTP status code.
    body:
        The JSON body (ASP.NET style: ``{"message": ...}``, validation adds ``modelState``).
    headers:
        Extra response headers (``Retry-After``, ``WWW-Authenticate``).
    """

    def __init__(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        self.status = status
        self.body = body
        self.headers = headers or {}
        super().__init__(f"{status} {body.get('message', body)}")


def invalid(model_state: dict[str, list[str]]) -> ApiError:
    """400 with the ``modelState`` map of field path -> messages, as ASP.NET model binding does."""
    return ApiError(400, {"message": INVALID_REQUEST, "modelState": model_state})


def bad_request(message: str) -> ApiError:
    return ApiError(400, {"message": message})


def not_found(message: str = "No record was found with the given id.") -> ApiError:
    return ApiError(404, {"message": message})

"""Talking to PracticePanther.

``resources``  the catalogue of resources, read from PracticePanther's own swagger
``client``     ``PracticePantherClient``: list, get, create, update, delete, me
``auth``       OAuth: the login flow and access tokens refreshed once at a time across processes
``tokens``     the stored tokens (encrypted at rest when ``PPW_TOKEN_ENCRYPTION_KEY`` is set)
``customfields`` custom field definitions (cached, exported) and values read and written by label
``odata``      ``$filter`` literals and helpers, timestamp parsing and formatting
``errors``     typed errors that name the request but never a token
``retry``, ``ratelimit``, ``records``, ``callback``, ``status``: the parts behind those

The names in ``__all__`` are resolved lazily, so importing one module (``resources``, say) does
not load the HTTP client and token encryption with it. See ``docs/client.md``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from worker.exports import lazy_exports

_EXPORTS = {
    "login": "worker.practicepanther.auth",
    "PracticePantherClient": "worker.practicepanther.client",
    "AuthError": "worker.practicepanther.errors",
    "CustomFieldError": "worker.practicepanther.customfields",
    "DefinitionCache": "worker.practicepanther.customfields",
    "Definitions": "worker.practicepanther.customfields",
    "InvalidRequest": "worker.practicepanther.errors",
    "NotFound": "worker.practicepanther.errors",
    "PracticePantherError": "worker.practicepanther.errors",
    "parse_timestamp": "worker.practicepanther.odata",
    "Definition": "worker.practicepanther.resources",
    "FieldSpec": "worker.practicepanther.resources",
    "ParamSpec": "worker.practicepanther.resources",
    "Resource": "worker.practicepanther.resources",
    "definition": "worker.practicepanther.resources",
    "get": "worker.practicepanther.resources",
    "retry_after": "worker.practicepanther.retry",
    "Health": "worker.practicepanther.status",
    "connection_status": "worker.practicepanther.status",
    "TokenSet": "worker.practicepanther.tokens",
    "TokenStore": "worker.practicepanther.tokens",
    "TokenStoreError": "worker.practicepanther.tokens",
    "generate_key": "worker.practicepanther.tokens",
    "user_label": "worker.practicepanther.tokens",
}

__all__ = [
    "AuthError",
    "CustomFieldError",
    "Definition",
    "DefinitionCache",
    "Definitions",
    "FieldSpec",
    "Health",
    "InvalidRequest",
    "NotFound",
    "ParamSpec",
    "PracticePantherClient",
    "PracticePantherError",
    "Resource",
    "TokenSet",
    "TokenStore",
    "TokenStoreError",
    "connection_status",
    "definition",
    "generate_key",
    "get",
    "login",
    "parse_timestamp",
    "retry_after",
    "user_label",
]

if TYPE_CHECKING:
    from worker.practicepanther.auth import login
    from worker.practicepanther.client import PracticePantherClient
    from worker.practicepanther.customfields import CustomFieldError, DefinitionCache, Definitions
    from worker.practicepanther.errors import AuthError, NotFound, PracticePantherError
    from worker.practicepanther.odata import parse_timestamp
    from worker.practicepanther.resources import Definition, FieldSpec, ParamSpec, Resource, definition, get
    from worker.practicepanther.retry import retry_after
    from worker.practicepanther.status import Health, connection_status
    from worker.practicepanther.tokens import TokenSet, TokenStore, TokenStoreError, generate_key, user_label


__getattr__ = lazy_exports(__name__, _EXPORTS)

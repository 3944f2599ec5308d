"""Talking to PracticePanther.

``resources``  the catalogue of resources, read from PracticePanther's own swagger
``client``     ``PracticePantherClient``: list, get, create, update, delete, me
``auth``       OAuth: the login flow and access tokens refreshed once at a time across processes
``tokens``     the stored tokens (encrypted at rest when ``PPW_TOKEN_ENCRYPTION_KEY`` is set)
``odata``      ``$filter`` literals and helpers, timestamp parsing and formatting
``errors``     typed errors that name the request but never a token
``retry``, ``ratelimit``, ``records``, ``callback``, ``status``: the parts behind those

See ``docs/client.md``.
"""

"""The web console: what the worker did, and the few things an operator may do about it.

Server-rendered pages (Starlette + Jinja2, htmx for small refreshes; every page works without
JavaScript) over the run history, dead letters, held batches, waiting runs and poll status that
the CLI shows too. It shows privileged client data, so it is off unless ``PPW_CONSOLE_ENABLED``,
binds to loopback by default, signs in users configured with argon2 hashes, and writes an audit
entry for every action. See ``docs/console.md``.

- :mod:`~worker.console.auth`: users, roles, password hashes, login rate limiting.
- :mod:`~worker.console.audit`: the audit trail in the state store.
- :mod:`~worker.console.ops`: what the pages read and what their buttons do.
- :mod:`~worker.console.web`: the Starlette app (sessions, CSRF, security headers, pages).
- :mod:`~worker.console.server`: serving it, alone (``ppw console``) or inside ``ppw run``.
"""

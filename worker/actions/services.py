"""The long-lived clients steps share within one worker process.

Built once per process (``ppw worker``, ``ppw run``, a test) and closed at shutdown: one pooled
:class:`~worker.actions.outbound.Outbound` client for Slack and webhooks, one PracticePanther
client per connection, and the scrubber that masks this deployment's secrets in everything a step
reports.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from worker.actions.outbound import Outbound
from worker.observability.scrub import Scrubber, get_scrubber, text_through, value_through
from worker.practicepanther.client import PracticePantherClient
from worker.settings import Settings
from worker.state.base import StateStore

PPClientFactory = Callable[[str], "PracticePantherClient"]


class Services:
    """Shared clients for the steps of one process.

    Parameters
    ----------
    settings:
        The process settings (secrets, allowed hosts, Slack URLs ...).
    store:
        The state store (own-writes memory for the loop guard, tokens).
    pp_factory:
        Builds the PracticePanther client for a connection id; the default builds
        ``PracticePantherClient(settings, store, connection=...)``. Tests pass one bound to the
        sandbox.
    http:
        The client for Slack and webhooks; redirects are never followed automatically (the
        http step follows same-host ones itself).
    """

    def __init__(
        self,
        settings: Settings,
        store: StateStore,
        *,
        pp_factory: PPClientFactory | None = None,
        http: Outbound | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self._pp_factory = pp_factory or self._default_pp
        self._pp: dict[str, PracticePantherClient] = {}
        self._lock = threading.Lock()
        self._owns_http = http is None
        self.http = http or Outbound(settings.http_timeout)
        self.scrubber = Scrubber(settings.secret_values())

    def _default_pp(self, connection: str) -> PracticePantherClient:
        return PracticePantherClient(self.settings, self.store, connection=connection)

    def pp(self, connection: str) -> PracticePantherClient:
        """The PracticePanther client of ``connection`` (one per process, thread-safe)."""
        with self._lock:
            client = self._pp.get(connection)
            if client is None:
                client = self._pp[connection] = self._pp_factory(connection)
            return client

    def mask(self, value: Any) -> Any:
        """``value`` with this deployment's secrets and secret-shaped text masked.

        Both this deployment's scrubber and the process-wide one (which also knows the tokens
        learned at run time) apply, in that order, in a single walk over ``value``.
        """
        return value_through((self.scrubber, get_scrubber()), value)

    def mask_text(self, value: str) -> str:
        """``value`` masked as :meth:`mask` masks strings."""
        return text_through((self.scrubber, get_scrubber()), value)

    def close(self) -> None:
        with self._lock:
            clients = list(self._pp.values())
            self._pp.clear()
        for client in clients:
            close = getattr(client, "close", None)
            if callable(close):
                close()
        if self._owns_http:
            self.http.close()

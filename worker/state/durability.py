"""Whether the state store keeps what ppw writes: checked once when a process starts.

The state store is ppw's system of record. Cursors, snapshots, the step ledger, run history and the
OAuth tokens live nowhere else, so a store that drops them loses changes, repeats writes to
PracticePanther or disconnects the account, and says nothing. Two Redis settings decide that:

- ``maxmemory-policy``: anything but ``noeviction`` lets Redis delete keys under memory pressure
  (``volatile-*`` the ones with a time-to-live: ledger entries and run history among them). ppw
  refuses to start on such a Redis (:class:`UnsafeStateStore`); with ``noeviction`` Redis refuses
  writes instead, which ppw reports and retries.
- persistence: with neither AOF nor RDB snapshots, a Redis restart empties it. That is a warning,
  not a refusal: a test or a throw-away deployment may want it.

SQLite commits with ``synchronous=FULL`` and has neither concern.
"""

from __future__ import annotations

import logging

from worker.state.base import Durability, StateError, StateStore

log = logging.getLogger(__name__)


class UnsafeStateStore(StateError):
    """The state store would lose ppw's records silently (see the module docstring).

    Not transient, unlike other state errors: the store's configuration must change first.
    """

    @property
    def transient(self) -> bool:
        return False


def check_durability(store: StateStore) -> Durability:
    """Read the store's configuration, log each warning, and raise on an error.

    Raises :class:`UnsafeStateStore` with every error in one message, each saying what to change.
    A store that cannot be asked now (Redis down at start) is not a reason to refuse: the process
    starts, reports the store as not ready, and the check is logged as skipped.
    """
    try:
        found = store.durability()
    except StateError as exc:
        log.warning("state store: could not check its configuration (%s); not checked this run", exc)
        return Durability()
    for warning in found.warnings:
        log.warning("state store: %s", warning)
    if found.errors:
        raise UnsafeStateStore("; ".join(found.errors))
    return found

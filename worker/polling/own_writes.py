"""The loop guard's memory: which record revisions this worker wrote itself.

After every write to PracticePanther the actions call :func:`remember_own_write` with the record's
new ``updated_at`` (or, for resources without one, its content hash; :func:`remember_own_record`
works either out from the record PracticePanther answered with). When the poller later detects
that revision, :func:`is_own_write` says so and the event gets ``origin: ppw``; rules skip such
events unless they opt in, so a rule that updates a matter does not trigger itself forever.

Entries expire (default one day): a revision not seen by then was overwritten by someone else.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from worker.events import Event
from worker.polling.snapshots import Snapshotter, content_hash, parse_revision, revision_text
from worker.practicepanther import resources
from worker.state.base import StateStore, key

#: How long a remembered write waits to be seen by a poll.
OWN_WRITE_TTL = 24 * 3600.0
#: A write remembered without any revision claims the record's next change for this long only.
UNKNOWN_REVISION_TTL = 600.0
_ANY = "*"


def _normal_revision(revision: str) -> str:
    """Timestamps in the poller's fixed-width form (so ``...00Z`` and ``...00.000`` match)."""
    parsed = parse_revision(revision)
    return revision_text(parsed) if parsed is not None else revision


def _key(connection: str, resource: str, record_id: str, revision: str) -> str:
    name = resources.resolve_name(resource) or resource
    return key(connection, "own", name, record_id, revision)


def remember_own_write(
    store: StateStore,
    connection: str,
    resource: str,
    record_id: str,
    revision_or_content_hash: str,
    *,
    ttl: float = OWN_WRITE_TTL,
) -> None:
    """Remember that this worker wrote ``record_id`` at this revision (``updated_at``) or content hash.

    An empty revision (PracticePanther answered without ``updated_at``) marks the record's *next*
    detected change as ours for :data:`UNKNOWN_REVISION_TTL` seconds: a best effort, since a
    person's edit in that window would be taken for ours. Prefer :func:`remember_own_record`.
    """
    revision = _normal_revision(revision_or_content_hash.strip())
    if revision:
        store.set(_key(connection, resource, record_id, revision), "1", ttl=ttl)
    else:
        store.set(_key(connection, resource, record_id, _ANY), "1", ttl=min(ttl, UNKNOWN_REVISION_TTL))


def remember_own_record(
    store: StateStore,
    connection: str,
    resource: str,
    record: Mapping[str, Any],
    *,
    ttl: float = OWN_WRITE_TTL,
) -> None:
    """Remember a record PracticePanther returned after our write, by revision *and* content hash."""
    record_id = record.get("id")
    if not record_id:
        raise ValueError("the record has no id")
    snapper = Snapshotter(resources.get(resource))
    content = content_hash(snapper.normals(record))
    with store.batch() as batch:
        for revision in filter(None, (snapper.revision(record), content)):
            batch.set(_key(connection, resource, str(record_id), revision), "1", ttl=ttl)


def is_own_write(
    store: StateStore,
    connection: str,
    resource: str,
    record_id: str,
    revision_or_content_hash: str,
    content_hash: str | None = None,
) -> bool:
    """Whether this worker wrote ``record_id`` at this revision (or with this content)."""
    candidates = [_normal_revision(revision_or_content_hash), _ANY]
    if content_hash:
        candidates.append(content_hash)
    keys = [_key(connection, resource, record_id, c) for c in candidates if c]
    return any(value is not None for value in store.get_many(keys))


def mark_origins(
    store: StateStore, events: Sequence[Event], content_hashes: Mapping[str, str]
) -> list[Event]:
    """``events`` with ``origin="ppw"`` where the change was our own write (one store round trip).

    ``content_hashes`` maps record ids to their new content hash, checked besides the revision.
    """
    if not events:
        return []
    probes: list[tuple[int, str]] = []
    for index, event in enumerate(events):
        revisions = {event.revision, _ANY, content_hashes.get(event.record_id, "")}
        probes.extend(
            (index, _key(event.connection, event.resource, event.record_id, r)) for r in revisions if r
        )
    found = store.get_many([k for _, k in probes])
    own = {index for (index, _), value in zip(probes, found, strict=True) if value is not None}
    return [e.model_copy(update={"origin": "ppw"}) if i in own else e for i, e in enumerate(events)]

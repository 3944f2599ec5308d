"""How much of the state store each kind of record uses (``ppw status``).

A key's kind is its first part after ``ppw:<connection>:`` (``run`` for ``ppw:c:run:<id>``,
``runs`` for the index ``ppw:c:runs``). Key counts come from one :meth:`~StateStore.scan`; bytes
from :meth:`~StateStore.size_bytes` per kind, which takes a prefix: the prefix ``ppw:c:run`` also
holds the kinds ``runs``, ``run-lease`` ..., so a kind's own bytes are its prefix's less those of
the longer kinds it holds.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from worker.state.base import StateStore, key


@dataclass(frozen=True)
class KindUsage:
    kind: str
    keys: int
    bytes: int | None  # None when the backend cannot tell


def usage_by_kind(store: StateStore, connection: str) -> list[KindUsage]:
    """Keys and approximate bytes per kind of ``connection``'s records, the largest first."""
    base = key(connection) + ":"
    counts = Counter(k[len(base) :].split(":", 1)[0] for k in store.scan(base))
    own: dict[str, int] = {}
    try:
        for kind in sorted(counts, key=len, reverse=True):
            inner = sum(n for other, n in own.items() if other != kind and other.startswith(kind))
            own[kind] = max(store.size_bytes(base + kind) - inner, 0)
    except NotImplementedError:
        return sorted((KindUsage(k, n, None) for k, n in counts.items()), key=lambda u: (-u.keys, u.kind))
    return sorted(
        (KindUsage(k, n, own[k]) for k, n in counts.items()), key=lambda u: (-(u.bytes or 0), u.kind)
    )

"""Compression dictionaries: what makes a whole record fit in a snapshot of ~150 bytes.

A matter is about 2 KB of JSON, and nearly all of it repeats from matter to matter: the field
names, the custom field definitions, the firm's users, the statuses and stages. zstd compresses
one record on its own to ~800 bytes; with a dictionary trained on the account's own records of
the same resource it compresses to ~120 (docs/benchmarks.md has the comparison). So each
(connection, resource) gets one dictionary, trained by ``zstandard.train_dictionary`` on the
records the first poll reads (:meth:`Dictionaries.train`), and every snapshot names the
dictionary it was compressed with (zstd's own 32-bit dictionary id, random per training, so
an id is never reused for another dictionary, not even after a re-priming).

When to train, and why not again:

* at priming (or any poll reading at least :data:`TRAIN_SAMPLES` records while the resource has
  no dictionary: an account upgraded from the snapshot formats 1 and 2), on the first
  :data:`TRAIN_SAMPLES` records. More samples buy little (docs/benchmarks.md: 2,000 samples are
  within a few bytes of 10,000);
* never again on its own: records of one account keep their shape for years, and a retrain would
  have to keep every older dictionary that a stored snapshot still names (stored snapshots are
  only rewritten when their record changes). Re-priming (:func:`~worker.polling.cursors.reset`
  deletes the resource's cursor, snapshots and dictionaries) trains a fresh one when a firm's
  records really moved (a new set of custom fields).

A resource with fewer records than :data:`MIN_SAMPLES` at priming gets no dictionary: its
snapshots are plain zstd (or the raw JSON when that is shorter), which on a few hundred records
costs nothing worth saving.

Storage: one hash per (connection, resource), ``ppw:<connection>:dict:<resource>``, field
``<dictionary id>`` → the dictionary's bytes, and field ``current`` → the id new snapshots use.
Dictionaries are immutable, so a process caches them per store object, connection, resource and id.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Iterable
from typing import Final

import zstandard

from worker.errors import PpwError
from worker.state.base import StateStore, key

log = logging.getLogger(__name__)

#: Records a dictionary is trained on (and the most a priming buffers before it trains).
TRAIN_SAMPLES: Final = 2000
#: Fewer records than this at priming: no dictionary (zstd cannot train on a handful).
MIN_SAMPLES: Final = 200
#: Dictionary size in bytes (64 KiB: within 5% of 110 KB at level 9, see docs/benchmarks.md).
DICT_SIZE: Final = 64 * 1024
#: zstd level: 9 is 15 bytes a record smaller than 3 for ~30 µs more per record.
LEVEL: Final = 9
_CURRENT = "current"

_PARAMS = zstandard.ZstdCompressionParameters.from_level(
    LEVEL,
    format=zstandard.FORMAT_ZSTD1_MAGICLESS,  # every snapshot says it is zstd already
    write_checksum=False,
    write_dict_id=False,  # the snapshot names its dictionary itself
    write_content_size=True,
)


class DictionaryMissing(PpwError, LookupError):
    """A snapshot names a compression dictionary the state store does not hold.

    Not transient: the dictionary was deleted (by hand, or a partial restore of the state). The
    poller then reports the record's fields as changed with an unknown old value, loudly, and its
    next snapshot uses the current dictionary.
    """


def dictionary_key(connection: str, resource: str) -> str:
    return key(connection, "dict", resource)


#: Per store object (so another process's view, or a test's fresh store, reads the store again).
_cache: weakref.WeakKeyDictionary[StateStore, dict[tuple[str, str, int], zstandard.ZstdCompressionDict]]
_cache = weakref.WeakKeyDictionary()
_cache_lock = threading.Lock()


class Dictionaries:
    """The compression dictionaries of one resource of one connection.

    Parameters
    ----------
    store:
        Where dictionaries are kept; None keeps them in memory only (the pure detector's tests).
    connection, resource:
        Whose dictionaries.
    persist:
        False for a dry run: a dictionary trained now is used but not stored.
    """

    def __init__(
        self,
        store: StateStore | None = None,
        connection: str = "default",
        resource: str = "",
        *,
        persist: bool = True,
    ) -> None:
        self.store = store
        self.connection = connection
        self.resource = resource
        self.persist = persist and store is not None
        self._known: dict[int, zstandard.ZstdCompressionDict] = {}
        self.current: int | None = None
        if store is not None:
            found = store.hmget_bytes(dictionary_key(connection, resource), [_CURRENT])[0]
            self.current = int(found) if found else None

    # the dictionaries ----------------------------------------------------------------------
    def get(self, dict_id: int) -> zstandard.ZstdCompressionDict:
        """The dictionary ``dict_id``; raises :class:`DictionaryMissing` when it is not kept."""
        found = self._known.get(dict_id)
        if found is not None:
            return found
        cache_key = (self.connection, self.resource, dict_id)
        if self.store is not None:
            with _cache_lock:
                found = _cache.get(self.store, {}).get(cache_key)
            if found is None:
                raw = self.store.hmget_bytes(dictionary_key(self.connection, self.resource), [str(dict_id)])
                if raw[0]:
                    found = zstandard.ZstdCompressionDict(raw[0])
                    with _cache_lock:
                        _cache.setdefault(self.store, {})[cache_key] = found
        if found is None:
            raise DictionaryMissing(
                f"{self.resource}: snapshot compression dictionary {dict_id} is not in the state store "
                f"(hash {dictionary_key(self.connection, self.resource)!r})"
            )
        self._known[dict_id] = found
        return found

    def train(self, samples: Iterable[bytes]) -> int | None:
        """Train a dictionary on ``samples`` (encoded records), make it current, store it.

        Returns its id, or None when there are too few samples or zstd could not train on them.
        """
        chosen: list[bytes | bytearray | memoryview] = []
        chosen.extend(samples)
        del chosen[TRAIN_SAMPLES:]
        if len(chosen) < MIN_SAMPLES:
            return None
        try:
            trained = zstandard.train_dictionary(DICT_SIZE, chosen, level=LEVEL)
        except zstandard.ZstdError as exc:
            log.info("%s: no compression dictionary (%s); snapshots use plain zstd", self.resource, exc)
            return None
        dict_id = trained.dict_id()
        if self.persist and self.store is not None:
            with self.store.batch() as batch:  # before any snapshot names it
                batch.hset_bytes(
                    dictionary_key(self.connection, self.resource),
                    {str(dict_id): trained.as_bytes(), _CURRENT: str(dict_id).encode()},
                )
        self._known[dict_id] = trained
        self.current = dict_id
        log.info("%s: trained snapshot dictionary %s on %d records", self.resource, dict_id, len(chosen))
        return dict_id


class Codec:
    """zstd compression of encoded records with a resource's dictionaries, for one thread.

    zstd contexts are not thread-safe, so each poll (one thread) makes its own; the dictionaries
    under them are shared.
    """

    def __init__(self, dictionaries: Dictionaries) -> None:
        self.dictionaries = dictionaries
        self._compressors: dict[int | None, zstandard.ZstdCompressor] = {}
        self._decompressors: dict[int | None, zstandard.ZstdDecompressor] = {}

    def compress(self, raw: bytes, dict_id: int | None) -> bytes:
        compressor = self._compressors.get(dict_id)
        if compressor is None:
            data = self.dictionaries.get(dict_id) if dict_id is not None else None
            compressor = zstandard.ZstdCompressor(dict_data=data, compression_params=_PARAMS)
            self._compressors[dict_id] = compressor
        return compressor.compress(raw)

    def decompress(self, payload: bytes, dict_id: int | None) -> bytes:
        """Raises :class:`DictionaryMissing`, or ``zstandard.ZstdError`` for a corrupt payload."""
        decompressor = self._decompressors.get(dict_id)
        if decompressor is None:
            data = self.dictionaries.get(dict_id) if dict_id is not None else None
            decompressor = zstandard.ZstdDecompressor(dict_data=data, format=zstandard.FORMAT_ZSTD1_MAGICLESS)
            self._decompressors[dict_id] = decompressor
        return decompressor.decompress(payload)

"""The step ledger: what each step of one rule on one event did, so a retry never does it twice.

One entry per (event id, rule id, step id), written when a step starts and again when it ends,
with the rule version that ran it; a :class:`RunKey` names the (connection, event, rule) part every
call shares. A retry (after an error, a crash or a replay) reads the ledger and skips every step
whose entry says ``done`` or ``skipped``, reusing its recorded output for the templates of later
steps. An entry left at ``started`` (the worker died mid-step) or at ``failed``
after an error that may have reached the far side tells the executor to look for the effect of
that attempt before acting again (see :mod:`worker.actions.markers`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Literal, NamedTuple, Protocol

from pydantic import BaseModel, Field

from worker.state.base import StateStore, WriteBatch, key

StepStatus = Literal["started", "waiting", "done", "skipped", "failed", "errored"]
#: ``errored``: failed for good, but the step has ``continue_on_error`` so the run went on.
FINISHED: frozenset[str] = frozenset({"done", "skipped", "errored"})


class _RunLike(Protocol):
    @property
    def connection(self) -> str: ...

    @property
    def event_id(self) -> str: ...

    @property
    def rule_id(self) -> str: ...


class RunKey(NamedTuple):
    """Whose steps a ledger entry is about: one rule on one event of one connection."""

    connection: str
    event_id: str
    rule_id: str

    @classmethod
    def of(cls, run: _RunLike) -> RunKey:
        """The key of a run (anything with ``connection``, ``event_id`` and ``rule_id``)."""
        return cls(run.connection, run.event_id, run.rule_id)


class LedgerEntry(BaseModel):
    """One step's latest attempt."""

    step_id: str
    status: StepStatus
    rule_version: str
    attempts: int = 1
    started_at: float = Field(default_factory=time.time)
    finished_at: float | None = None
    output: dict[str, Any] | None = None
    error: str | None = None
    may_have_applied: bool = False

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    @property
    def uncertain(self) -> bool:
        """An earlier attempt may have had its effect although no result was recorded."""
        return self.status == "started" or (self.status == "failed" and self.may_have_applied)


class Ledger:
    """Entries kept in the state store for ``ttl`` seconds (the run retention)."""

    def __init__(self, store: StateStore, ttl: float | None) -> None:
        self.store = store
        self.ttl = ttl

    @staticmethod
    def _key(run: RunKey, step_id: str) -> str:
        return key(run.connection, "ledger", run.event_id, run.rule_id, step_id)

    def keys(self, run: RunKey, step_ids: Sequence[str]) -> list[str]:
        return [self._key(run, s) for s in step_ids]

    def entries(self, run: RunKey, step_ids: Sequence[str]) -> dict[str, LedgerEntry]:
        """The recorded entries of ``step_ids`` (steps never started are absent)."""
        keys = self.keys(run, step_ids)
        return self.parse(step_ids, self.store.get_many(keys) if keys else [])

    @staticmethod
    def parse(step_ids: Sequence[str], raws: Sequence[str | None]) -> dict[str, LedgerEntry]:
        """Entries read by the caller (with other keys, in one round trip) for ``step_ids``."""
        return {
            step_id: LedgerEntry.model_validate_json(raw)
            for step_id, raw in zip(step_ids, raws, strict=True)
            if raw is not None
        }

    def entry(self, run: RunKey, step_id: str) -> LedgerEntry | None:
        raw = self.store.get(self._key(run, step_id))
        return LedgerEntry.model_validate_json(raw) if raw is not None else None

    def _write(
        self, run: RunKey, entry: LedgerEntry, batch: WriteBatch | None = None, *, ttl: float | None = None
    ) -> LedgerEntry:
        """Write ``entry`` now, or into ``batch`` (the runner writes it with the run's history);
        ``ttl`` longer than the retention for the steps of a run that waits past it."""
        k, value = self._key(run, entry.step_id), entry.model_dump_json()
        ttl = max(ttl, self.ttl) if ttl is not None and self.ttl is not None else self.ttl
        if batch is not None:
            batch.set(k, value, ttl=ttl)
        else:
            self.store.set(k, value, ttl=ttl)
        return entry

    def wait(
        self, run: RunKey, entry: LedgerEntry, due: float, *, batch: WriteBatch, ttl: float
    ) -> LedgerEntry:
        """The step waits until ``due``: neither finished nor uncertain; kept ``ttl`` seconds."""
        waiting = entry.model_copy(
            update={"status": "waiting", "output": {"due": due}, "may_have_applied": False}
        )
        return self._write(run, waiting, batch, ttl=ttl)

    def keep_forever(self, run: RunKey, step_ids: Sequence[str]) -> None:
        """Keep the steps' entries without expiry: a dead-lettered run's replay, however late,
        must know which steps finished (the entries are written again, with the retention, when
        the replayed run goes on)."""
        entries = self.entries(run, step_ids)
        if entries:
            with self.store.batch() as batch:
                for entry in entries.values():
                    batch.set(self._key(run, entry.step_id), entry.model_dump_json())

    def keep(self, run: RunKey, entries: Sequence[LedgerEntry], *, batch: WriteBatch, ttl: float) -> None:
        """Write ``entries`` again to last ``ttl`` seconds: the finished steps of a run that waits."""
        for entry in entries:
            self._write(run, entry, batch, ttl=ttl)

    def start(
        self,
        run: RunKey,
        step_id: str,
        rule_version: str,
        previous: LedgerEntry | None,
        *,
        batch: WriteBatch | None = None,
    ) -> LedgerEntry:
        """Record that a step is about to act; written *before* the side effect."""
        entry = LedgerEntry(
            step_id=step_id,
            status="started",
            rule_version=rule_version,
            attempts=(previous.attempts + 1) if previous else 1,
            # a crash or an uncertain failure before stays uncertain until this attempt settles it
            may_have_applied=bool(previous and previous.uncertain),
        )
        return self._write(run, entry, batch)

    def finish(
        self,
        run: RunKey,
        entry: LedgerEntry,
        output: dict[str, Any],
        *,
        batch: WriteBatch | None = None,
    ) -> LedgerEntry:
        done = entry.model_copy(
            update={
                "status": "done",
                "finished_at": time.time(),
                "output": output,
                "error": None,
                "may_have_applied": False,
            }
        )
        return self._write(run, done, batch)

    def skip(
        self,
        run: RunKey,
        step_id: str,
        rule_version: str,
        why: str,
        *,
        batch: WriteBatch | None = None,
    ) -> LedgerEntry:
        """Record a step whose ``if:`` was false, so a retry does not re-evaluate it differently."""
        entry = LedgerEntry(
            step_id=step_id,
            status="skipped",
            rule_version=rule_version,
            finished_at=time.time(),
            error=why,
        )
        return self._write(run, entry, batch)

    def fail(
        self,
        run: RunKey,
        entry: LedgerEntry,
        error: str,
        *,
        may_have_applied: bool,
    ) -> LedgerEntry:
        failed = entry.model_copy(
            update={
                "status": "failed",
                "finished_at": time.time(),
                "error": error,
                "may_have_applied": may_have_applied or entry.may_have_applied,
            }
        )
        return self._write(run, failed)

    def give_up(self, run: RunKey, entry: LedgerEntry, error: str) -> LedgerEntry:
        """Settle a failed ``continue_on_error`` step so retries and replays do not try it again."""
        settled = entry.model_copy(
            update={
                "status": "errored",
                "finished_at": time.time(),
                "error": error,
                "output": {"ok": False, "error": error},
            }
        )
        return self._write(run, settled)

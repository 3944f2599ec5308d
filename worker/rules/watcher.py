"""Hot reload: the rules in force, replaced rule by rule as their files change on disk.

:class:`RuleRegistry` holds the current :class:`RuleSet` and its :class:`Engine`. When a file
changes it is loaded and each of its rules checked on its own: a good rule replaces its previous
version; a broken one is reported (ERROR log with file:line:column and the rule id,
:meth:`RuleRegistry.status`, metrics) while **its** last good version keeps running, and its
neighbours' edits take effect. A rule no longer in its file is retired; a new rule that is broken is
just an error. A file that cannot be read or parsed at all keeps the last good version of every rule
it had. A rule taking an id another file's rule already has is rejected (the rule in force stays).
A deleted file's rules are retired. Every rule carries its own version (content hash), so run
history can say exactly which definition ran.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from worker.rules.checker import CheckConfig
from worker.rules.context import Clock, system_clock
from worker.rules.diagnostics import Diagnostic
from worker.rules.engine import Engine
from worker.rules.loader import RULE_SUFFIXES, FileRules, discover, display_name, id_clash, load_file
from worker.rules.ruleset import BrokenRule, LoadedRule, RuleSet
from worker.rules.templating import environment
from worker.settings import Settings, get_settings

log = logging.getLogger(__name__)

Listener = Callable[[RuleSet], None]


@dataclass
class _FileState:
    """What the registry holds for one rule file after its latest load."""

    rules: list[LoadedRule] = field(default_factory=list)  # in force: fresh, or kept last good versions
    diagnostics: list[Diagnostic] = field(default_factory=list)  # everything the latest load said
    broken: list[BrokenRule] = field(default_factory=list)


class RuleRegistry:
    """The rules in force for this process, kept up to date by :meth:`watch`.

    Parameters
    ----------
    rules_dir:
        The directory of rule files (default ``settings.rules_dir``).
    settings:
        Time zone, env allow-list, secret names for warnings.
    clock:
        Passed to the engine (``now()`` in templates).
    """

    def __init__(
        self,
        rules_dir: Path | None = None,
        *,
        settings: Settings | None = None,
        clock: Clock = system_clock,
    ) -> None:
        self.settings = settings or get_settings()
        self.rules_dir = Path(rules_dir or self.settings.rules_dir)
        self._config = CheckConfig.from_settings(self.settings)
        self._env = environment(self._config.timezone)
        self._clock = clock
        self._lock = threading.RLock()
        self._files: dict[Path, _FileState] = {}
        self._missing: Diagnostic | None = None  # the rules directory itself is not there
        self._listeners: list[Listener] = []
        self._ruleset = RuleSet()
        self._engine = Engine(self._ruleset, settings=self.settings, clock=clock)
        self._reloaded_at: dt.datetime | None = None
        self._reloads = 0
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    # -- reading ----------------------------------------------------------------------------------
    @property
    def ruleset(self) -> RuleSet:
        return self._ruleset

    @property
    def engine(self) -> Engine:
        """The engine for the current rules (replaced, never mutated, on reload)."""
        return self._engine

    def subscribe(self, listener: Listener) -> None:
        """Call ``listener(ruleset)`` after every reload that changed the rules in force."""
        with self._lock:
            self._listeners.append(listener)

    def status(self) -> dict[str, Any]:
        """For ``/readyz``, metrics and start-up checks: how many rules run, which are broken and
        why, and which files have errors.

        ``files`` counts the rule files read (also those with no rule in force), ``broken`` lists
        each rule that did not load (one entry per file that could not be parsed at all).
        """
        with self._lock:
            ruleset = self._ruleset
            errors = [d.to_dict() for d in ruleset.errors]
            return {
                "loaded": len(ruleset),
                "files": len(ruleset.files),
                "failed_files": sorted({e["file"] for e in errors}),
                "errors": errors,
                "broken": [b.to_dict() for b in ruleset.broken],
                "warnings": len(ruleset.diagnostics) - len(errors),
                "version": ruleset.version,
                "reloads": self._reloads,
                "reloaded_at": self._reloaded_at.isoformat() if self._reloaded_at else None,
                "rules": {r.id: r.version for r in ruleset},
            }

    # -- loading ----------------------------------------------------------------------------------
    def load(self, *, repeat_known: bool = True) -> RuleSet:
        """(Re)load every file of the rules directory (gone: the rules in force stay, reported).

        Every rule error is logged, unless ``repeat_known`` is False: then only errors that differ
        from the file's previous load are (the watcher's rescan right after start).
        """
        with self._lock:
            if not self.rules_dir.is_dir():
                self._missing = Diagnostic(
                    str(self.rules_dir),
                    1,
                    1,
                    "rules directory not found",
                    hint="set PPW_RULES_DIR to the directory of rule files",
                    code="io",
                )
                self._publish()
                return self._ruleset
            self._missing = None
            paths = {p.resolve() for p in discover([self.rules_dir])} | set(self._files)
            self._reload(sorted(paths), repeat_known=repeat_known)
            return self._ruleset

    def reload_paths(self, paths: Iterable[Path]) -> RuleSet:
        """Reload the given files (changed, added or deleted) and publish the result."""
        with self._lock:
            self._reload(sorted({Path(p).resolve() for p in paths}))
            return self._ruleset

    def _reload(self, paths: list[Path], *, repeat_known: bool = True) -> None:
        for path in paths:
            key = self._key(path)
            if not path.exists():
                gone = self._files.pop(key, None)
                if gone is not None and gone.rules:
                    log.info("rule file %s removed: its rules are retired", display_name(path))
                continue
            if path.suffix not in RULE_SUFFIXES or path.is_dir():
                continue
            loaded = load_file(path, display=display_name(path), env=self._env, config=self._config)
            previous = self._files.get(key)
            state = self._merge(key, loaded, previous)
            self._files[key] = state
            if repeat_known or previous is None or previous.diagnostics != state.diagnostics:
                _report(state)
        self._publish()

    def _merge(self, key: Path, loaded: FileRules, previous: _FileState | None) -> _FileState:
        """The file's new state: its good rules, and for each broken rule its last good version (if
        it had one in this file). A rule no longer in the file is not kept."""
        last_good = {rule.id: rule for rule in previous.rules} if previous else {}
        if not loaded.readable:  # nothing is known about its rules: all keep their last good version
            broken = [replace(b, kept=tuple(last_good)) for b in loaded.broken]
            return _FileState(list(last_good.values()), list(loaded.diagnostics), broken)
        taken = {r.id: r for other, held in self._files.items() if other != key for r in held.rules}
        fresh = {rule.id for rule in loaded.rules}
        state = _FileState(diagnostics=list(loaded.diagnostics))
        for entry in loaded.entries:
            if isinstance(entry, LoadedRule):
                clash = id_clash(entry, taken)
                if clash is None:
                    state.rules.append(entry)
                    continue
                state.diagnostics.append(clash)
                entry = BrokenRule(entry.id, (clash,))
            state.broken.append(self._keep(entry, last_good, fresh, taken, state))
        return state

    @staticmethod
    def _keep(
        broken: BrokenRule,
        last_good: Mapping[str, LoadedRule],
        fresh: set[str],
        taken: Mapping[str, LoadedRule],
        state: _FileState,
    ) -> BrokenRule:
        """Keep the last good version of a broken rule in force, in its place in the file, unless
        the file now also has a good rule by that id (or another file took the id)."""
        old = last_good.get(broken.rule) if broken.rule else None
        if old is None or old.id in fresh or old.id in taken or old in state.rules:
            return broken
        state.rules.append(old)
        return replace(broken, kept=(old.id,))

    def _key(self, path: Path) -> Path:
        return path.resolve()

    def _publish(self) -> None:
        keys = sorted(self._files)
        rules = tuple(rule for key in keys for rule in self._files[key].rules)
        found = [d for key in keys for d in self._files[key].diagnostics]
        if self._missing is not None:
            found.append(self._missing)
        diagnostics = tuple(sorted(found, key=lambda d: (d.file, d.line, d.column)))
        broken = tuple(b for key in keys for b in self._files[key].broken)
        ruleset = RuleSet(rules, diagnostics, tuple(display_name(k) for k in keys), broken)
        changed = ruleset.version != self._ruleset.version
        self._ruleset = ruleset
        if changed or self._reloads == 0:
            self._engine = Engine(ruleset, settings=self.settings, clock=self._clock, previous=self._engine)
        self._reloads += 1
        self._reloaded_at = dt.datetime.now(dt.UTC)
        _update_metrics(ruleset)
        if changed:
            log.info("rules reloaded: %d rules, version %s", len(ruleset), ruleset.version)
            for listener in list(self._listeners):
                try:
                    listener(ruleset)
                except Exception:
                    log.exception("rule reload listener failed")

    # -- watching ---------------------------------------------------------------------------------
    def watch(
        self,
        stop: threading.Event | None = None,
        *,
        debounce_ms: int = 300,
        ready: threading.Event | None = None,
    ) -> None:
        """Block, reloading files as they change, until ``stop`` is set.

        Once the file watcher is active the directory is scanned again (and ``ready`` set), so a
        change made while the watcher was starting is not missed.
        """
        from watchfiles import watch as watch_paths

        stop = stop or self._stop
        self.rules_dir.mkdir(parents=True, exist_ok=True)
        started = False
        for changes in watch_paths(
            self.rules_dir,
            watch_filter=lambda _change, name: name.endswith(RULE_SUFFIXES),
            debounce=debounce_ms,
            step=50,
            stop_event=stop,
            rust_timeout=200,
            yield_on_timeout=True,
            raise_interrupt=False,
        ):
            try:
                if not started:
                    started = True
                    self.load(repeat_known=False)  # start() just loaded (and logged) them
                    if ready is not None:
                        ready.set()
                if changes:
                    self.reload_paths(Path(name) for _change, name in changes)
            except Exception:  # a reload must never kill the watcher
                log.exception("reloading rules failed")

    def start(self, *, debounce_ms: int = 300, timeout: float = 10.0) -> threading.Thread:
        """Load, then watch in a daemon thread (returning once the watcher is active); :meth:`stop`
        ends it."""
        self.load()
        self._stop.clear()
        ready = threading.Event()
        thread = threading.Thread(
            target=self.watch,
            kwargs={"debounce_ms": debounce_ms, "ready": ready},
            name="ppw-rules-watcher",
            daemon=True,
        )
        thread.start()
        self._thread = thread
        if not ready.wait(timeout):
            log.warning(
                "the rules watcher did not start within %.0fs; changes may be picked up late", timeout
            )
        return thread

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None


def _report(state: _FileState) -> None:
    """Log what a file's load found: each broken rule's errors at ERROR (file:line:column, message,
    rule id, whether its last good version keeps running), warnings at INFO."""
    for warning in state.diagnostics:
        if not warning.is_error:
            log.info("rule warning: %s", warning.format())
    for broken in state.broken:
        for error in broken.errors:
            log.error(
                "rule error: %s%s%s",
                error.format(),
                f" [rule {broken.rule}]" if broken.rule else "",
                _kept(broken),
                extra={"rule_id": broken.rule} if broken.rule else {},
            )


def _kept(broken: BrokenRule) -> str:
    if not broken.kept:
        return " (not loaded)" if broken.rule else ""
    if broken.rule is None:
        return f" (the last good version of {', '.join(broken.kept)} keeps running)"
    return " (its last good version keeps running)"


def _update_metrics(ruleset: RuleSet) -> None:
    """``ppw_rules_loaded``, ``ppw_rule_errors`` (broken rules) and ``ppw_rule_load_errors`` (files
    with errors)."""
    try:
        # lazy: creating metrics waits for the multi-process dir
        from worker.observability.metrics import RULE_ERRORS, RULE_LOAD_ERRORS, RULES_LOADED
    except ImportError:  # metrics are optional for the rules library
        return
    RULES_LOADED.set(len(ruleset))
    RULE_ERRORS.set(len(ruleset.broken))
    RULE_LOAD_ERRORS.set(len({d.file for d in ruleset.errors}))

"""Hot reload: the rules in force, replaced file by file as the files change on disk.

:class:`RuleRegistry` holds the current :class:`RuleSet` and its :class:`Engine`. When a file
changes it is loaded and checked on its own first; a good file replaces its previous version, a
bad one is reported (log, :meth:`RuleRegistry.status`, metrics) while the last good version of that
file keeps running. A deleted file's rules are retired. Every rule carries its own version (content
hash), so run history can say exactly which definition ran.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from worker.rules.checker import CheckConfig
from worker.rules.context import Clock, system_clock
from worker.rules.diagnostics import Diagnostic
from worker.rules.engine import Engine
from worker.rules.loader import RULE_SUFFIXES, FileRules, discover, display_name, duplicate_ids, load_file
from worker.rules.ruleset import RuleSet
from worker.rules.templating import environment
from worker.settings import Settings, get_settings

log = logging.getLogger(__name__)

Listener = Callable[[RuleSet], None]


class RuleRegistry:
    """The rules in force for this process, kept up to date by :meth:`watch`.

    Parameters:
      rules_dir: the directory of rule files (default ``settings.rules_dir``).
      settings: time zone, env allow-list, secret names for warnings.
      clock: passed to the engine (``now()`` in templates).
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
        self._good: dict[Path, FileRules] = {}
        self._problems: dict[Path, list[Diagnostic]] = {}
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
        """For ``/readyz`` and metrics: how many rules run, which files failed and why."""
        with self._lock:
            errors = [d.to_dict() for problems in self._problems.values() for d in problems if d.is_error]
            failed = sorted({e["file"] for e in errors})
            return {
                "loaded": len(self._ruleset),
                "files": len(self._good),
                "failed_files": failed,
                "errors": errors,
                "warnings": sum(1 for p in self._problems.values() for d in p if not d.is_error),
                "version": self._ruleset.version,
                "reloads": self._reloads,
                "reloaded_at": self._reloaded_at.isoformat() if self._reloaded_at else None,
                "rules": {r.id: r.version for r in self._ruleset},
            }

    # -- loading ----------------------------------------------------------------------------------
    def load(self) -> RuleSet:
        """(Re)load every file of the rules directory."""
        with self._lock:
            if not self.rules_dir.is_dir():
                self._problems = {
                    self.rules_dir: [
                        Diagnostic(
                            str(self.rules_dir),
                            1,
                            1,
                            "rules directory not found",
                            hint="set PPW_RULES_DIR to the directory of rule files",
                            code="io",
                        )
                    ]
                }
                self._publish()
                return self._ruleset
            self._problems.pop(self.rules_dir, None)
            paths = {p.resolve() for p in discover([self.rules_dir])} | set(self._good) | set(self._problems)
            self._reload(sorted(paths))
            return self._ruleset

    def reload_paths(self, paths: Iterable[Path]) -> RuleSet:
        """Reload the given files (changed, added or deleted) and publish the result."""
        with self._lock:
            self._reload(sorted({Path(p).resolve() for p in paths}))
            return self._ruleset

    def _reload(self, paths: list[Path]) -> None:
        for path in paths:
            key = self._key(path)
            if not path.exists():
                if key in self._good:
                    log.info("rule file %s removed: its rules are retired", display_name(path))
                self._good.pop(key, None)
                self._problems.pop(key, None)
                continue
            if path.suffix not in RULE_SUFFIXES or path.is_dir():
                continue
            loaded = load_file(path, display=display_name(path), env=self._env, config=self._config)
            others = [rule for other, good in self._good.items() if other != key for rule in good.rules]
            clashes = duplicate_ids(loaded.rules, others)
            problems = loaded.diagnostics + clashes
            self._problems[key] = problems
            if loaded.ok and not clashes:
                self._good[key] = loaded
                for warning in problems:
                    log.info("rule warning: %s", warning.format())
            else:
                kept = " (its last good version keeps running)" if key in self._good else ""
                for problem in problems:
                    if problem.is_error:
                        log.error("rule error: %s%s", problem.format(), kept)
        self._publish()

    def _key(self, path: Path) -> Path:
        return path.resolve()

    def _publish(self) -> None:
        rules = tuple(rule for key in sorted(self._good) for rule in self._good[key].rules)
        diagnostics = sorted(
            (d for p in self._problems.values() for d in p), key=lambda d: (d.file, d.line, d.column)
        )
        ruleset = RuleSet(rules, tuple(diagnostics), tuple(display_name(k) for k in sorted(self._good)))
        changed = ruleset.version != self._ruleset.version
        self._ruleset = ruleset
        if changed or self._reloads == 0:
            self._engine = Engine(ruleset, settings=self.settings, clock=self._clock, previous=self._engine)
        self._reloads += 1
        self._reloaded_at = dt.datetime.now(dt.UTC)
        _update_metrics(len(ruleset), len({d.file for p in self._problems.values() for d in p if d.is_error}))
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
                    self.load()
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


def _update_metrics(loaded: int, failed_files: int) -> None:
    try:
        from worker.observability.metrics import RULE_LOAD_ERRORS, RULES_LOADED
    except ImportError:  # metrics are optional for the rules library
        return
    RULES_LOADED.set(loaded)
    RULE_LOAD_ERRORS.set(failed_files)

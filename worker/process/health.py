"""The HTTP side of a running worker: ``/healthz``, ``/readyz`` and ``/metrics``.

A small Starlette app served by uvicorn in a background thread, so ``ppw run``, ``ppw worker`` and
``ppw scheduler`` can all expose it without an event loop of their own. Readiness is the sum of
named checks registered by whoever owns the thing checked (broker, state store, token, rules,
polls); each returns a :class:`CheckResult`. Other areas add routes (inbound webhooks under
``/hooks/{name}``) through the ``routes`` argument.

Endpoints
---------
``GET /healthz``
    200 while the process serves HTTP. Container liveness probes use it.
``GET /readyz``
    Runs every check concurrently (each bounded by ``check_timeout``); 200 when all pass, 503 when
    any fails, with ``{"status": ..., "checks": {name: {"ok", "detail", "duration_ms"}}}``.
``GET /metrics``
    Prometheus text (or OpenMetrics when asked), merged across processes when
    ``PROMETHEUS_MULTIPROC_DIR`` is set. The ``state``, ``broker`` and ``token`` checks (those
    registered) run first, so ``ppw_dependency_up`` and the token gauges are as of the scrape; a
    check that does not answer within ``check_timeout`` counts as down.
"""

from __future__ import annotations

import importlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from worker import __version__
from worker.observability.exposition import collecting_registry, render
from worker.observability.scrub import scrub_text
from worker.serving import ThreadedServer

if TYPE_CHECKING:
    import dramatiq

    from worker.settings import Settings
    from worker.state.base import StateStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one readiness check; ``detail`` is shown to operators (keep it secret-free)."""

    ok: bool
    detail: str = ""

    @classmethod
    def passed(cls, detail: str = "ok") -> CheckResult:
        return cls(True, detail)

    @classmethod
    def failed(cls, detail: str) -> CheckResult:
        return cls(False, detail)


Check = Callable[[], CheckResult]

#: Checks whose outcome is exported as ``ppw_dependency_up{dependency=<name>}``.
DEPENDENCY_CHECKS = ("state", "broker")
#: Checks run again on every ``/metrics`` scrape (``token`` reads the tokens, which sets their gauges).
SCRAPE_CHECKS = (*DEPENDENCY_CHECKS, "token")


# The app ------------------------------------------------------------------------------------------


async def _run_check(name: str, check: Check, timeout: float) -> tuple[str, CheckResult, float]:
    started = time.perf_counter()
    try:
        with anyio.fail_after(timeout):
            result = await anyio.to_thread.run_sync(check, abandon_on_cancel=True)
        if not isinstance(result, CheckResult):
            result = CheckResult.failed(f"check returned {type(result).__name__}, not CheckResult")
    except TimeoutError:
        result = CheckResult.failed(f"no answer within {timeout:g}s")
    except Exception as exc:  # a broken check is a failed check, never a 500
        result = CheckResult.failed(scrub_text(f"{type(exc).__name__}: {exc}"))
    return name, result, (time.perf_counter() - started) * 1000


async def run_checks(checks: Mapping[str, Check], timeout: float = 5.0) -> dict[str, dict[str, Any]]:
    """Run ``checks`` concurrently; a JSON-ready report per check name."""
    results: list[tuple[str, CheckResult, float]] = []

    async def one(name: str, check: Check) -> None:
        results.append(await _run_check(name, check, timeout))

    async with anyio.create_task_group() as group:
        for name, check in list(checks.items()):
            group.start_soon(one, name, check)
    return {
        name: {"ok": result.ok, "detail": result.detail, "duration_ms": round(ms, 1)}
        for name, result, ms in sorted(results, key=lambda item: item[0])
    }


def record_dependencies(report: Mapping[str, Mapping[str, Any]]) -> None:
    """Set ``ppw_dependency_up`` from a :func:`run_checks` report (only the dependency checks in it)."""
    from worker.observability import metrics  # lazy: creating metrics waits for the multi-process dir

    for name in DEPENDENCY_CHECKS:
        if name in report:
            metrics.DEPENDENCY_UP.labels(name).set(1 if report[name]["ok"] else 0)


def build_app(
    checks: Mapping[str, Check], *, routes: Iterable[BaseRoute] = (), check_timeout: float = 5.0
) -> Starlette:
    """The Starlette app; ``checks`` is read on every ``/readyz`` so later registrations count."""
    # Registers ppw's metrics so /metrics lists them before their first use. Imported here, not at
    # the top, so importing this module never creates metric files before the multi-process
    # directory is prepared (see worker.observability.metrics).
    importlib.import_module("worker.observability.metrics")

    started_at = time.time()

    async def healthz(request: Request) -> Response:
        return JSONResponse(
            {"status": "ok", "version": __version__, "uptime_s": round(time.time() - started_at, 1)}
        )

    async def readyz(request: Request) -> Response:
        report = await run_checks(checks, check_timeout)
        record_dependencies(report)
        ready = all(entry["ok"] for entry in report.values())
        body = {"status": "ok" if ready else "fail", "checks": report}
        return JSONResponse(body, status_code=200 if ready else 503)

    async def metrics(request: Request) -> Response:
        scraped = {name: check for name in SCRAPE_CHECKS if (check := checks.get(name)) is not None}
        if scraped:
            record_dependencies(await run_checks(scraped, check_timeout))
        body, content_type = await anyio.to_thread.run_sync(render, request.headers.get("accept", ""))
        return Response(body, media_type=content_type)

    base = [
        Route("/healthz", healthz, methods=["GET", "HEAD"]),
        Route("/readyz", readyz, methods=["GET", "HEAD"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]
    return Starlette(routes=[*base, *routes])


# The server ---------------------------------------------------------------------------------------


class HealthServer(ThreadedServer):
    """Serves :func:`build_app` from a daemon thread (:class:`~worker.serving.ThreadedServer`).

    Parameters
    ----------
    settings:
        ``http_host`` and ``http_port`` are the defaults for ``host`` and ``port``.
    checks:
        Readiness checks by name; more can be added with :meth:`register_check`, also after start.
    routes:
        Extra Starlette routes mounted beside the built-in ones (``/hooks/{name}``).
    port:
        ``0`` picks a free port; :attr:`url` tells which.
    """

    def __init__(
        self,
        settings: Settings,
        checks: Mapping[str, Check] | None = None,
        *,
        routes: Sequence[BaseRoute] = (),
        host: str | None = None,
        port: int | None = None,
        check_timeout: float = 5.0,
    ) -> None:
        self.checks: dict[str, Check] = dict(checks or {})
        super().__init__(
            build_app(self.checks, routes=routes, check_timeout=check_timeout),
            host if host is not None else settings.http_host,
            port if port is not None else settings.http_port,
            name="ppw-http",
            lifespan="on",
            timeout_graceful_shutdown=5,
        )

    def register_check(self, name: str, check: Check) -> None:
        """Add (or replace) a readiness check."""
        self.checks[name] = check

    def unregister_check(self, name: str) -> None:
        self.checks.pop(name, None)

    def start(self, timeout: float = 10.0) -> HealthServer:
        super().start(timeout)
        log.info("health and metrics server listening on %s", self.url)
        return self


# Ready-made checks --------------------------------------------------------------------------------


def broker_check(broker: dramatiq.Broker) -> Check:
    """Pings Redis or opens (and closes) a RabbitMQ connection; the in-memory broker is always up."""

    def check() -> CheckResult:
        client = getattr(broker, "client", None)
        if client is not None and hasattr(client, "ping"):
            client.ping()
            return CheckResult.passed("redis answers")
        parameters = getattr(broker, "parameters", None)
        if parameters is not None:
            import pika

            pika.BlockingConnection(parameters=parameters).close()
            return CheckResult.passed("rabbitmq answers")
        return CheckResult.passed(f"{type(broker).__name__} (in process)")

    return check


def state_check(store: StateStore) -> Check:
    """The state store answers a ping."""

    def check() -> CheckResult:
        if store.ping():
            return CheckResult.passed(f"{store.url.split('://', 1)[0]} answers")
        return CheckResult.failed("state store does not answer")

    return check


def token_check(expires_at: Callable[[], float | None], *, grace: float = 300.0) -> Check:
    """There is an access token, and it has not been expired for longer than ``grace`` seconds.

    ``expires_at`` returns the Unix time the current token expires, or None with no token. The
    worker refreshes before expiry, so a token expired beyond the grace means refreshing fails.
    """

    def check() -> CheckResult:
        expiry = expires_at()
        if expiry is None:
            return CheckResult.failed("not connected to PracticePanther: run `ppw auth login`")
        left = expiry - time.time()
        if left < -grace:
            return CheckResult.failed(f"access token expired {-left:.0f}s ago and was not refreshed")
        return CheckResult.passed(f"access token valid for {max(left, 0):.0f}s")

    return check


@dataclass(frozen=True)
class RulesState:
    """What :func:`rules_check` reads: the rules in force, one line per broken rule
    (``rules/x.yaml:14:9 (rule-id): message``) and how many rule files there are."""

    loaded: int
    broken: Sequence[str] = ()
    files: int = 0


def rules_check(state: Callable[[], RulesState | None], *, shown: int = 5) -> Check:
    """The rules have loaded (``state`` returns None until they have); broken rules are named.

    Broken rules do not fail readiness: the other rules run, and each broken rule's last good
    version stays in force, so taking the worker out of service would only stop the good ones too.
    It fails when rule files are present but not one rule loaded from them (all broken): such a
    worker would poll and run nothing while looking healthy. No rule files at all passes (a fresh
    install). The first ``shown`` broken rules are listed, the rest counted.
    """

    def check() -> CheckResult:
        current = state()
        if current is None:
            return CheckResult.failed("rules not loaded yet")
        count, broken = current.loaded, list(current.broken)
        detail = f"{count} rule{'s' if count != 1 else ''} loaded"
        if broken:
            more = f"; and {len(broken) - shown} more" if len(broken) > shown else ""
            detail += f", {len(broken)} broken: " + "; ".join(broken[:shown]) + more
        elif not current.files:
            detail += " (no rule files)"
        detail = scrub_text(detail)
        if count == 0 and current.files and broken:
            return CheckResult.failed(f"no rule loaded from {current.files} rule file(s): {detail}")
        return CheckResult.passed(detail)

    return check


def custom_fields_check(report: Callable[[], Mapping[str, Any] | None], *, shown: int = 5) -> Check:
    """Custom field labels the rules use that the account no longer defines are named.

    ``report`` gives the last refresh's report (:func:`worker.rules.customlabels.read_report`).
    A missing label never fails readiness (the rule's other triggers and the other rules still
    work); it is said here, beside the log warning and ``ppw_custom_field_labels_missing``, so a
    rename in PracticePanther does not silently stop a rule.
    """

    def check() -> CheckResult:
        current = report()
        if current is None:
            return CheckResult.passed("definitions not refreshed yet")
        missing = [m for m in current.get("missing") or [] if isinstance(m, Mapping)]
        when = str(current.get("checked_at") or "?")[:19]
        if not missing:
            return CheckResult.passed(f"every custom field label the rules use is defined (checked {when}Z)")
        lines = [
            f"{m.get('rule')}: {m.get('label')!r} on {m.get('resource')}"
            + (f" ({m.get('hint')})" if m.get("hint") else "")
            for m in missing[:shown]
        ]
        more = f"; and {len(missing) - shown} more" if len(missing) > shown else ""
        detail = f"{len(missing)} custom field label(s) no longer defined: " + "; ".join(lines) + more
        return CheckResult.passed(scrub_text(detail))

    return check


def timers_check(oldest_due: Callable[[], float | None], *, late: float = 60.0) -> Check:
    """Waiting runs due for longer than ``late`` seconds and not woken: the leader's pump is
    stuck, or no worker takes run messages. Fails readiness (a wait is a promise of a moment).

    ``oldest_due`` gives the Unix time of the oldest due timer, None when none is due.
    """

    def check() -> CheckResult:
        due = oldest_due()
        if due is None:
            return CheckResult.passed("no waiting run is overdue")
        behind = time.time() - due
        if behind <= late:
            return CheckResult.passed(f"waking runs due {behind:.0f}s ago")
        return CheckResult.failed(
            f"a waiting run is {behind:.0f}s past its moment and not woken: is a scheduler leading "
            "and are workers taking run messages?"
        )

    return check


def last_poll_success_from_metrics(resources: Iterable[str]) -> Callable[[], dict[str, float | None]]:
    """``last_success`` for :func:`polls_check`, read from ``ppw_last_poll_success_timestamp_seconds``.

    Sees the polls of this process (``ppw run``) or of its process tree (multi-process mode); a
    scheduler whose polls run in other hosts' workers needs a source that reads the state store.
    """
    names = list(resources)

    def read() -> dict[str, float | None]:
        registry = collecting_registry()
        metric = "ppw_last_poll_success_timestamp_seconds"
        return {name: registry.get_sample_value(metric, {"resource": name}) for name in names}

    return read


def polls_check(
    last_success: Callable[[], Mapping[str, float | None]],
    interval: float,
    *,
    intervals: float = 3.0,
    started_at: float | None = None,
) -> Check:
    """Every resource polled successfully within ``intervals`` poll intervals.

    ``last_success`` maps each polled resource to the Unix time of its last successful poll (None:
    never). A resource never polled only fails once the process has been up that long too.
    """
    since = time.time() if started_at is None else started_at

    def check() -> CheckResult:
        now = time.time()
        limit = interval * intervals
        stale = []
        for resource, when in sorted(last_success().items()):
            reference = when if when is not None else since
            if now - reference > limit:
                stale.append(f"{resource} ({'never' if when is None else f'{now - when:.0f}s ago'})")
        if stale:
            return CheckResult.failed(f"not polled successfully within {limit:g}s: " + ", ".join(stale))
        return CheckResult.passed(f"all resources polled within {limit:g}s")

    return check


# The probe ----------------------------------------------------------------------------------------


def probe(url: str, timeout: float = 4.0) -> tuple[bool, str]:
    """GET ``url``; (True, body) on 200, else (False, reason). Standard library only, no retries."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status == 200, response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return False, f"{exc.code} {exc.read().decode('utf-8', 'replace')}"
    except OSError as exc:
        return False, f"{type(exc).__name__}: {exc}"


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m worker.process.health [--ready] [--url URL]``: the container HEALTHCHECK and a VM probe.

    Exits 0 when ``/healthz`` (or ``/readyz`` with ``--ready``) answers 200, 1 otherwise, printing
    the answer; needs no settings beyond ``PPW_HTTP_PORT`` so it works in any process's environment.
    """
    import argparse
    import os

    parser = argparse.ArgumentParser(prog="python -m worker.process.health", description=main.__doc__)
    parser.add_argument("--ready", action="store_true", help="probe /readyz instead of /healthz")
    parser.add_argument("--url", help="base URL (default http://127.0.0.1:$PPW_HTTP_PORT)")
    parser.add_argument("--timeout", type=float, default=4.0)
    args = parser.parse_args(argv)
    base = args.url or f"http://127.0.0.1:{os.environ.get('PPW_HTTP_PORT', '9000')}"
    ok, answer = probe(base.rstrip("/") + ("/readyz" if args.ready else "/healthz"), args.timeout)
    print(answer.strip())
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())

"""The health server over real HTTP: liveness, readiness aggregation, metrics, extra routes."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from worker.observability import metrics
from worker.process.health import (
    CheckResult,
    HealthServer,
    RulesState,
    broker_check,
    last_poll_success_from_metrics,
    polls_check,
    rules_check,
    state_check,
    token_check,
)
from worker.state.redis import RedisStore
from worker.state.sqlite import SqliteStore

from .conftest import make_settings


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def server() -> Iterator[HealthServer]:
    with HealthServer(make_settings(), host="127.0.0.1", port=0, check_timeout=0.5) as running:
        yield running


def test_healthz_answers_while_serving(server: HealthServer) -> None:
    response = httpx.get(f"{server.url}/healthz")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"
    assert httpx.head(f"{server.url}/healthz").status_code == 200


def test_readyz_without_checks_is_ready(server: HealthServer) -> None:
    response = httpx.get(f"{server.url}/readyz")
    assert (response.status_code, response.json()) == (200, {"status": "ok", "checks": {}})


def test_readyz_aggregates_checks_and_reports_each(server: HealthServer) -> None:
    server.register_check("broker", lambda: CheckResult.passed("redis answers"))
    server.register_check("token", lambda: CheckResult.failed("not connected"))

    response = httpx.get(f"{server.url}/readyz")

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "fail"
    assert body["checks"]["broker"]["ok"] is True
    assert body["checks"]["broker"]["detail"] == "redis answers"
    assert body["checks"]["token"] == {**body["checks"]["token"], "ok": False, "detail": "not connected"}

    server.unregister_check("token")
    assert httpx.get(f"{server.url}/readyz").status_code == 200


def test_a_raising_check_fails_with_a_masked_detail(server: HealthServer) -> None:
    def broken() -> CheckResult:
        raise ConnectionError("401 from PP with Authorization: Bearer at-live-99")

    server.register_check("token", broken)
    response = httpx.get(f"{server.url}/readyz")
    assert response.status_code == 503
    detail = response.json()["checks"]["token"]["detail"]
    assert detail == "ConnectionError: 401 from PP with Authorization: Bearer [redacted]"


def test_a_hanging_check_fails_after_the_timeout(server: HealthServer) -> None:
    release = threading.Event()
    server.register_check(
        "state", lambda: CheckResult.passed() if release.wait(10) else CheckResult.failed("")
    )
    server.register_check("rules", lambda: CheckResult.passed())
    try:
        response = httpx.get(f"{server.url}/readyz", timeout=5)
    finally:
        release.set()
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["state"]["detail"] == "no answer within 0.5s"
    assert checks["rules"]["ok"] is True


def test_a_check_returning_the_wrong_type_fails(server: HealthServer) -> None:
    server.register_check("odd", lambda: True)  # type: ignore[arg-type,return-value]
    assert httpx.get(f"{server.url}/readyz").json()["checks"]["odd"]["ok"] is False


def test_metrics_lists_every_ppw_metric(server: HealthServer) -> None:
    metrics.POLLS.labels("matters", "ok").inc()
    response = httpx.get(f"{server.url}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    for metric in metrics.ALL:
        assert f"# HELP {metric._name}" in response.text
    assert 'ppw_polls_total{resource="matters",result="ok"}' in response.text
    assert "ppw_polls_created" not in response.text


def test_metrics_speaks_openmetrics_when_asked(server: HealthServer) -> None:
    response = httpx.get(f"{server.url}/metrics", headers={"Accept": "application/openmetrics-text"})
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    assert response.text.rstrip().endswith("# EOF")


def test_extra_routes_are_served_beside_the_built_in_ones() -> None:
    async def hook(request: Request) -> Response:
        return JSONResponse({"hook": request.path_params["name"]}, status_code=202)

    routes = [Route("/hooks/{name}", hook, methods=["POST"])]
    with HealthServer(make_settings(), routes=routes, host="127.0.0.1", port=0) as server:
        response = httpx.post(f"{server.url}/hooks/intake", json={})
        assert (response.status_code, response.json()) == (202, {"hook": "intake"})
        assert httpx.get(f"{server.url}/healthz").status_code == 200


def test_settings_choose_host_and_port() -> None:
    port = free_port()
    with HealthServer(make_settings(http_host="127.0.0.1", http_port=port)) as server:
        assert server.url == f"http://127.0.0.1:{port}"
        assert httpx.get(f"{server.url}/healthz").status_code == 200


def test_a_taken_port_fails_at_start_and_stop_frees_it() -> None:
    first = HealthServer(make_settings(), host="127.0.0.1", port=0).start()
    port = int(first.url.rsplit(":", 1)[1])
    with pytest.raises(OSError):
        HealthServer(make_settings(), host="127.0.0.1", port=port).start()
    first.stop()
    first.stop()  # idempotent
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/healthz")
    with HealthServer(make_settings(), host="127.0.0.1", port=port) as again:
        assert httpx.get(f"{again.url}/healthz").status_code == 200


# Ready-made checks against real services ---------------------------------------------------------


def test_broker_check_on_real_brokers(redis_url: str, rabbitmq_url: str) -> None:
    assert broker_check(RedisBroker(url=redis_url))() == CheckResult.passed("redis answers")
    assert broker_check(RabbitmqBroker(url=rabbitmq_url))() == CheckResult.passed("rabbitmq answers")
    assert broker_check(StubBroker())().ok


def test_broker_check_fails_when_redis_is_down() -> None:
    down = RedisBroker(url=f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=1)
    with HealthServer(make_settings(), {"broker": broker_check(down)}, host="127.0.0.1", port=0) as server:
        response = httpx.get(f"{server.url}/readyz", timeout=10)
    assert response.status_code == 503
    assert response.json()["checks"]["broker"]["detail"].startswith("ConnectionError")


def test_state_check_on_both_backends(redis_store: RedisStore, sqlite_store: SqliteStore) -> None:
    assert state_check(redis_store)() == CheckResult.passed("redis answers")
    assert state_check(sqlite_store)() == CheckResult.passed("sqlite answers")
    down = RedisStore(f"redis://127.0.0.1:{free_port()}/0", socket_timeout=1)
    try:
        assert state_check(down)() == CheckResult.failed("state store does not answer")
    finally:
        down.close()


# Ready-made checks: their rules ------------------------------------------------------------------


def test_token_check() -> None:
    now = time.time()
    assert not token_check(lambda: None)().ok
    assert token_check(lambda: now + 3600)().detail.startswith("access token valid for")
    assert token_check(lambda: now - 60, grace=300)().ok, "just expired: a refresh is due, not failing"
    assert "was not refreshed" in token_check(lambda: now - 3600, grace=300)().detail


def test_rules_check() -> None:
    assert rules_check(lambda: None)() == CheckResult.failed("rules not loaded yet")
    assert rules_check(lambda: RulesState(1, files=1))() == CheckResult.passed("1 rule loaded")
    assert rules_check(lambda: RulesState(0))() == CheckResult.passed("0 rules loaded (no rule files)")


def test_rules_check_names_broken_rules_without_failing_readiness() -> None:
    broken = ["rules/x.yaml:14:9 (a): unknown step type 'lgo'", "rules/y.yaml:3:1: YAML syntax: ..."]
    assert rules_check(lambda: RulesState(12, broken, files=2))() == CheckResult.passed(
        "12 rules loaded, 2 broken: rules/x.yaml:14:9 (a): unknown step type 'lgo'; "
        "rules/y.yaml:3:1: YAML syntax: ..."
    )
    many = [f"rules/x.yaml:{n}:1 (r{n}): bad" for n in range(1, 9)]
    detail = rules_check(lambda: RulesState(1, many, files=1), shown=2)().detail
    assert detail == (
        "1 rule loaded, 8 broken: rules/x.yaml:1:1 (r1): bad; rules/x.yaml:2:1 (r2): bad; and 6 more"
    )


def test_rules_check_fails_when_rule_files_are_there_but_no_rule_loaded() -> None:
    result = rules_check(lambda: RulesState(0, ["rules/x.yaml:2:3 (a): bad"], files=1))()
    assert result == CheckResult.failed(
        "no rule loaded from 1 rule file(s): 0 rules loaded, 1 broken: rules/x.yaml:2:3 (a): bad"
    )


def test_polls_check_allows_three_intervals() -> None:
    now = time.time()
    fresh = polls_check(lambda: {"matters": now - 100, "tasks": None}, interval=60, started_at=now)
    assert fresh() == CheckResult.passed("all resources polled within 180s")
    stale = polls_check(lambda: {"matters": now - 200, "tasks": None}, interval=60, started_at=now - 500)
    result = stale()
    assert not result.ok
    assert result.detail.startswith("not polled successfully within 180s: matters (20")
    assert result.detail.endswith("tasks (never)")


def test_polls_check_reads_the_poller_metric() -> None:
    now = time.time()
    metrics.LAST_POLL_SUCCESS.labels("ops-test-matters").set(now - 30)
    metrics.LAST_POLL_SUCCESS.labels("ops-test-tasks").set(now - 1000)
    read = last_poll_success_from_metrics(["ops-test-matters", "ops-test-tasks", "ops-test-never"])
    seen = read()
    assert seen["ops-test-matters"] == pytest.approx(now - 30)
    assert seen["ops-test-never"] is None
    result = polls_check(read, interval=60, started_at=now)()
    assert not result.ok
    assert "ops-test-tasks (1000s ago)" in result.detail
    assert "ops-test-matters" not in result.detail and "ops-test-never" not in result.detail

"""deploy/observability: the alert rules pass ``promtool`` (syntax and their unit tests), the
dashboard imports and queries only metrics ppw exports, a running ``ppw run``'s /metrics passes
``promtool check metrics``, and the metrics the alerts need are set where their values are known.

``promtool`` comes with Debian's ``prometheus`` package (``.ci/run`` installs it). Without it these
tests skip, except under CI (``CI`` set), where a missing promtool fails them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import eventually
from tests.e2e.test_ppw_run import start_embedded
from tests.fixtures.stubs import StubServer
from worker.observability import metrics
from worker.observability.exposition import collecting_registry
from worker.practicepanther.tokens import TokenSet, TokenStore
from worker.process.health import CheckResult, HealthServer
from worker.process.run import api_metrics
from worker.sandbox import SandboxServer
from worker.state import open_store

from .conftest import REPO, make_settings
from .yamlfiles import load

OBSERVABILITY = REPO / "deploy" / "observability"
ALERTS = OBSERVABILITY / "alerts.yml"
ALERT_TESTS = OBSERVABILITY / "alerts.test.yml"
DASHBOARD = OBSERVABILITY / "ppw-dashboard.json"


def promtool() -> str:
    """The promtool binary: skipped without it, except under CI, where it must be there."""
    found = shutil.which("promtool")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("CI is set but promtool is missing: .ci/run installs it (Debian package prometheus)")
        pytest.skip("promtool is not installed (Debian: apt-get install prometheus; CI installs it)")
    return found


def run_promtool(*args: str, stdin: str | None = None, cwd: Path = OBSERVABILITY) -> str:
    done = subprocess.run(
        [promtool(), *args], input=stdin, capture_output=True, text=True, cwd=cwd, timeout=120
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    return output


def exported_names() -> set[str]:
    """Every series name ppw's own metrics expose (counters with ``_total``, histograms' parts)."""
    names: set[str] = set()
    for metric in metrics.ALL:
        name, kind = metric._name, metric._type
        if kind == "counter":
            names.add(f"{name}_total")
        elif kind == "histogram":
            names.update(f"{name}_{part}" for part in ("bucket", "count", "sum"))
        else:
            names.add(name)
    return names


def ppw_names(expr: str) -> set[str]:
    return set(re.findall(r"\bppw_[a-z_]+", expr))


def alert_rules() -> list[dict[str, Any]]:
    return [rule for group in load(ALERTS)["groups"] for rule in group["rules"]]


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return data


def dashboard_exprs() -> list[str]:
    return [t["expr"] for p in dashboard()["panels"] for t in p.get("targets", [])]


# The alert rules ---------------------------------------------------------------------------------


def test_alert_rules_pass_promtool_check() -> None:
    assert "SUCCESS" in run_promtool("check", "rules", ALERTS.name)


def test_alert_rules_pass_their_unit_tests() -> None:
    assert "SUCCESS" in run_promtool("test", "rules", ALERT_TESTS.name)


def test_every_alert_is_tested_firing_and_quiet() -> None:
    cases = [case for test in load(ALERT_TESTS)["tests"] for case in test["alert_rule_test"]]
    for rule in alert_rules():
        name = rule["alert"]
        runs = [case for case in cases if case["alertname"] == name]
        assert any(case["exp_alerts"] for case in runs), f"{name} is never shown firing"
        assert any(not case["exp_alerts"] for case in runs), f"{name} is never shown quiet"


def test_alerts_use_only_metrics_ppw_exports() -> None:
    known = exported_names()
    for rule in alert_rules():
        assert ppw_names(rule["expr"]) <= known, rule["alert"]
        assert rule["labels"]["severity"] in {"critical", "warning"}
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]


def test_operations_doc_explains_every_alert() -> None:
    text = (REPO / "docs" / "operations.md").read_text(encoding="utf-8")
    for rule in alert_rules():
        assert f"`{rule['alert']}`" in text, rule["alert"]


# The dashboard -----------------------------------------------------------------------------------


def test_dashboard_imports_with_a_prometheus_input() -> None:
    board = dashboard()
    assert board["__inputs"] == [
        {
            "name": "DS_PROMETHEUS",
            "label": "Prometheus",
            "description": "The Prometheus that scrapes ppw",
            "type": "datasource",
            "pluginId": "prometheus",
            "pluginName": "Prometheus",
        }
    ]
    assert board["id"] is None and board["uid"]
    datasource = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in board["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == datasource, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == datasource, panel["title"]
    assert board["templating"]["list"][0]["datasource"] == datasource


def test_dashboard_shows_what_the_operations_doc_promises() -> None:
    titles = {p["title"] for p in dashboard()["panels"]}
    assert {
        "Time since last successful poll",
        "Cursor lag",
        "Events per minute",
        "Rule runs per minute by status",
        "Failures per minute",
        "Dead letters waiting",
        "Held batches",
        "Access token expires in",
        "Dependencies up",
        "Rules",
    } <= titles
    used = set().union(*(ppw_names(expr) for expr in dashboard_exprs()))
    assert used <= exported_names()
    assert {
        "ppw_last_poll_success_timestamp_seconds",
        "ppw_cursor_lag_seconds",
        "ppw_events_total",
        "ppw_rule_runs_total",
        "ppw_dlq_messages",
        "ppw_held_batches",
        "ppw_token_expiry_timestamp_seconds",
        "ppw_rule_errors",
        "ppw_dependency_up",
    } <= used


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    """Each query, with Grafana's variables filled in, as a recording rule ``promtool`` parses."""
    rules = [
        {"record": f"ppw:dashboard:{n}", "expr": expr.replace("$__rate_interval", "5m").replace("$job", ".*")}
        for n, expr in enumerate(dashboard_exprs())
    ]
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(json.dumps({"groups": [{"name": "dashboard", "rules": rules}]}), encoding="utf-8")
    assert f"SUCCESS: {len(rules)} rules found" in run_promtool("check", "rules", str(path))


# A running ppw's /metrics ------------------------------------------------------------------------


def test_metrics_of_a_running_ppw_pass_promtool_check_metrics(
    sandbox: SandboxServer, slack_stub: StubServer, tmp_path: Path, connection_id: str
) -> None:
    tool = promtool()
    process, _ = start_embedded(sandbox, slack_stub, tmp_path, connection_id)
    log = tmp_path / "ppw-run.log"
    try:

        def url() -> str | None:
            found = re.search(r"health and metrics on (http://\S+)", log.read_text(errors="replace"))
            return found.group(1) if found else None

        base = eventually(url, timeout=30, message="the health server to start")
        body = httpx.get(f"{base}/metrics", timeout=10).text
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    checked = subprocess.run(
        [tool, "check", "metrics"], input=body, capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 0 and not (checked.stdout + checked.stderr).strip(), (
        checked.stdout + checked.stderr
    )
    assert re.search(r'^ppw_dependency_up\{dependency="state"\} 1\.0$', body, re.M), body
    assert re.search(r'^ppw_dependency_up\{dependency="broker"\} 1\.0$', body, re.M)
    assert re.search(
        rf'^ppw_token_expiry_timestamp_seconds\{{connection="{connection_id}"\}} \S+$', body, re.M
    )
    assert f'ppw_token_reauth_required{{connection="{connection_id}"}} 0.0' in body
    assert re.search(r'^ppw_api_calls_total\{method="GET",status="200"\} [1-9]', body, re.M), body
    assert re.search(r'^ppw_last_poll_success_timestamp_seconds\{resource="matters"\}', body, re.M)


# The metrics the alerts need, set where their values are known -----------------------------------


def sample(name: str, **labels: str) -> float | None:
    return collecting_registry().get_sample_value(name, labels)


def test_reading_and_writing_tokens_exports_their_expiry_and_reauth(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'state.db'}")
    tokens = TokenStore(store, "obs-conn", None)
    expires = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=24)
    try:
        tokens.save(TokenSet(access_token="at", refresh_token="rt", expires_at=expires))
        assert sample("ppw_token_expiry_timestamp_seconds", connection="obs-conn") == expires.timestamp()
        assert sample("ppw_token_reauth_required", connection="obs-conn") == 0

        metrics.TOKEN_EXPIRY.labels("obs-conn").set(0)
        assert tokens.load() is not None
        assert sample("ppw_token_expiry_timestamp_seconds", connection="obs-conn") == expires.timestamp()

        tokens.mark_reauth("invalid_grant")
        assert sample("ppw_token_reauth_required", connection="obs-conn") == 1
    finally:
        store.close()


def test_dependency_checks_set_dependency_up_on_scrape_and_probe() -> None:
    answers = {"state": True}

    def state() -> CheckResult:
        if answers["state"]:
            return CheckResult.passed("sqlite answers")
        raise ConnectionError("state store does not answer")

    checks = {"state": state, "broker": lambda: CheckResult.passed("in process")}
    with HealthServer(make_settings(), checks, host="127.0.0.1", port=0, check_timeout=1) as server:
        text = httpx.get(f"{server.url}/metrics").text
        assert 'ppw_dependency_up{dependency="state"} 1.0' in text
        assert 'ppw_dependency_up{dependency="broker"} 1.0' in text

        answers["state"] = False
        text = httpx.get(f"{server.url}/metrics").text
        assert 'ppw_dependency_up{dependency="state"} 0.0' in text, "a scrape checks again"
        assert 'ppw_dependency_up{dependency="broker"} 1.0' in text

        answers["state"] = True
        assert httpx.get(f"{server.url}/readyz").status_code == 200
        assert sample("ppw_dependency_up", dependency="state") == 1, "so does a readiness probe"


def test_a_hanging_state_store_counts_as_down_on_scrape() -> None:
    import threading

    release = threading.Event()
    checks = {"state": lambda: CheckResult.passed() if release.wait(5) else CheckResult.failed("")}
    with HealthServer(make_settings(), checks, host="127.0.0.1", port=0, check_timeout=0.3) as server:
        try:
            text = httpx.get(f"{server.url}/metrics", timeout=5).text
        finally:
            release.set()
    assert 'ppw_dependency_up{dependency="state"} 0.0' in text


def test_api_calls_are_counted_by_status() -> None:
    before_ok = sample("ppw_api_calls_total", method="PATCH", status="200") or 0
    before_error = sample("ppw_api_calls_total", method="PATCH", status="error") or 0
    api_metrics("PATCH", "/api/v2/matters/{id}", 200, 0.2)
    api_metrics("PATCH", "/api/v2/matters/{id}", 0, 10.0)
    assert sample("ppw_api_calls_total", method="PATCH", status="200") == before_ok + 1
    assert sample("ppw_api_calls_total", method="PATCH", status="error") == before_error + 1
    assert (sample("ppw_api_latency_seconds_count", method="PATCH") or 0) >= 2

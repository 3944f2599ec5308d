"""Every Prometheus metric ppw exports, defined once, here.

Other modules import the metric objects and update them (``metrics.POLLS.labels("matters",
"ok").inc()``); nothing else calls the ``prometheus_client`` constructors, so names, labels and help
texts stay consistent and documented in one place (``docs/operations.md`` lists them).

Multi-process mode
------------------
``ppw worker`` may run several processes (Dramatiq forks). ``prometheus_client`` then keeps values
in memory-mapped files under ``PROMETHEUS_MULTIPROC_DIR`` and ``/metrics`` merges them. The variable
must be set in the environment *before* this module is first imported (the container images and
systemd units set it), and the directory must be emptied when the process tree starts
(:func:`worker.observability.exposition.prepare_multiprocess_dir`). Gauges use
``multiprocess_mode="mostrecent"`` (the latest value written by any process) or ``"livesum"``
where per-process values add up. Without the variable every metric lives in the default registry.

Label values must come from small, fixed sets (resource names, rule ids, step types, HTTP status
codes): never record ids, user input or URLs.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, disable_created_metrics

# ``*_created`` series double the page and no dashboard or alert here uses them.
disable_created_metrics()

#: Latency buckets (seconds) suited to HTTP calls to PracticePanther and Slack.
API_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
#: Step buckets: a step may wait on a rate limiter or a retrying API call.
STEP_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)

# Polling ------------------------------------------------------------------------------------------
POLLS = Counter(
    "ppw_polls",
    "Polls of a PracticePanther resource, by result (ok, primed, held, error).",
    ["resource", "result"],
)
CURSOR_LAG = Gauge(
    "ppw_cursor_lag_seconds",
    "Seconds between now and the resource's cursor (newest change already turned into events).",
    ["resource"],
    multiprocess_mode="mostrecent",
)
LAST_POLL_SUCCESS = Gauge(
    "ppw_last_poll_success_timestamp_seconds",
    "Unix time of the resource's last successful poll.",
    ["resource"],
    multiprocess_mode="max",
)
RECONCILES = Counter(
    "ppw_reconciles_total",
    "Reconciles of tracked records with a listing (deleted records), by resource and result "
    "(ok, held, suspect, error).",
    ["resource", "result"],
)
LAST_RECONCILE_SUCCESS = Gauge(
    "ppw_last_reconcile_success_timestamp_seconds",
    "Unix time of the resource's last reconcile that believed its listing.",
    ["resource"],
    multiprocess_mode="max",
)
EVENTS = Counter(
    "ppw_events",
    "Events detected, by type (created, updated, deleted, webhook, schedule) and resource.",
    ["type", "resource"],
)
HELD_BATCHES = Gauge(
    "ppw_held_batches",
    "Batches held for an operator because a poll found more changes than the flood limit.",
    ["resource"],
    multiprocess_mode="mostrecent",
)

# PracticePanther API ------------------------------------------------------------------------------
API_CALLS = Counter(
    "ppw_api_calls",
    "HTTP calls to PracticePanther, by method and status code ('error' when no response came back).",
    ["method", "status"],
)
API_LATENCY = Histogram(
    "ppw_api_latency_seconds",
    "Duration of HTTP calls to PracticePanther, by method.",
    ["method"],
    buckets=API_BUCKETS,
)
TOKEN_EXPIRY = Gauge(
    "ppw_token_expiry_timestamp_seconds",
    "Unix time at which the current PracticePanther access token expires.",
    ["connection"],
    multiprocess_mode="mostrecent",
)

# Rules --------------------------------------------------------------------------------------------
RULES_LOADED = Gauge(
    "ppw_rules_loaded",
    "Rules loaded and active after the latest (re)load.",
    multiprocess_mode="mostrecent",
)
RULE_ERRORS = Gauge(
    "ppw_rule_errors",
    "Rules that failed to load in the latest (re)load (a file that cannot be parsed counts once); "
    "the other rules run, and a broken rule's last good version stays active.",
    multiprocess_mode="mostrecent",
)
RULE_LOAD_ERRORS = Gauge(
    "ppw_rule_load_errors",
    "Rule files with at least one error in the latest (re)load (their good rules still load).",
    multiprocess_mode="mostrecent",
)
CUSTOM_FIELD_LABELS_MISSING = Gauge(
    "ppw_custom_field_labels_missing",
    "Custom field labels loaded rules use that the account no longer defines (renamed or removed "
    "in PracticePanther), by resource, at the latest refresh of the definitions.",
    ["resource"],
    multiprocess_mode="mostrecent",
)
RULE_RUNS = Counter(
    "ppw_rule_runs",
    "Rule runs that reached a status, by rule id and status (succeeded, skipped, paused, dead ...).",
    ["rule", "status"],
)
STEP_LATENCY = Histogram(
    "ppw_step_latency_seconds",
    "Duration of one rule step, by step type.",
    ["step_type"],
    buckets=STEP_BUCKETS,
)

# Timers (waiting runs) ----------------------------------------------------------------------------
TIMERS_PENDING = Gauge(
    "ppw_timers_pending",
    "Runs waiting for their moment (the wait step), as the scheduler's leader last counted.",
    multiprocess_mode="mostrecent",
)
TIMERS_FIRED = Counter("ppw_timers_fired_total", "Waiting runs woken when their moment came.")
TIMER_LATENESS = Histogram(
    "ppw_timer_lateness_seconds",
    "How long after its moment a waiting run was woken.",
    buckets=(0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 15.0, 60.0, 300.0),
)

ALARMS_PENDING = Gauge(
    "ppw_alarms_pending",
    "Date-relative and 'for' triggers waiting for their moment, as the scheduler's leader last counted.",
    multiprocess_mode="mostrecent",
)
ALARMS_RUNG = Counter("ppw_alarms_rung_total", "Date-relative and 'for' triggers whose moment came.")
ALARM_LATENESS = Histogram(
    "ppw_alarm_lateness_seconds",
    "How long after its moment a date-relative or 'for' trigger rang.",
    buckets=(0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 15.0, 60.0, 300.0),
)

# Queues and deliveries ----------------------------------------------------------------------------
DLQ_SIZE = Gauge(
    "ppw_dlq_messages",
    "Entries in a dead-letter store, by queue ('runs': rule runs waiting for `ppw dlq replay`).",
    ["queue"],
    multiprocess_mode="mostrecent",
)
WEBHOOK_DELIVERIES = Counter(
    "ppw_webhook_deliveries",
    "Outbound webhook and Slack deliveries, by hook name and result (ok, retry, failed).",
    ["hook", "result"],
)

ALL = (
    POLLS,
    CURSOR_LAG,
    LAST_POLL_SUCCESS,
    RECONCILES,
    LAST_RECONCILE_SUCCESS,
    TIMERS_PENDING,
    TIMERS_FIRED,
    TIMER_LATENESS,
    ALARMS_PENDING,
    ALARMS_RUNG,
    ALARM_LATENESS,
    EVENTS,
    HELD_BATCHES,
    API_CALLS,
    API_LATENCY,
    TOKEN_EXPIRY,
    RULES_LOADED,
    RULE_ERRORS,
    RULE_LOAD_ERRORS,
    CUSTOM_FIELD_LABELS_MISSING,
    RULE_RUNS,
    STEP_LATENCY,
    DLQ_SIZE,
    WEBHOOK_DELIVERIES,
)

# Dependencies and the connection's tokens (appended) -----------------------------------------------
DEPENDENCY_UP = Gauge(
    "ppw_dependency_up",
    "Whether a service this process depends on answered its latest check: 1 yes, 0 no, by dependency "
    "('state': the state store, 'broker': the message broker); checked on every /metrics scrape and "
    "/readyz probe.",
    ["dependency"],
    multiprocess_mode="mostrecent",
)
TOKEN_REAUTH_REQUIRED = Gauge(
    "ppw_token_reauth_required",
    "1 when PracticePanther refused the connection's refresh token and `ppw auth login` is needed, "
    "else 0 (as of the latest read of the stored tokens).",
    ["connection"],
    multiprocess_mode="mostrecent",
)

# ALL is inferred above as a tuple of exactly its items; metrics appended here extend it.
ALL = (*ALL, DEPENDENCY_UP, TOKEN_REAUTH_REQUIRED)  # type: ignore[assignment]

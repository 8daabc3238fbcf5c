"""Prometheus metrics: one prefix, base units, ``_total`` counters, bounded labels only.

Labels are leg, status, result, op, outcome: never a number, id or user. Every label set is
created at import so dashboards see zeros instead of gaps.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

from stasis_app import __version__
from stasis_app.domain.policy import Rule
from stasis_app.domain.request import LIVE_STATUSES, LegName, Result, Status

REGISTRY = CollectorRegistry(auto_describe=True)

# The (status, result) pairs a row can end with.
FINAL_OUTCOMES = (
    (Status.COMPLETED, Result.ANSWERED),
    *((Status.FAILED, r) for r in Result if r not in (Result.ANSWERED, Result.CANCELLED)),
    (Status.CANCELLED, Result.CANCELLED),
)
LEG_RESULTS = ("answered", "busy", "no_answer", "rejected", "failed", "cancelled")
ARI_OPS = (
    "originate",
    "hangup",
    "answer",
    "ring",
    "ring_stop",
    "get_channel",
    "list_channels",
    "get_variable",
    "create_bridge",
    "add_channels",
    "destroy_bridge",
    "get_bridge",
    "list_bridges",
    "get_config",
    "put_config",
    "delete_config",
    "ping",
    "info",
    "application",
)
INBOUND_OUTCOMES = (
    "created",
    "debounced",
    "no_identity",
    "anonymous",
    "bad_cli",
    "bad_cld",
    "limited",
    "error",
)
POLICY_RULES = tuple(rule.value for rule in Rule)

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
_ANSWER_BUCKETS = (0.5, 1, 2, 3, 5, 8, 13, 20, 30, 45, 60, 90)
_TALK_BUCKETS = (5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200)

BUILD = Info("twoway_build", "Version of the running service", registry=REGISTRY)
BUILD.info({"version": __version__})

CLAIMED = Counter(
    "twoway_requests_claimed_total", "Rows claimed from callback_requests", registry=REGISTRY
)
ORIGINATED = Counter("twoway_legs_originated_total", "Legs originated", ["leg"], registry=REGISTRY)
LEG_OUTCOMES = Counter(
    "twoway_leg_outcomes_total",
    "How legs ended their ringing phase",
    ["leg", "result"],
    registry=REGISTRY,
)
FINISHED = Counter(
    "twoway_callbacks_finished_total",
    "Callbacks that reached a final status",
    ["status", "result"],
    registry=REGISTRY,
)
RETRIES = Counter(
    "twoway_retries_scheduled_total", "Failed attempts sent back to pending", registry=REGISTRY
)
LEASES_LOST = Counter(
    "twoway_leases_lost_total",
    "Live requests whose lease another instance took over: this one stopped driving them",
    registry=REGISTRY,
)
LIVE = Gauge(
    "twoway_live_requests",
    "Requests this instance is working on, by status",
    ["status"],
    registry=REGISTRY,
)
QUEUE_DUE = Gauge("twoway_queue_due", "Pending rows whose next_call has come", registry=REGISTRY)
QUEUE_PENDING = Gauge("twoway_queue_pending", "All pending rows", registry=REGISTRY)
PICKUP = Histogram(
    "twoway_pickup_latency_seconds",
    "From a row becoming due (insert or next_call) to its leg-A originate",
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
ANSWER_DELAY = Histogram(
    "twoway_answer_delay_seconds",
    "From originate to answer, by leg",
    ["leg"],
    buckets=_ANSWER_BUCKETS,
    registry=REGISTRY,
)
TALK_TIME = Histogram(
    "twoway_talk_time_seconds",
    "Bridged time of completed callbacks",
    buckets=_TALK_BUCKETS,
    registry=REGISTRY,
)
ARI_LATENCY = Histogram(
    "twoway_ari_request_seconds",
    "ARI REST request latency, by operation",
    ["op"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
ARI_ERRORS = Counter(
    "twoway_ari_errors_total",
    "ARI REST requests that failed (HTTP >= 400 but 404, or transport error)",
    ["op"],
    registry=REGISTRY,
)
ARI_CONNECTED = Gauge(
    "twoway_ari_connected", "1 while the ARI event WebSocket is up", registry=REGISTRY
)
ARI_RECONNECTS = Counter(
    "twoway_ari_reconnects_total", "ARI WebSocket reconnects", registry=REGISTRY
)
LISTEN_CONNECTED = Gauge(
    "twoway_db_listen_connected", "1 while the LISTEN connection is up", registry=REGISTRY
)
LISTEN_RECONNECTS = Counter(
    "twoway_db_listen_reconnects_total", "LISTEN connection reconnects", registry=REGISTRY
)
INBOUND = Counter(
    "twoway_inbound_triggers_total",
    "Inbound ani_2way_ calls, by outcome",
    ["outcome"],
    registry=REGISTRY,
)
POLICY_REFUSALS = Counter(
    "twoway_policy_refusals_total",
    "Requests and inbound triggers refused by the destination policy or a limit, by rule",
    ["rule"],
    registry=REGISTRY,
)
API_AUTH_OUTCOMES = ("rejected", "throttled")
API_AUTH_FAILURES = Counter(
    "twoway_api_auth_failures_total",
    "API calls refused for their credentials: rejected (401), or throttled (429) because the "
    "client address failed too often",
    ["outcome"],
    registry=REGISTRY,
)


def _initialise_labels() -> None:
    for leg in LegName:
        ORIGINATED.labels(leg)
        ANSWER_DELAY.labels(leg)
        for result in LEG_RESULTS:
            LEG_OUTCOMES.labels(leg, result)
    for status, result in FINAL_OUTCOMES:
        FINISHED.labels(status, result)
    for status in LIVE_STATUSES:
        LIVE.labels(status)
    for op in ARI_OPS:
        ARI_LATENCY.labels(op)
        ARI_ERRORS.labels(op)
    for outcome in INBOUND_OUTCOMES:
        INBOUND.labels(outcome)
    for rule in POLICY_RULES:
        POLICY_REFUSALS.labels(rule)
    for outcome in API_AUTH_OUTCOMES:
        API_AUTH_FAILURES.labels(outcome)


_initialise_labels()


def observe_ari(op: str, seconds: float, status: int | None) -> None:
    """Observer for ``AriRest``: latency per operation, errors per operation.

    A 404 is no error here: hanging up a channel that the far end already hung up is normal.
    """
    ARI_LATENCY.labels(op).observe(seconds)
    if status is None or (status >= 400 and status != 404):
        ARI_ERRORS.labels(op).inc()

"""Every Prometheus metric livegate exports, in one place (names by Prometheus conventions: ``livegate_``
prefix, base units, ``_total`` counters). Labels have bounded cardinality: never a session id.

Both processes expose them on their metrics port (``LIVEGATE_METRICS_LISTEN``); docs/metrics.md lists them.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import Counter, Gauge, Histogram, Info

# -- the tenant label ---------------------------------------------------------------------------------
OTHER_TENANT = "other"
_labeled_tenants: set[str] = set()


def label_tenants(names: Iterable[str]) -> None:
    """Tenants the configuration names (``livegate.tenants.named``): each gets its own ``tenant`` label value.
    Called by each front and worker as it starts (a union: an in-process dev stack holds both)."""
    _labeled_tenants.update(names)


def tenant_label(tenant: str) -> str:
    """The ``tenant`` label of a tenant: its name if the configuration names it, else ``other``, so the label's
    cardinality is bounded by the configuration, never by the identities that call. Every metric with a
    ``tenant`` label is set through this."""
    return tenant if tenant in _labeled_tenants else OTHER_TENANT


LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0)
SECONDS_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0)

BUILD = Info("livegate_build", "livegate version and process role")

# -- sessions ---------------------------------------------------------------------------------------
# `protocol`: the caller's, grpc or websocket (service/ws/); empty on a worker, which relays the same either way
SESSIONS_ACTIVE = Gauge("livegate_sessions_active", "Live sessions held by this process",
                        ["role", "state", "model", "tenant", "protocol"])
SESSIONS_STARTED = Counter("livegate_sessions_started_total", "Sessions created at the front",
                           ["model", "tenant", "protocol"])
SESSIONS_ENDED = Counter("livegate_sessions_ended_total", "Sessions ended, by outcome (ok or a stable error reason)",
                         ["model", "tenant", "outcome", "protocol"])
SETUP_SECONDS = Histogram("livegate_setup_seconds", "From the caller's setup to setup_complete",
                          ["model"], buckets=SECONDS_BUCKETS)
FIRST_RESPONSE_SECONDS = Histogram("livegate_first_response_seconds",
                                   "From the end of a user turn to the model's first response",
                                   ["model"], buckets=SECONDS_BUCKETS)

# -- the relay ----------------------------------------------------------------------------------------
ADDED_LATENCY_SECONDS = Histogram(
    "livegate_added_latency_seconds",
    "Latency the gateway adds to a message: c2s = front receive -> upstream send, s2c = upstream receive -> front write",
    ["direction"], buckets=LATENCY_BUCKETS)
MESSAGES = Counter("livegate_messages_total", "Messages relayed", ["role", "direction", "kind"])
MESSAGE_BYTES = Counter("livegate_message_bytes_total", "Bytes relayed (serialized protobuf)", ["role", "direction", "kind"])

# -- upstream -------------------------------------------------------------------------------------------
UPSTREAM_CONNECTS = Counter("livegate_upstream_connects_total", "Upstream WebSocket connections",
                            ["flavour", "result"])
UPSTREAM_GO_AWAYS = Counter("livegate_upstream_go_aways_total", "go_away messages from the upstream", ["flavour"])
UPSTREAM_RESUMES = Counter("livegate_upstream_resumes_total", "Upstream connections renewed with a resumption handle",
                           ["flavour", "reason", "result"])
UPSTREAM_RESUME_GAP_SECONDS = Histogram("livegate_upstream_resume_gap_seconds",
                                        "Time without an upstream while it was renewed", ["flavour"],
                                        buckets=SECONDS_BUCKETS)
UPSTREAM_CLOSES = Counter("livegate_upstream_closes_total", "Upstream WebSocket closes by code and classification",
                          ["flavour", "code", "reason"])

# -- durability -----------------------------------------------------------------------------------------
TAKEOVERS = Counter("livegate_worker_takeovers_total", "Sessions taken over from a dead or draining worker", ["cause"])
TAKEOVER_SECONDS = Histogram("livegate_worker_takeover_seconds",
                             "From the previous owner's last heartbeat to the session relaying again",
                             buckets=SECONDS_BUCKETS)
REATTACHES = Counter("livegate_reattaches_total", "Caller reattaches to a live session", ["result"])
REPLAYED_MESSAGES = Counter("livegate_replayed_messages_total", "Server messages replayed to reattaching callers")
STALE_ENTRIES = Counter("livegate_stale_outbox_entries_total",
                        "Outbox entries from a worker that had lost the session (an older epoch), dropped by the front")

# -- capacity and quota ---------------------------------------------------------------------------------
WORKER_CAPACITY = Gauge("livegate_worker_capacity", "Sessions this worker can hold")
WORKER_SESSIONS = Gauge("livegate_worker_sessions", "Sessions this worker holds")
ADMISSION_WAIT_SECONDS = Histogram("livegate_admission_wait_seconds", "Time a new session waited for admission",
                                   ["tenant"], buckets=SECONDS_BUCKETS)
ADMISSION_REJECTIONS = Counter("livegate_admission_rejections_total", "Sessions refused admission", ["tenant", "reason"])
QUOTA_HEADROOM = Gauge("livegate_quota_headroom", "Upstream sessions still available under a cap", ["scope"])

# -- tokens ---------------------------------------------------------------------------------------------
TOKENS = Counter("livegate_tokens_total", "Tokens reported by the upstream's usage_metadata",
                 ["model", "tenant", "direction", "modality"])

# -- redis ----------------------------------------------------------------------------------------------
REDIS_ERRORS = Counter("livegate_redis_errors_total", "Redis operations that failed", ["role", "op"])
REDIS_BATCH_COMMANDS = Histogram("livegate_redis_batch_commands",
                                 "Commands per data-plane pipeline (batching: higher under load is cheaper per frame)",
                                 ["role"], buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024))

# -- budgets (service/budget.py) ------------------------------------------------------------------------
BUDGET_REFUSALS = Counter("livegate_budget_refusals_total",
                          "Client messages and Connects refused by a byte or time budget (the caller gets the status)",
                          ["kind", "reason"])
BUDGET_REFUSED_BYTES = Counter("livegate_budget_refused_bytes_total", "Bytes of the client messages refused by a budget",
                               ["kind", "reason"])
BUDGET_THROTTLED_SECONDS = Counter("livegate_budget_throttled_seconds_total",
                                   "Time callers' streams were not read because a budget was spent (backpressure)",
                                   ["budget"])
PENDING_CONNECTS = Gauge("livegate_pending_connects", "Connects on this front that have not sent their first message")

# -- process health -------------------------------------------------------------------------------------
# a paused or blocked event loop (GC, blocking work, CPU throttling, a VM stall, SIGSTOP): what the heartbeat
# TTL must outlast (livegate/looplag.py; docs/durability.md "Pauses")
EVENT_LOOP_LAG_SECONDS = Histogram(
    "livegate_event_loop_lag_seconds", "How late the event loop ran a timer: the length of each loop stall",
    ["role"], buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0))
HEARTBEAT_AGE_SECONDS = Gauge("livegate_heartbeat_age_seconds",
                              "Age of the oldest heartbeat of a live peer (a registry member) this process sees",
                              ["role", "peer_role"])
MEMBERSHIP_LOST = Counter("livegate_membership_lost_total",
                          "Times this process found itself declared dead by the fleet (paused past the heartbeat "
                          "TTL) and rejoined under a new identity", ["role"])

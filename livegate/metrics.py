"""Every Prometheus metric livegate exports, in one place (names by Prometheus conventions: ``livegate_``
prefix, base units, ``_total`` counters). Labels have bounded cardinality: never a session id.

Both processes expose them on their metrics port (``LIVEGATE_METRICS_LISTEN``); docs/metrics.md lists them.
Each process exports only its role's metrics (:func:`export_only`), with no ``_created`` series. Label values are
lower-case snake_case. A labelled counter whose label values are known is exported at 0 before its first event
(:func:`preinit`, :func:`session_started`, :func:`session_claimed`): Prometheus's ``increase()`` over a series
created by its first increment sees nothing, so a first close, refusal or error would never show on a dashboard.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, Info, disable_created_metrics

from livegate import errors
from livegate.v1 import gateway_pb2 as gw
from livegate.v1 import live_pb2 as live

disable_created_metrics()  # no `<counter>_created` series: a timestamp per series that no dashboard reads

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

# -- which process exports what ---------------------------------------------------------------------------
# everything else is exported by both roles; the in-process dev stack (every role in one process) keeps all
FRONT_ONLY = (SESSIONS_STARTED, SESSIONS_ENDED, SETUP_SECONDS, REATTACHES, REPLAYED_MESSAGES, STALE_ENTRIES,
              ADMISSION_WAIT_SECONDS, ADMISSION_REJECTIONS, QUOTA_HEADROOM, BUDGET_REFUSALS, BUDGET_REFUSED_BYTES,
              BUDGET_THROTTLED_SECONDS, PENDING_CONNECTS)
WORKER_ONLY = (FIRST_RESPONSE_SECONDS, UPSTREAM_CONNECTS, UPSTREAM_GO_AWAYS, UPSTREAM_RESUMES,
               UPSTREAM_RESUME_GAP_SECONDS, UPSTREAM_CLOSES, TAKEOVERS, TAKEOVER_SECONDS, WORKER_CAPACITY,
               WORKER_SESSIONS, TOKENS)


def export_only(role: str) -> None:
    """A process that is only a ``front`` or only a ``worker`` (``livegate front|worker``, at start): the other
    role's metrics leave the registry, so a front's ``/metrics`` shows no worker gauges at 0."""
    for collector in WORKER_ONLY if role == "front" else FRONT_ONLY:
        with contextlib.suppress(KeyError):
            REGISTRY.unregister(collector)


# -- label values known in advance (pre-set at 0) ----------------------------------------------------------
FLAVOURS = ("gemini", "vertex")
PROTOCOLS = ("grpc", "websocket")  # a caller's (service/caller.py)
SESSION_OUTCOMES = ("ok", "caller_lost", "closed_by_admin", "session_lost", "reattached_elsewhere", "slow_reader",
                    "payload_too_large", "c2s_log_full", "no_worker", "upstream_unavailable", "upstream_closed",
                    *sorted({r.lower() for _, r in errors.close_classes() if r != "resume"}))
RESUME_REASONS = ("go_away", "upstream_close", "takeover", "migrate")  # workers/relay.py; `upstream_close_<code>` cut
TAKEOVER_CAUSES = ("dead_worker", "drain")
ADMISSION_REASONS = ("admission_full", "rate_limited")
THROTTLE_BUDGETS = ("messages", "session_bytes", "tenant_bytes", "audio", "c2s_log")
# (kind, reason) of every budget refusal service/budget.py and service/session.py make
BUDGET_REFUSAL_KINDS = (
    *((kind, "payload_too_large") for kind in ("setup", "client_content", "audio", "video", "media_chunks", "text",
                                               "tool_response", "realtime_input")),
    ("audio", "audio_chunk_too_long"), ("c2s_log", "c2s_log_full"), ("connect", "too_many_pending_connects"),
    ("connect", "setup_timeout"))
TOKEN_DIRECTIONS = ("prompt", "response")
TOKEN_MODALITIES = tuple(v.name.lower() for v in live.ModalityTokenCount.DESCRIPTOR.fields_by_name["modality"]
                         .enum_type.values if v.number)
C2S_KINDS = tuple(f.name for f in gw.ClientMessage.DESCRIPTOR.oneofs_by_name["message"].fields
                  if f.name not in ("setup", "reattach"))  # what may follow setup (service/validate.py)
S2C_KINDS = tuple(f.name for f in gw.ServerMessage.DESCRIPTOR.oneofs_by_name["message"].fields
                  if f.name not in ("go_away", "session", "drain")) + ("usage_metadata",)
REDIS_OPS = ("retry", "pipeline")


def _tenants() -> list[str]:
    return sorted(_labeled_tenants | {OTHER_TENANT})


def preinit(role: str) -> None:
    """Every series of ``role``'s labelled counters whose label values are known at start, at 0 (call after the
    process labelled its tenants, :func:`label_tenants`). Idempotent."""
    for op in REDIS_OPS:
        REDIS_ERRORS.labels(role, op)
    MEMBERSHIP_LOST.labels(role)
    if role == "front":
        REATTACHES.labels("ok")
        for tenant in _tenants():
            for reason in ADMISSION_REASONS:
                ADMISSION_REJECTIONS.labels(tenant, reason)
        for kind, reason in BUDGET_REFUSAL_KINDS:
            BUDGET_REFUSALS.labels(kind, reason)
            if reason in ("payload_too_large", "c2s_log_full"):  # the refusals that turn bytes away
                BUDGET_REFUSED_BYTES.labels(kind, reason)
        for budget in THROTTLE_BUDGETS:
            BUDGET_THROTTLED_SECONDS.labels(budget)
        for kind in C2S_KINDS:
            MESSAGES.labels("front", "c2s", kind)
            MESSAGE_BYTES.labels("front", "c2s", kind)
        return
    for flavour in FLAVOURS:
        UPSTREAM_GO_AWAYS.labels(flavour)
        for result in ("ok", "error"):
            UPSTREAM_CONNECTS.labels(flavour, result)
        for reason in RESUME_REASONS:
            for result in ("ok", "error"):
                UPSTREAM_RESUMES.labels(flavour, reason, result)
        for code, label in errors.close_classes():
            UPSTREAM_CLOSES.labels(flavour, str(code), label.lower())
    for cause in TAKEOVER_CAUSES:
        TAKEOVERS.labels(cause)
    for kind in S2C_KINDS:
        MESSAGES.labels("worker", "s2c", kind)
        MESSAGE_BYTES.labels("worker", "s2c", kind)


_started: set[tuple[str, str]] = set()
_claimed: set[tuple[str, str]] = set()


def session_started(model: str, tenant: str, protocol: str) -> None:
    """A session created at the front: counted. The first of its model and tenant label also sets, for every
    protocol, that pair's row of ``livegate_sessions_started_total`` and its rows of
    ``livegate_sessions_ended_total`` for every known outcome at 0 (bounded: models are validated before a
    session is created, tenants go through :func:`tenant_label`)."""
    label = tenant_label(tenant)
    if (model, label) not in _started:
        _started.add((model, label))
        for p in PROTOCOLS:
            SESSIONS_STARTED.labels(model, label, p)
            for outcome in SESSION_OUTCOMES:
                SESSIONS_ENDED.labels(model, label, outcome, p)
    SESSIONS_STARTED.labels(model, label, protocol).inc()


def session_claimed(model: str, tenant: str) -> None:
    """A session a worker relays: its model/tenant's rows of ``livegate_tokens_total`` at 0 (``tenant``: the
    label the front decided, in the session record)."""
    key = (model, tenant)
    if key not in _claimed:
        _claimed.add(key)
        for direction in TOKEN_DIRECTIONS:
            for modality in TOKEN_MODALITIES:
                TOKENS.labels(*key, direction, modality)

"""Fleet-wide admission control: concurrent upstream sessions capped per scope and per tenant, in Redis.

API (the front acquires, the owning worker renews and releases; docs/admission.md has the rules)::

    admission = Admission(redis, AdmissionConfig.from_file(settings.admission_file))  # or config=None
    lease = await admission.acquire(tenant, scope, deadline_s)   # waits fairly, or raises GatewayError
    str(lease) -> "<id>:<tenant>:<scope>" (percent-encoded), Lease.parse(text) -> Lease
    await admission.renew_many(leases)    # the worker's heartbeat: one pipeline, one script per scope
    await admission.release(lease)        # the session's end (idempotent)
    await admission.on_upstream_quota_exceeded(scope)  # an upstream 1011 quota close: shrink the cap
    await admission.headroom(scope)       # sessions still admissible (the livegate_quota_headroom gauge)

Errors: ``RESOURCE_EXHAUSTED`` ``ADMISSION_FULL`` (the deadline passed while waiting) and ``RATE_LIMITED``
(the tenant's session-creation token bucket is empty), both retryable with ``retry_after_s``.

The front acquires before creating the session and stores ``str(lease)`` in the record; the owning worker
renews it every heartbeat and releases it when the session ends. A takeover keeps the lease (the new owner
renews it; a renewal puts back a lease that expired meanwhile). Leases expire ``lease_ttl_s`` after their last
renewal, so a SIGKILLed process holds its slots for at most that long.

A scope is a string naming one upstream limit, ``<route>/<model>`` (``default/gemini-live-2.5-flash``). The admission rule,
for tenant ``t`` with ``u_t`` live leases, guaranteed share ``g_t`` and optional max ``m_t``, ``U`` live leases
in the scope and ``C`` its effective cap::

    admit  iff  U < C  and  (m_t is None or u_t < m_t)
                and ( u_t < g_t                                   -- within its guarantee
                      or U + sum(max(0, g_s - u_s) for listed s != t) < C )   -- borrowing free capacity

Waiters are served in start-time fair order (round robin across tenants, FIFO within a tenant), skipping a
tenant the rule refuses. Every state change is one Lua script over keys that share the scope's hash tag.
Without a config (``config=None``) everything is admitted and Redis is never touched; a scope missing from
the config is not capped (the tenant's rate limit still applies).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import logging
import random
import secrets
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, unquote

import grpc
from redis.exceptions import NoScriptError

from livegate import metrics
from livegate.admission.config import AdmissionConfig, ScopeConfig
from livegate.cleanups import Cleanups
from livegate.errors import GatewayError
from livegate.redis.keys import admission_keys, rate_bucket
from livegate.redis.connect import AnyRedis

logger = logging.getLogger(__name__)

POLL_MIN_S = 0.02  # a waiter's first re-check; doubles (with jitter) up to POLL_MAX_S
POLL_MAX_S = 0.3


# -- leases ---------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Lease:
    """One admitted session's slot. ``str(lease)`` is what the session record stores."""

    id: str
    scope: str
    tenant: str

    def __str__(self) -> str:
        return f"{self.id}:{quote(self.tenant, safe='')}:{quote(self.scope, safe='')}"

    @classmethod
    def parse(cls, text: str) -> Lease:
        lid, tenant, scope = text.split(":")
        return cls(lid, unquote(scope), unquote(tenant))


from livegate.admission.scripts import _ACQUIRE, _GIVE_UP, _QUOTA, _RATE, _RELEASE, _RENEW, _STATUS


class _Script:
    def __init__(self, text: str) -> None:
        self.text = text
        self.sha = hashlib.sha1(text.encode()).hexdigest()

    async def __call__(self, redis: Any, keys: Iterable[str], args: Iterable[Any]) -> Any:
        k, a = list(keys), list(args)
        try:
            return await redis.evalsha(self.sha, len(k), *k, *a)
        except NoScriptError:
            return await redis.eval(self.text, len(k), *k, *a)


ACQUIRE, RELEASE, GIVE_UP, QUOTA, STATUS = map(_Script, (_ACQUIRE, _RELEASE, _GIVE_UP, _QUOTA, _STATUS))
RENEW, RATE = _RENEW, _Script(_RATE)  # RENEW is sent with EVAL in a pipeline


def _set(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def retry_after_s(*, waiting: int, live: int, hold_ms: int) -> float:
    """When a refused caller may find a slot: sessions end at about ``live / hold`` per second and the
    waiters queued (the refused one included) need that many ends. 5 s without history; within [1, 300]."""
    if hold_ms < 0:
        return 5.0
    return round(min(300.0, max(1.0, waiting * hold_ms / 1000 / max(live, 1))), 1)


class Admission:
    """Admission control for one process. Holds no connection of its own; the only tasks it starts are the
    give-backs of a cancelled waiter's place, which ``aclose`` waits for (bounded)."""

    def __init__(self, redis: AnyRedis | None, config: AdmissionConfig | None) -> None:
        self.redis = redis
        self.config = config
        self._waiting: dict[str, asyncio.Future[None]] = {}  # lease id -> done when a script here granted it
        self._cleanups = Cleanups("admission")

    async def aclose(self, timeout_s: float) -> None:
        """Let the give-backs in flight reach Redis (before the owner closes its connection)."""
        await self._cleanups.aclose(timeout_s)

    def __repr__(self) -> str:
        scopes = len(self.config.scopes) if self.config else 0
        return f"<Admission scopes={scopes} local_waiters={len(self._waiting)}>"

    def _scope(self, scope: str) -> ScopeConfig | None:
        return self.config.scopes.get(scope) if self.config else None

    def _args(self, sc: ScopeConfig) -> list[Any]:
        assert self.config is not None
        return [int(self.config.lease_ttl_s * 1000), int(self.config.waiter_ttl_s * 1000),
                int(self.config.recover_interval_s * 1000), *sc.script_args()]

    async def _run(self, script: _Script, scope: str, sc: ScopeConfig, *op: Any) -> Any:
        return await script(self.redis, admission_keys(scope), [*self._args(sc), *op])

    def _wake(self, granted: Iterable[Any]) -> None:
        """Wake the waiters of this process that a script just granted a lease (others find it by polling)."""
        for g in granted:
            fut = self._waiting.get(g.decode() if isinstance(g, bytes) else str(g))
            if fut is not None:
                _set(fut)

    # -- acquire ----------------------------------------------------------------------------------------
    async def acquire(self, tenant: str, scope: str, deadline_s: float) -> Lease:
        """A lease on one upstream session slot of ``scope`` for ``tenant``, waiting fairly up to
        ``deadline_s`` seconds. Raises RATE_LIMITED at once, ADMISSION_FULL at the deadline."""
        lease = Lease(secrets.token_hex(12), scope, tenant)
        if self.config is None:
            return lease
        if not tenant or "\0" in tenant:
            raise ValueError(f"bad tenant name {tenant!r}")
        await self._take_token(tenant)
        sc = self._scope(scope)
        if sc is None:
            return lease
        loop = asyncio.get_running_loop()
        start = loop.time()
        deadline = start + max(0.0, deadline_s)
        member: bytes | str = ""
        delay = POLL_MIN_S
        settled = False
        try:
            while True:
                # A plain future and a timer, not wait_for(event.wait()): on 3.11 wait_for returns normally
                # when the event is set as the task is cancelled, and the cancellation is lost.
                woken = self._waiting[lease.id] = loop.create_future()
                r = await self._run(ACQUIRE, scope, sc, tenant, lease.id, member)
                member = r[1]
                self._wake(r[7:])
                if r[0] == -1:  # only a waiter that gave up is fenced, and this one has not
                    raise RuntimeError(f"admission: waiter {lease.id} of scope {scope} was withdrawn while waiting")
                if r[0] == 1:
                    settled = True
                    break
                left = deadline - loop.time()
                if left <= 0:
                    kept = await self._run(GIVE_UP, scope, sc, lease.id, member, "1", tenant)
                    settled = True
                    if kept[0] == 1:
                        break
                    self._wake(kept[1:])
                    raise self._full(tenant, scope, sc, deadline_s, waiting=int(r[2]), live=int(r[3]),
                                     cap=int(r[4]), hold_ms=int(r[5]), tenant_live=int(r[6]))
                timer = loop.call_later(min(delay * random.uniform(0.5, 1.0), left), _set, woken)
                try:
                    await woken
                finally:
                    timer.cancel()
                delay = min(delay * 2, POLL_MAX_S)
        finally:
            self._waiting.pop(lease.id, None)
            if not settled:  # cancelled, or Redis failed: leave no waiter and no lease behind
                await self._cleanups.shielded(self._abandon(scope, sc, tenant, lease.id, member), f"give up {lease.id}")
        waited = loop.time() - start
        metrics.ADMISSION_WAIT_SECONDS.labels(metrics.tenant_label(tenant)).observe(waited)
        logger.debug("admission: tenant %s admitted to scope %s after %.3fs (lease %s)", tenant, scope, waited,
                     lease.id)
        return lease

    async def _abandon(self, scope: str, sc: ScopeConfig, tenant: str, lease_id: str, member: bytes | str) -> None:
        """Withdraw a waiter (``member`` is "" if its first ACQUIRE was never answered: the script finds it by
        lease id) and any lease granted to it; an ACQUIRE of it still on its way is refused when it arrives."""
        try:
            r = await self._run(GIVE_UP, scope, sc, lease_id, member, "0", tenant)
            self._wake(r[1:])
        except Exception:  # the waiter entry and any granted lease expire on their own
            logger.warning("admission: could not withdraw waiter %s of scope %s", lease_id, scope, exc_info=True)

    def _full(self, tenant: str, scope: str, sc: ScopeConfig, deadline_s: float, *, waiting: int, live: int,
              cap: int, hold_ms: int, tenant_live: int) -> GatewayError:
        retry = retry_after_s(waiting=waiting, live=live, hold_ms=hold_ms)
        share = sc.share(tenant)
        if share.max is not None and tenant_live >= share.max:
            why = f"tenant {tenant!r} holds its maximum of {share.max} sessions in scope {scope!r}"
        else:
            why = f"scope {scope!r} is at its limit ({live} of {cap} upstream sessions in use"
            why += f", reduced from {sc.cap} after upstream quota errors)" if cap < sc.cap else ")"
        metrics.ADMISSION_REJECTIONS.labels(metrics.tenant_label(tenant), "admission_full").inc()
        logger.debug("admission: tenant %s refused in scope %s after %.1fs: %s", tenant, scope, deadline_s, why)
        return GatewayError(
            grpc.StatusCode.RESOURCE_EXHAUSTED, "ADMISSION_FULL",
            f"{why}; waited {deadline_s:.1f}s with {max(0, waiting - 1)} other session(s) queued. Retry in "
            f"~{retry:.0f}s or with a longer deadline; if this persists, ask the operator to raise the cap or this "
            "tenant's guaranteed share.",
            retryable=True, retry_after_s=retry)

    async def _take_token(self, tenant: str) -> None:
        assert self.config is not None
        limit = self.config.rate_for(tenant)
        if limit is None:
            return
        ok, wait_ms = await RATE(self.redis, [rate_bucket(tenant)], [limit.per_s, limit.burst])
        if ok == 1:
            return
        retry = max(0.001, int(wait_ms) / 1000)
        metrics.ADMISSION_REJECTIONS.labels(metrics.tenant_label(tenant), "rate_limited").inc()
        raise GatewayError(
            grpc.StatusCode.RESOURCE_EXHAUSTED, "RATE_LIMITED",
            f"tenant {tenant!r} creates sessions faster than its limit ({limit.per_s:g}/s, burst {limit.burst}); "
            f"retry in {retry:.2f}s", retryable=True, retry_after_s=round(retry, 3))

    # -- holders ----------------------------------------------------------------------------------------
    async def renew(self, lease: Lease) -> bool:
        """Extend the lease by the lease TTL. False if it had expired (it is put back: the session is real)."""
        return not await self.renew_many([lease])

    async def renew_many(self, leases: Iterable[Lease]) -> list[Lease]:
        """Renew a worker's leases in one pipeline (one script per scope). Returns those that had expired
        and were put back."""
        if self.config is None or self.redis is None:
            return []
        by_scope: dict[str, list[Lease]] = {}
        for lease in leases:
            if self._scope(lease.scope) is not None:
                by_scope.setdefault(lease.scope, []).append(lease)
        if not by_scope:
            return []
        ttl_ms = int(self.config.lease_ttl_s * 1000)
        pipe = self.redis.pipeline(transaction=False)
        for scope, group in by_scope.items():
            keys = admission_keys(scope)[:3]
            pipe.eval(RENEW, 3, *keys, ttl_ms, *[x for lease in group for x in (lease.id, lease.tenant)])
        replies = await pipe.execute()
        back = {b.decode() if isinstance(b, bytes) else str(b) for reply in replies for b in reply}
        lost = [lease for group in by_scope.values() for lease in group if lease.id in back]
        if lost:
            logger.warning("admission: %d lease(s) had expired and were put back: %s", len(lost),
                           ", ".join(f"{x.scope}/{x.tenant}/{x.id}" for x in lost[:5]))
        return lost

    async def release(self, lease: Lease) -> bool:
        """Free the lease's slot (and hand it to the next waiter). Idempotent; False if it was not live."""
        sc = self._scope(lease.scope)
        if sc is None:
            return False
        r = await self._run(RELEASE, lease.scope, sc, lease.id)
        self._wake(r[1:])
        return bool(r[0] == 1)

    # -- quota feedback -----------------------------------------------------------------------------------
    async def on_upstream_quota_exceeded(self, scope: str) -> int | None:
        """An upstream 1011 "exceeded your current quota" close: the real cap is below the configured one.
        Shrinks the scope's effective cap to max(1, live leases - 1) (call it before releasing the failed
        session's lease); it grows back by one per ``recover_interval_s``. Returns the new cap."""
        sc = self._scope(scope)
        if sc is None:
            return None
        new, live = await self._run(QUOTA, scope, sc)
        logger.warning("admission: upstream quota exceeded in scope %s with %d live sessions; cap %d -> %d",
                       scope, live, sc.cap, new)
        metrics.QUOTA_HEADROOM.labels(scope).set(max(0, int(new) - int(live)))
        return int(new)

    async def headroom(self, scope: str) -> int | None:
        """Sessions the scope can still admit (effective cap - live leases); None if it is not capped."""
        sc = self._scope(scope)
        if sc is None:
            return None
        cap, live, _ = await self._run(STATUS, scope, sc)
        room = max(0, int(cap) - int(live))
        metrics.QUOTA_HEADROOM.labels(scope).set(room)
        return room

    async def export_headroom(self) -> None:
        """Set ``livegate_quota_headroom`` for every configured scope (the front's heartbeat calls this)."""
        if self.config is None:
            return
        for scope in self.config.scopes:
            await self.headroom(scope)

    async def status(self, scope: str) -> dict[str, int] | None:
        """Effective cap, live leases and waiters of a scope (for tests and operators)."""
        sc = self._scope(scope)
        if sc is None:
            return None
        cap, live, waiting = await self._run(STATUS, scope, sc)
        return {"cap": int(cap), "live": int(live), "waiting": int(waiting)}


def admission_from_settings(redis: AnyRedis, settings: Any) -> Admission:
    """The fleet's admission control as configured (``admission_file`` / ``admission_json``), or admit-all."""
    if settings.admission_file:
        return Admission(redis, AdmissionConfig.from_file(settings.admission_file))
    if settings.admission_json:
        return Admission(redis, AdmissionConfig.from_dict(json.loads(settings.admission_json), source="admission_json"))
    return Admission(None, None)


def scope_of(route: str, model: str) -> str:
    """The admission scope of a session: its upstream route (a project/region/key) and model."""
    return f"{route}/{model}"

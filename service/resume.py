"""A new session that resumes a conversation by its gateway handle (``setup.session_resumption.handle``) while
the session that held the conversation is still alive. The Live API refuses a resume while the earlier
upstream socket is open (1011), so the earlier session ends first, or the resume is refused at once:

- **detached** (its caller is gone, within its reattach grace): it is ended now (close kind ``resumed``: no
  wait for a turn in flight), and the new session is created once its keys are gone, which its worker does
  after closing the upstream socket; the new session then resumes upstream at its first attempt;
- **closing** (its caller half-closed, or a close is in progress): the same wait;
- **attached to a live caller**: FAILED_PRECONDITION ``SESSION_STILL_ATTACHED``. A stream that has just broken
  is detached by its front within a moment (its cancellation notice, then one script): the answer waits up to
  ``RESUME_SETTLE_S`` for that before refusing; and up to the heartbeat TTL more while that front misses its
  heartbeats (a crashed or paused front: the fleet detaches its sessions when it declares it dead).

The handle names its session in Redis (``sid`` in ``lg:{h:<token>}``, written with the upstream handle by the
worker, and moved to the new session when a resume creates one).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

import grpc

from livegate.errors import GatewayError
from livegate.redis import keys, records
from service.session import FrontSession

if TYPE_CHECKING:
    from service.server import Front

logger = logging.getLogger(__name__)

RESUME_SETTLE_S = 1.0  # how long a stream that just broke may take to be detached by its front
POLL_S = 0.02


async def end_earlier_session(front: Front, tenant: str, sid: str, wait_s: float) -> None:
    """Return once session ``sid`` (the conversation's earlier session) is gone: end it if its caller is gone,
    wait (up to ``wait_s``) while it closes, refuse if its caller is still attached."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    closed = False
    while True:
        state = await front.redis.hget(keys.session_meta(sid), "state")
        if state is None:
            return
        waited = loop.time() - started
        if state.decode() == records.DETACHED and not closed:
            closed = True
            await front.cleanups.shielded(FrontSession(front, sid, tenant).request_close("resumed"),
                                          f"end {sid}: its conversation resumes in a new session")
            continue
        if state.decode() in (records.DETACHED, records.CLOSING):
            if waited >= wait_s:
                logger.warning("session %s: still ending after %.1fs; the resume of its conversation goes on", sid,
                               waited)
                return
        elif waited >= RESUME_SETTLE_S:
            # attached through a front that stopped beating (crashed, or paused): the fleet detaches its sessions
            # once it is declared dead (heartbeat_ttl_s), so wait for that rather than refuse a caller whose
            # stream is in fact gone
            if waited >= front.settings.heartbeat_ttl_s + RESUME_SETTLE_S or not await _front_silent(front, sid):
                raise still_attached(sid)
        await asyncio.sleep(POLL_S)


async def _front_silent(front: Front, sid: str) -> bool:
    """Whether the front session ``sid`` is attached through has missed its heartbeats (or was reaped)."""
    holder = await front.redis.hget(keys.session_meta(sid), "front")
    if not holder:
        return False
    beat_ms = await front.redis.zscore(keys.FRONTS, holder)
    if beat_ms is None:
        return True  # reaped: the workers are detaching its sessions
    return records.now_ms() - beat_ms > 2 * front.settings.heartbeat_interval_s * 1000


def still_attached(sid: str) -> GatewayError:
    return GatewayError(
        grpc.StatusCode.FAILED_PRECONDITION, "SESSION_STILL_ATTACHED",
        f"this resumption handle's conversation is still held by session {sid}, whose caller's stream is open; "
        "close that stream first (half-close it, or cancel it), or reattach to that session with its id and "
        "reattach token, instead of resuming it in a new session")

"""Whether a session's caller is there. A caller lost without closing leaves its session *detached* for the
reattach grace; a reattach brings it back; at the end of the grace the relay ends the session. A mixin of
:class:`workers.relay.SessionRelay`.

The state lives in the session record too (``state`` detached, ``grace_until_ms``), written by the front that
lost the caller, or here when the worker notices that the caller's front died. So a worker that claims the
session later (a takeover, a drain's handover, or the first claim of a session whose caller left before any
worker took it) keeps the same deadline, and a session that was closing when its owner died is closed by the
next one.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from livegate.redis import records
from workers.events import InboxItem, SessionLost

logger = logging.getLogger(__name__)


class CallerPresence:
    """Expects: sid, epoch, worker (save_detached, attach_front), record, queue."""

    sid: str
    worker: Any
    record: records.SessionRecord
    queue: asyncio.Queue[InboxItem]

    def _init_presence(self) -> None:
        self.detached = False  # the caller is gone; the session waits for a reattach
        self._grace_timer: asyncio.TimerHandle | None = None
        r = self.record
        if r.state == records.DETACHED:  # claimed while its caller was away: the same grace goes on here
            self.queue.put_nowait(InboxItem("detach", max(0, r.grace_until_ms - records.now_ms()), r.front.encode()))
        elif r.state == records.CLOSING:  # a close asked of the previous owner: done here
            self.queue.put_nowait(InboxItem(r.close_kind or "close", 0))

    def _grace_over(self) -> bool:
        """Claimed after its caller's grace ended: the session ends without an upstream connection."""
        return self.record.state == records.DETACHED and self.record.grace_until_ms <= records.now_ms()

    async def _on_detach(self, item: InboxItem) -> None:
        """``item``: index = the grace in ms, payload = the front that lost the caller."""
        front = item.payload.decode()
        if front != self.record.front or self.detached:
            return  # a stale detach: the caller already reattached through another front
        until_ms = records.now_ms() + item.index
        # written only while the record still names that front: a reattach through another front may have
        # landed in Redis before this detach reached us (its attach is queued behind it)
        saved = await self.worker.save_detached(self, front, until_ms)
        if saved == 0:
            raise SessionLost()
        if saved < 0:
            logger.info("session %s: a stale detach from %s ignored (the caller reattached elsewhere)", self.sid, front)
            return
        self.detached = True
        grace_s = item.index / 1000
        logger.info("session %s: caller detached; waiting %.0fs for a reattach", self.sid, grace_s)
        self._grace_timer = asyncio.get_running_loop().call_later(
            grace_s, self.queue.put_nowait, InboxItem("grace_expired", 0))
        self.record.state, self.record.grace_until_ms = records.DETACHED, until_ms

    async def _on_attach(self, front: str) -> None:
        self.detached = False
        self.record.state = records.ACTIVE
        if self._grace_timer is not None:
            self._grace_timer.cancel()
            self._grace_timer = None
        await self.worker.attach_front(self, front)

"""When a session's upstream connection is renewed: on go_away (at the first resumable point, at the latest a
margin before the deadline), when the worker drains (a planned migration), and when the upstream stalls during a
turn; whether an upstream close is resumed at all; and the resumption handles a renewal resumes with (stored in
Redis, fenced by epoch; the caller gets a gateway handle that maps to them). A mixin of
:class:`workers.relay.SessionRelay`, which owns the state it reads."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from typing import Any

from livegate import metrics
from livegate.errors import classify_close
from livegate.v1 import gateway_pb2 as gw
from workers.events import GoAwayReceived, Migrate, SessionLost, UpstreamClosed

logger = logging.getLogger(__name__)


class RenewalPolicy:
    """Expects: sid, worker, record, options, _renew (Event), _renew_timer, _migrating, _resumable, _handle,
    _handle_index, _conn_base, _consumed_guess, _gw_handle, next_index, _turn_open, _last_frame, _m, _emit."""

    _renew: asyncio.Event
    _renew_timer: asyncio.TimerHandle | None
    sid: str
    worker: Any
    record: Any
    options: Any
    _m: dict[str, Any]

    def _resume_or_raise(self, code: int | None, reason: str | None) -> None:
        """An upstream close (or failed connect): counted, then resumed by the caller, or ended here with the
        typed error its classification gives."""
        decision = classify_close(code, reason)
        label = "resume" if decision.resume else (decision.error.reason if decision.error else "end")
        metrics.UPSTREAM_CLOSES.labels(self.record.flavour, str(code or 1006), label.lower()).inc()
        if not decision.resume:
            assert decision.error is not None
            raise decision.error from None

    async def _renew_waiter(self) -> None:
        await self._renew.wait()
        raise Migrate() if self._migrating else GoAwayReceived()

    def _on_migrate(self) -> None:
        """Hand over at the first resumable point, at the latest after half the drain timeout."""
        self._migrating = True
        if self._at_resumable_point():
            self._renew.set()
            return
        if self._renew_timer is not None:
            self._renew_timer.cancel()
        self._renew_timer = asyncio.get_running_loop().call_later(
            self.worker.settings.drain_timeout_s / 2, self._renew.set)

    async def _stall_watchdog(self) -> None:
        """A silent upstream in the middle of a turn (socket open, nothing sent) is renewed like a drop."""
        stall_s = self.worker.settings.upstream_stall_s
        while True:
            await asyncio.sleep(stall_s / 4)
            if self._turn_open and time.monotonic() - self._last_frame > stall_s:
                logger.warning("session %s: upstream silent for %.1fs during a turn; renewing it", self.sid, stall_s)
                raise UpstreamClosed(None, "upstream stalled")

    def _reset_renewal(self) -> None:
        self._renew.clear()
        self._resumable = False
        if self._renew_timer is not None:
            self._renew_timer.cancel()
            self._renew_timer = None

    def _on_go_away(self, time_left_s: float) -> None:
        """Plan the renewal: at the first resumable point (no turn in flight, nothing sent since the handle),
        at the latest ``go_away_margin_s`` before the upstream's deadline."""
        self.record.go_aways += 1
        self._m["go_away"].inc()  # type: ignore[attr-defined]
        if self._renew_timer is None:
            delay = max(0.0, time_left_s - self.worker.settings.go_away_margin_s)
            self._renew_timer = asyncio.get_running_loop().call_later(delay, self._renew.set)
        if self._at_resumable_point():
            self._renew.set()

    async def _on_resumption_update(self, msg: gw.ServerMessage) -> None:
        upd = msg.session_resumption_update
        self._resumable = upd.resumable
        if upd.resumable and upd.new_handle:
            self._handle = upd.new_handle
            # Vertex (transparent) says what the handle covers; the Gemini API does not: then only the messages the
            # model has answered are taken as covered (a message sent just before the update may not be in the
            # snapshot: counting it would lose it on a resume; sending it again is what the Live API expects)
            self._handle_index = (self._conn_base + upd.last_consumed_client_message_index
                                  if upd.HasField("last_consumed_client_message_index") else self._consumed_guess)
            ok = await self.worker.cleanups.shielded(self.worker.save_handle(self, self._handle, self._handle_index),
                                                     f"save the handle of {self.sid}")
            if not ok:
                raise SessionLost()
            if (self._renew_timer is not None or self._migrating) and self._at_resumable_point():
                self._renew.set()  # a go_away or a migration is pending and this is a clean point
        if self.record.wants_resumption:
            out = gw.ServerMessage()
            out.session_resumption_update.resumable = upd.resumable
            if upd.resumable and upd.new_handle:
                if not self._gw_handle:
                    self._gw_handle = "lgh_" + secrets.token_urlsafe(24)
                await self.worker.publish_handle(self, self._gw_handle, upd.new_handle)
                out.session_resumption_update.new_handle = self._gw_handle
            await self._emit(out)

    def _at_resumable_point(self) -> bool:
        return bool(self._handle) and self._resumable and self.next_index - 1 <= self._handle_index

    def _resume_failed(self, reason: str) -> None:
        """A renewal (not a session's first connect) that ends the session: counted as a failed resume."""
        if reason != "new":  # "new": the session's first connect (its retries too), not a renewal
            metrics.UPSTREAM_RESUMES.labels(self.record.flavour, _reason_label(reason), "error").inc()

    async def _renewed(self, reason: str, gap_s: float) -> None:
        logger.info("session %s: upstream renewed after %s in %.3fs", self.sid, reason, gap_s)
        metrics.UPSTREAM_RESUMES.labels(self.record.flavour, _reason_label(reason), "ok").inc()
        self._m["gap"].observe(gap_s)  # type: ignore[attr-defined]
        if self.options.upstream_events:
            out = gw.ServerMessage()
            out.upstream_renewed.reason = reason
            out.upstream_renewed.gap.FromNanoseconds(int(gap_s * 1e9))
            await self._emit(out)


def _reason_label(reason: str) -> str:
    """A renewal's reason as a bounded label: ``upstream_close_<code>`` -> ``upstream_close``."""
    return "upstream_close" if reason.startswith("upstream_close_") else reason

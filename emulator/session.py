"""One WebSocket connection: auth, setup, the receive loop, limits, faults and the close.

The generation side (model turns, tools, interruptions) lives in `turns.Generator`; audio input
(VAD / manual activity) in `listening.Listener`.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import TYPE_CHECKING, Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State
from websockets.frames import Opcode

from . import closes, frames
from .auth import Credential
from .closes import SessionClosed
from .conversation import Conversation
from .faults import FaultRule
from .listening import Listener
from .routes import Route
from .setup import SessionSetup, parse_setup
from .tasks import TaskSet
from .turns import Generator
from .wire import Message, decode_frame, invalid

if TYPE_CHECKING:
    from .server import EmulatorServer

logger = logging.getLogger(__name__)


class Session:
    def __init__(self, server: EmulatorServer, ws: ServerConnection, route: Route, credential: Credential) -> None:
        self.server = server
        self.config = server.config
        self.ws = ws
        self.route = route
        self.flavour = route.flavour
        self.credential = credential
        self.id = str(uuid.uuid4())
        binary = self.config.frames == "binary" or (self.config.frames == "auto" and self.flavour == "gemini")
        self.encoder = frames.Encoder(binary=binary, pretty=self.config.pretty)
        self.setup: SessionSetup | None = None
        self.conv: Conversation | None = None
        self.index = 0  # client message index; setup = 0
        self.opened_at = time.monotonic()
        self.go_away_sent_at: float | None = None
        self.messages_after_go_away = 0
        self.tasks = TaskSet(f"session {self.id[:8]}")
        self.rules: list[FaultRule] = []
        self.generator: Generator | None = None
        self.listener: Listener | None = None
        self._unstall = asyncio.Event()
        self._unstall.set()
        self._closing = False
        self._close_code: int | None = None
        self._counted_quota = False
        self._limits_changed = asyncio.Event()

    def __repr__(self) -> str:
        conv = self.conv.id if self.conv else None
        return f"Session({self.id[:8]} {self.flavour} conv={conv} index={self.index} closing={self._closing})"

    # --- lifecycle ------------------------------------------------------------------------------

    async def run(self) -> None:
        self.server.faults.subscribe(self)
        try:
            self.rules = self.server.faults.claim((self.id,), new_connection=True)
            await self._fault_point("immediately")
            await self._open()
            await self._receive_loop()
        except SessionClosed as exc:
            await self.close(exc.code, exc.reason)
        except ConnectionClosed:
            pass
        except TimeoutError:  # no setup within setup_timeout_s
            await self.close(*closes.DEADLINE)
        except Exception:
            logger.exception("session %s crashed", self.id)
            await self.close(*closes.INTERNAL)
        finally:
            await self._finish()

    async def _open(self) -> None:
        async with asyncio.timeout(self.config.setup_timeout_s):
            raw = await self.ws.recv()
        refusal = self.server.check_credential(self.credential)  # the real service answers after setup
        if refusal:  # before the size: an unauthenticated message is only ever read to be refused
            raise SessionClosed.of(refusal)
        self._check_size(raw)
        msg = decode_frame(raw)
        if msg.kind != "setup":
            raise invalid("first message must be setup")
        setup = parse_setup(msg.body, self.route, strict_models=self.config.strict_models)
        if not self.server.quota_acquire(self.credential):  # rejected sessions leave no conversation
            raise SessionClosed.of(closes.QUOTA)
        self._counted_quota = True
        conv = self._conversation_for(setup)
        self.setup, self.conv = setup, conv
        conv.connections += 1
        conv.session_ids.append(self.id)
        conv.open_session = self
        conv.record(0, "setup", {"model": setup.model, "resume": bool(setup.resume_handle)})
        self.generator = Generator(self)
        self.listener = Listener(self)
        self.rules += self.server.faults.claim((self.id, conv.id), new_connection=False)
        await self._fault_point("before_setup_complete")
        await self.send(frames.setup_complete(self.flavour, self.id))
        self.tasks.spawn(self._watchdog(), "watchdog")

    def _conversation_for(self, setup: SessionSetup) -> Conversation:
        if not setup.resume_handle:
            conv = Conversation.new(self.flavour, setup.model, self.credential.kind, self.config.conversation_log_limit)
            self.server.register(conv)
            return conv
        snap = self.server.handles.lookup(setup.resume_handle)
        if snap is None or snap.conversation.flavour != self.flavour:
            raise SessionClosed.of(closes.SESSION_NOT_FOUND)
        conv = snap.conversation
        if conv.model != setup.model:
            raise invalid("the model cannot change on resumption")
        if conv.is_open and conv.open_session.ws.state is State.OPEN:  # a closing socket no longer counts
            if self.config.reject_resume_while_open:
                raise SessionClosed.of(closes.UNAVAILABLE)
            old: Session = conv.open_session
            self.tasks.spawn(old.close(1000, ""), "close-previous")
            conv.open_session = None
        conv.history = list(snap.history)
        return conv

    async def _receive_loop(self) -> None:
        assert self.generator is not None and self.listener is not None
        async for raw in self.ws:
            self.index += 1
            if self.go_away_sent_at is not None:
                self.messages_after_go_away += 1
            try:
                self._check_size(raw)
                msg = decode_frame(raw)
            except SessionClosed as exc:
                assert self.conv is not None
                self.conv.record(self.index, "invalid", {"bytes": len(raw), "detail": getattr(exc, "detail", "")})
                raise
            self._record(msg)
            await self._dispatch(msg)
            await self._fault_point("after_messages")

    async def _dispatch(self, msg: Message) -> None:
        gen, listener = self.generator, self.listener
        assert gen is not None and listener is not None
        if msg.kind == "setup":
            raise invalid("setup must be the first and only setup message")
        if msg.kind == "clientContent":
            assert msg.content is not None
            await gen.on_client_content(msg.content)
        elif msg.kind == "realtimeInput":
            for event in msg.realtime:
                await listener.on_event(event)
        elif msg.kind == "toolResponse":
            await gen.on_tool_response(msg.tool_responses)
        elif msg.kind == "contextUpdate":
            assert msg.context_update is not None
            gen.on_context_update(msg.context_update)

    def _check_size(self, raw: str | bytes) -> None:
        if len(raw) > self.config.max_message_bytes:
            raise invalid(f"message of {len(raw)} bytes exceeds {self.config.max_message_bytes}")

    def _record(self, msg: Message) -> None:
        conv = self.conv
        assert conv is not None
        kind, summary = _summarise(msg)
        conv.record(self.index, kind, summary)

    async def close(self, code: int, reason: str) -> None:
        """Closes the socket with (code, reason); idempotent."""
        if self._closing:
            return
        self._closing = True
        self._close_code = code
        self._detach()
        if self.conv is not None:
            self.conv.closes.append({"code": code, "reason": closes.truncate_reason(reason), "by": "server"})
        try:
            await self.ws.close(code, closes.truncate_reason(reason))
        except Exception:  # the transport may already be gone
            pass

    def _detach(self) -> None:
        """The conversation no longer has this socket open (a resume may take over from now on)."""
        conv = self.conv
        if conv is not None and conv.open_session is self:
            conv.open_session = None
            conv.last_closed_at = time.monotonic()

    async def _finish(self) -> None:
        self._detach()
        self.server.faults.unsubscribe(self)
        if self.generator is not None:
            await self.generator.aclose()
        await self.tasks.aclose()
        if self._counted_quota:
            self.server.quota_release(self.credential)
        conv = self.conv
        if conv is not None:
            if not self._closing:
                rcvd = self.ws.protocol.close_rcvd
                conv.closes.append(
                    {"code": rcvd.code if rcvd else 1006, "reason": rcvd.reason if rcvd else "", "by": "client"}
                )
        self.server.forget(self)

    # --- sending --------------------------------------------------------------------------------

    async def send(self, frame: dict[str, Any]) -> None:
        if not self._unstall.is_set():  # a stall fault: hold frames until it ends or the socket closes
            waiters = {asyncio.ensure_future(self._unstall.wait()), asyncio.ensure_future(self.ws.wait_closed())}
            try:
                await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waiters:
                    w.cancel()
        await self.ws.send(self.encoder.encode(frame))

    @property
    def closing(self) -> bool:
        return self._closing

    # --- limits ---------------------------------------------------------------------------------

    def limits_changed(self) -> None:
        self._limits_changed.set()

    async def _watchdog(self) -> None:
        """goAway ahead of the connection deadline, then the close; session caps without compression."""
        cfg, conv, setup = self.config, self.conv, self.setup
        assert conv is not None and setup is not None
        deadline = self.opened_at + cfg.connection_lifetime_s
        go_away_at = deadline - cfg.go_away_lead_s
        while not self._closing:
            now = time.monotonic()
            cap_at = float("inf")
            if not setup.compression:
                cap = cfg.video_session_cap_s if conv.video_seen else cfg.audio_session_cap_s
                cap_at = conv.started_at + cap
            if self.go_away_sent_at is None and now >= go_away_at:
                self.go_away_sent_at = now
                conv.go_aways += 1
                left = max(0.0, deadline - now)
                await self.send(frames.go_away(round(left) if left >= 1 else left))  # "50s" like the service
                continue
            if now >= cap_at:
                await self.close(*closes.DEADLINE)
                return
            if now >= deadline:
                ignored = self.messages_after_go_away > 0
                await self.close(*(closes.GO_AWAY_IGNORED if ignored else closes.DEADLINE))
                return
            next_at = min(cap_at, deadline if self.go_away_sent_at is not None else go_away_at)
            self._limits_changed.clear()
            try:
                await asyncio.wait_for(self._limits_changed.wait(), timeout=max(0.0, next_at - now) + 0.001)
            except TimeoutError:
                pass

    # --- faults ---------------------------------------------------------------------------------

    def on_fault_added(self, rule: FaultRule) -> None:
        """A rule added while this session is live: take it if it targets this session."""
        ids = (self.id, self.conv.id if self.conv else "")
        if rule.target != "all" and rule.target not in ids:
            return
        self.server.faults.consume(rule)
        self.rules.append(rule)
        if rule.when == "immediately":
            self.tasks.spawn(self._fire_detached(rule), f"fault {rule.id}")

    async def _fire_detached(self, rule: FaultRule) -> None:
        try:
            await self._fire(rule)
        except SessionClosed as exc:
            await self.close(exc.code, exc.reason)
        except ConnectionClosed:  # a drop: the transport is gone, the receive loop ends by itself
            pass

    async def fault_point(self, when: str) -> None:
        await self._fault_point(when)

    async def _fault_point(self, when: str) -> None:
        for rule in list(self.rules):
            if rule.when != when:
                continue
            if when == "after_messages" and self.index < rule.after_messages:
                continue
            self.rules.remove(rule)
            await self._fire(rule)

    async def _fire(self, rule: FaultRule) -> None:
        logger.info("session %s: fault %s (%s at %s)", self.id[:8], rule.id, rule.action, rule.when)
        if rule.action == "close":
            raise SessionClosed(rule.code, rule.reason)
        if rule.action == "drop":
            self._closing = True
            self._detach()
            if self.conv is not None:
                self.conv.closes.append({"code": 1006, "reason": "", "by": "fault-drop"})
            transport = self.ws.transport
            if transport is not None:
                transport.abort()
            raise ConnectionClosed(None, None)
        if rule.action == "stall":
            self._unstall.clear()
            if rule.duration_s > 0:
                asyncio.get_running_loop().call_later(rule.duration_s, self._unstall.set)
        elif rule.action == "delay_pong":
            self._delay_pongs(rule.duration_s)

    def _delay_pongs(self, delay_s: float) -> None:
        protocol = self.ws.protocol
        original = protocol.send_frame
        loop = asyncio.get_running_loop()

        def send_frame(frame: Any) -> None:
            if frame.opcode is not Opcode.PONG:
                original(frame)
                return

            def later() -> None:
                if protocol.state.name == "OPEN":
                    original(frame)
                    self.ws.send_data()

            loop.call_later(delay_s, later)

        protocol.send_frame = send_frame  # type: ignore[method-assign]


def _summarise(msg: Message) -> tuple[str, dict[str, Any]]:
    if msg.kind == "clientContent":
        assert msg.content is not None
        return msg.kind, {
            "turns": len(msg.content.turns),
            "text": " ".join(t.text for t in msg.content.turns if t.text),
            "roles": [t.role for t in msg.content.turns],
            "turn_complete": msg.content.turn_complete,
        }
    if msg.kind == "realtimeInput":
        names = [e.kind for e in msg.realtime] or ["empty"]
        summary: dict[str, Any] = {}
        for e in msg.realtime:
            if e.kind in ("audio", "video"):
                summary[f"{e.kind}_bytes"] = summary.get(f"{e.kind}_bytes", 0) + len(e.data)
                summary["mime_type"] = e.mime_type
            elif e.kind == "text":
                summary["text"] = e.text
        return "realtimeInput." + "+".join(names), summary
    if msg.kind == "toolResponse":
        return msg.kind, {"ids": [r.id for r in msg.tool_responses], "names": [r.name for r in msg.tool_responses]}
    if msg.kind == "contextUpdate":
        cu = msg.context_update
        assert cu is not None
        return msg.kind, {"system_instruction": cu.system_instruction, "tools": cu.tools is not None}
    return msg.kind, {}

"""The Python client for livegate, shaped like google-genai's Live API.

    client = livegate.client.Client("localhost:50051")
    async with client.aio.live.connect(model="gemini-live-2.5-flash", config={"response_modalities": ["TEXT"]}) as session:
        await session.send_client_content(turns={"role": "user", "parts": [{"text": "Hello"}]})
        async for message in session.receive():
            print(message.text)

A google-genai example ports by changing the line that builds the client (docs/client.md lists what still
differs): configs and arguments may be google-genai ``types`` objects or plain dicts; ``connect()`` returns once
the setup is complete (``session.setup_complete``); ``receive()`` yields google-genai ``LiveServerMessage``
objects (views with the same accessors without google-genai; the raw ``livegate.v1.ServerMessage`` protos with
``receive_raw()``); failures raise ``google.genai.errors.APIError`` subclasses (:mod:`.errors`).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import warnings
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import grpc

from livegate.client import client_messages as cm
from livegate.client.errors import api_errors, from_rpc_error
from livegate.client.server_messages import is_turn_end, setup_complete_of, to_genai
from livegate.v1 import gateway_pb2 as gw
from livegate.v1 import gateway_pb2_grpc

logger = logging.getLogger(__name__)

INBOX_LEN = 64  # server messages read ahead of the caller; beyond that the gRPC flow control holds the gateway
RESEND_LEN = 512  # client messages kept to send again after a broken stream (~10 s of 20 ms audio frames)
_REATTACH_CODES = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED, grpc.StatusCode.INTERNAL,
                   grpc.StatusCode.UNKNOWN)
_END = object()  # the stream ended normally


def _broken_stream(err: grpc.aio.AioRpcError) -> bool:
    """A transport failure (worth a reattach), not a status the gateway decided: those carry google.rpc
    details (ErrorInfo) and are final for this stream."""
    if err.code() not in _REATTACH_CODES:
        return False
    return not any(k == "grpc-status-details-bin" for k, _ in (err.trailing_metadata() or ()))


class LiveSession:
    """One livegate session: the gRPC stream, shaped like google-genai's ``AsyncSession``.

    A reader task owned by the session reads the stream into a small inbox, so cancelling a ``receive()``
    (as ``asyncio.wait_for`` or a task group does) loses nothing and leaves the session usable, as a WebSocket
    ``recv()`` would. With ``auto_reattach`` (the default) a broken stream (network, a front restarting or
    draining) is replaced transparently: the session reattaches with its id, token and last seen ``seq`` and
    receives every server message it missed, in order."""

    def __init__(self, call: grpc.aio.StreamStreamCall, connect: Callable[[], Any] | None = None, *,
                 auto_reattach: bool = True, reattach_timeout_s: float = 30.0) -> None:
        self._call = call
        self._connect = connect  # () -> a new Connect call, for reattaching
        self.auto_reattach = auto_reattach and connect is not None
        self.reattach_timeout_s = reattach_timeout_s
        self.reattaches = 0
        self.session_id = ""
        self.reattach_token = ""
        self.last_seq = 0
        self.setup_complete: Any = None
        self._inbox: asyncio.Queue[Any] = asyncio.Queue(INBOX_LEN)
        self._final: Any = None  # _END or the exception that ended the stream, once the caller has seen it
        self._reader: asyncio.Task[None] | None = None
        self._reattach_lock = asyncio.Lock()  # held by a reattach, and by each write (they never interleave)
        self._closing = False
        # client messages sent since the last reattach, with their index (the gateway counts the same way):
        # a reattach's SessionInfo.client_index says which of them the broken stream lost, to send again
        self.sent_index = 0
        self._unconfirmed: collections.deque[tuple[int, gw.ClientMessage]] = collections.deque(maxlen=RESEND_LEN)
        self.resent = 0

    def __repr__(self) -> str:
        return f"<LiveSession {self.session_id} seq={self.last_seq}>"

    async def _start(self, setup: Any, options: gw.SessionOptions | None) -> None:
        """Send the setup, read the session's id, then wait for ``setup_complete`` (as google-genai's connect)."""
        first = gw.ClientMessage(setup=setup)
        if options is not None:
            first.options.CopyFrom(options)
        await self._call.write(first)
        info = await self._call.read()
        if info is grpc.aio.EOF or info.WhichOneof("message") != "session":
            raise RuntimeError("livegate did not open a session")
        self.session_id = info.session.session_id
        self.reattach_token = info.session.reattach_token
        self._reader = asyncio.create_task(self._read_loop(), name=f"livegate-reader-{self.session_id}")
        msg = await self._next()
        if msg is _END:
            raise RuntimeError(f"livegate session {self.session_id} ended before its setup completed")
        if msg.WhichOneof("message") != "setup_complete":
            raise RuntimeError(f"livegate sent {msg.WhichOneof('message')} before setup_complete")
        self.setup_complete = setup_complete_of(msg)

    # -- the stream ---------------------------------------------------------------------------------

    async def _read_loop(self) -> None:
        """Read every server message into the inbox, reattaching on a broken stream or a front's ``drain``;
        the stream's end (or the status that ended it) goes in last."""
        try:
            while True:
                call = self._call
                try:
                    msg = await call.read()
                except grpc.aio.AioRpcError as err:
                    if await self._superseded(call):
                        continue
                    if self._closing or not self.auto_reattach or not _broken_stream(err):
                        raise
                    logger.info("livegate stream broke (%s); reattaching", err.code().name)
                    await self._replace(call)
                    continue
                except asyncio.CancelledError:
                    if call is not self._call:  # a writer's reattach replaced (and cancelled) this call
                        continue
                    if self._closing or not self.auto_reattach or asyncio.current_task().cancelling():  # type: ignore[union-attr]
                        raise
                    await self._replace(call)  # a caller's cancelled write cancelled the call
                    continue
                if msg is grpc.aio.EOF:
                    if await self._superseded(call):
                        continue
                    await self._inbox.put(_END)
                    return
                if msg.seq:
                    if msg.seq <= self.last_seq:
                        continue  # read on a stream being replaced, and replayed on the new one
                    self.last_seq = msg.seq
                kind = msg.WhichOneof("message")
                if kind == "drain" and self.auto_reattach and not self._closing:
                    await self._replace(call)
                    continue
                if kind == "session":
                    continue  # the answer to a reattach
                await self._inbox.put(msg)
        except Exception as err:  # noqa: BLE001 - whatever ended the stream goes to the caller
            await self._inbox.put(err)

    async def _next(self) -> Any:
        """The next server message, or _END; raises what ended the stream (again on every later call)."""
        item = self._final if self._final is not None else await self._inbox.get()
        if item is _END or isinstance(item, BaseException):
            self._final = item
        if isinstance(item, grpc.aio.AioRpcError):
            raise from_rpc_error(item) from item
        if isinstance(item, BaseException):
            raise item
        return item

    async def _superseded(self, call: grpc.aio.StreamStreamCall) -> bool:
        """Whether a reattach replaced ``call`` (waiting for one in progress, which ends the old stream with
        ABORTED REATTACHED_ELSEWHERE or cancels it)."""
        async with self._reattach_lock:
            return call is not self._call

    async def _replace(self, broken: grpc.aio.StreamStreamCall) -> None:
        async with self._reattach_lock:
            if self._call is broken:  # else someone else already reattached
                await self._reattach()

    async def reattach(self) -> None:
        """Replace the stream: reattach to this session on a (possibly different) front, retrying with
        backoff for up to ``reattach_timeout_s`` while fronts restart."""
        async with self._reattach_lock:
            await self._reattach()

    async def _reattach(self) -> None:
        assert self._connect is not None, "reattach needs a connect function"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.reattach_timeout_s
        delay = 0.05
        old = self._call
        while True:
            call = self._connect()
            try:
                await call.write(gw.ClientMessage(reattach=gw.Reattach(
                    session_id=self.session_id, reattach_token=self.reattach_token, last_seq=self.last_seq)))
                first = await call.read()
                if first is grpc.aio.EOF or first.WhichOneof("message") != "session":
                    raise RuntimeError("livegate did not accept the reattach")
                break
            except BaseException as err:
                call.cancel()
                if not isinstance(err, grpc.aio.AioRpcError) or not _broken_stream(err) or loop.time() + delay > deadline:
                    raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
        self._call = call
        old.cancel()
        self.reattaches += 1
        await self._resend(first.session.client_index)
        logger.info("livegate session %s reattached at seq %d", self.session_id, self.last_seq)

    async def _resend(self, accepted: int) -> None:
        """Send again, in order, the messages the broken stream lost: those after the ``accepted`` count."""
        lost = [m for i, m in self._unconfirmed if i > accepted]
        if self.sent_index - accepted > len(lost):
            logger.warning("livegate session %s: %d messages were lost with the broken stream but only the last "
                           "%d are kept to send again", self.session_id, self.sent_index - accepted, len(lost))
        self._unconfirmed.clear()
        self.sent_index = accepted
        for msg in lost:
            self.sent_index += 1
            self._unconfirmed.append((self.sent_index, msg))
            await self._call.write(msg)  # a failure here fails the reattach: the caller's next step retries
            self.resent += 1

    async def _write(self, msg: gw.ClientMessage) -> None:
        if self._closing:
            raise RuntimeError(f"livegate session {self.session_id} is closed")
        with api_errors():
            async with self._reattach_lock:  # a reattach cannot run between the count and the write
                self.sent_index += 1
                self._unconfirmed.append((self.sent_index, msg))
                try:
                    await self._call.write(msg)
                    return
                except grpc.aio.AioRpcError as err:
                    if not self.auto_reattach or not _broken_stream(err):
                        raise
                except (asyncio.InvalidStateError, grpc.aio.UsageError):
                    if not self.auto_reattach or self._closing:
                        raise
                # the stream broke: reattach, which sends again whatever the gateway did not accept (this too)
                await self._reattach()

    # -- sending (google-genai's AsyncSession methods) ------------------------------------------------

    async def send_client_content(self, *, turns: Any = None, turn_complete: bool = True) -> None:
        await self._write(cm.client_content(turns, turn_complete))

    async def send_realtime_input(self, *, media: Any = None, audio: Any = None, audio_stream_end: bool | None = None,
                                  video: Any = None, text: str | None = None, activity_start: Any = None,
                                  activity_end: Any = None) -> None:
        """Exactly one kind per call (ValueError otherwise, with google-genai's message)."""
        await self._write(cm.realtime_input(media=media, audio=audio, audio_stream_end=audio_stream_end, video=video,
                                            text=text, activity_start=activity_start, activity_end=activity_end))

    async def send_tool_response(self, *, function_responses: Any) -> None:
        await self._write(cm.tool_response(function_responses))

    async def send_context_update(self, *, system_instruction: Any = None, tools: Sequence[Any] | None = None) -> None:
        await self._write(cm.context_update(system_instruction, tools))

    async def send(self, *, input: Any = None, end_of_turn: bool | None = False) -> None:  # noqa: A002 - SDK name
        """[Deprecated, as in google-genai] use send_client_content, send_realtime_input or send_tool_response."""
        warnings.warn("The `session.send` method is deprecated and will be removed in a future version (not before "
                      "Q3 2025).\nPlease use one of the more specific methods: `send_client_content`, "
                      "`send_realtime_input`, or `send_tool_response` instead.", DeprecationWarning, stacklevel=2)
        await self._write(cm.legacy_input(input, end_of_turn))

    # -- receiving ----------------------------------------------------------------------------------

    async def receive_raw(self) -> AsyncIterator[gw.ServerMessage]:
        """Every server message (including gateway events such as ``upstream_renewed``) until the session
        ends; reattaches transparently on a broken stream or a front's ``drain``."""
        while (msg := await self._next()) is not _END:
            yield msg

    async def receive(self) -> AsyncIterator[Any]:
        """Messages of the current turn, ending after it completes (as google-genai does)."""
        async for msg in self.receive_raw():
            if msg.WhichOneof("message") in ("upstream_renewed", "setup_complete"):
                continue
            yield to_genai(msg)
            if is_turn_end(msg):
                return

    async def start_stream(self, *, stream: AsyncIterator[bytes], mime_type: str) -> AsyncIterator[Any]:
        """[Deprecated, as in google-genai] send ``stream`` as realtime media chunks while yielding what the
        server sends, until the stream is exhausted."""
        warnings.warn("Setting `AsyncSession.start_stream` is deprecated, and will be removed in a future release "
                      "(not before Q3 2025). Please use the `receive`, and `send_realtime_input`, methods instead.",
                      DeprecationWarning, stacklevel=2)

        async def send_all() -> None:
            async for data in stream:
                await self.send_realtime_input(media={"data": data, "mime_type": mime_type})

        sender = asyncio.create_task(send_all())
        try:
            while not sender.done():
                getter = asyncio.ensure_future(self._next())
                await asyncio.wait([getter, sender], return_when=asyncio.FIRST_COMPLETED)
                if not getter.done():
                    getter.cancel()  # a queue get: cancelling it loses nothing
                    break
                if (msg := getter.result()) is _END:
                    break
                yield to_genai(msg)
            await sender  # raises what the sender raised
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender

    # -- closing ------------------------------------------------------------------------------------

    async def close(self) -> None:
        """End the session: the gateway ends the upstream session, then the stream (bounded, idempotent)."""
        await self.aclose()

    async def aclose(self, timeout_s: float = 5.0) -> None:
        """Half-close and wait (bounded) for the gateway to end the stream, so the session ends cleanly rather
        than waiting detached for a reattach. Idempotent; never raises because the stream already failed."""
        if self._closing:
            return
        self._closing = True
        try:
            with contextlib.suppress(grpc.aio.AioRpcError, asyncio.InvalidStateError, grpc.aio.UsageError):
                await self._call.done_writing()
            if self._reader is not None:  # the stream was open: wait for its end
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(timeout_s):
                        while await self._next() is not _END:
                            pass
        finally:
            self._call.cancel()
            if self._reader is not None:
                self._reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._reader


class _Live:
    def __init__(self, client: Client) -> None:
        self._client = client

    @contextlib.asynccontextmanager
    async def connect(self, *, model: str, config: Any = None,
                      options: gw.SessionOptions | None = None) -> AsyncIterator[LiveSession]:
        """Open a session and return once its setup is complete (``session.setup_complete``), as google-genai
        does; a refusal raises an ``APIError`` here. Leaving the block ends the session (:meth:`LiveSession.aclose`)."""
        stub = self._client.stub()
        session = LiveSession(stub.Connect(metadata=self._client.metadata),
                              lambda: stub.Connect(metadata=self._client.metadata),
                              auto_reattach=self._client.auto_reattach)
        try:
            with api_errors():
                await session._start(cm.build_setup(model, config), options)
            yield session
        finally:
            await session.aclose()


class _Aio:
    def __init__(self, client: Client) -> None:
        self.live = _Live(client)


class Client:
    """``Client(target)`` -> ``client.aio.live.connect(model=..., config=...)``."""

    def __init__(self, target: str, *, credentials: grpc.ChannelCredentials | None = None,
                 metadata: Sequence[tuple[str, str]] = (), auto_reattach: bool = True,
                 options: Sequence[tuple[str, Any]] = ()) -> None:
        """``options``: extra gRPC channel arguments, e.g. ``[("grpc.lb_policy_name", "round_robin")]`` with a
        ``dns:///`` target over the chart's headless Service (client-side balancing across fronts)."""
        self.target = target
        self.auto_reattach = auto_reattach
        self.options = tuple(options)
        self._credentials = credentials
        self.metadata = tuple(metadata)
        self._channel: grpc.aio.Channel | None = None
        self.aio = _Aio(self)

    def channel(self) -> grpc.aio.Channel:
        if self._channel is None:
            opts = [("grpc.max_receive_message_length", 64 * 1024 * 1024), *self.options]
            self._channel = (grpc.aio.secure_channel(self.target, self._credentials, options=opts)
                             if self._credentials else grpc.aio.insecure_channel(self.target, options=opts))
        return self._channel

    def stub(self) -> gateway_pb2_grpc.LiveGatewayStub:
        return gateway_pb2_grpc.LiveGatewayStub(self.channel())

    async def aclose(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = None

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

"""The Python client for livegate, shaped like google-genai's Live API.

    client = livegate.client.Client("localhost:50051")
    async with client.aio.live.connect(model="gemini-live-2.5-flash", config={"response_modalities": ["TEXT"]}) as session:
        await session.send_client_content(turns={"role": "user", "parts": [{"text": "Hello"}]})
        async for message in session.receive():
            print(message.text)

A seed example ports by changing the line that builds the client: configs and arguments may be
google-genai ``types`` objects or plain dicts; ``receive()`` yields google-genai ``LiveServerMessage``
objects when google-genai is installed (``.text``, ``.data``, ``.server_content``, ``.tool_call``), and the
raw ``livegate.v1.ServerMessage`` protos otherwise (or always, with ``receive_raw()``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any

import grpc
import orjson
from google.protobuf import json_format

from livegate.v1 import gateway_pb2 as gw
from livegate.v1 import gateway_pb2_grpc
from livegate.v1 import live_pb2 as live

logger = logging.getLogger(__name__)

try:  # optional: return google-genai types, like the SDK does
    from google.genai import types as genai_types
except ImportError:  # pragma: no cover - exercised only without the extra
    genai_types = None

# LiveConnectConfig fields that live in setup.generation_config on the wire
_GENERATION_KEYS = {
    "response_modalities", "speech_config", "temperature", "top_p", "top_k", "max_output_tokens",
    "candidate_count", "presence_penalty", "frequency_penalty", "seed", "media_resolution",
    "enable_affective_dialog", "thinking_config", "translation_config",
}
_SKIP_KEYS = {"http_options"}
_GATEWAY_KEYS = ("seq", "session", "upstreamRenewed", "drain")


def _plain(obj: Any) -> Any:
    """google-genai pydantic objects -> JSON-able dicts (bytes as base64); dicts/lists recursively."""
    if hasattr(obj, "model_dump"):
        return obj.model_dump(exclude_none=True, mode="json")
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, bytes):
        return base64.b64encode(obj).decode()
    return obj


def _content(value: Any, role: str = "user") -> dict[str, Any]:
    value = _plain(value)
    if isinstance(value, str):
        return {"role": role, "parts": [{"text": value}]}
    return value


def build_setup(model: str, config: Any = None) -> live.BidiGenerateContentSetup:
    """A LiveConnectConfig (object or dict) -> the setup message, as google-genai would send it."""
    cfg = _plain(config) if config is not None else {}
    setup: dict[str, Any] = {"model": model}
    generation: dict[str, Any] = {}
    for key, value in cfg.items():
        if key in _SKIP_KEYS:
            continue
        if key == "generation_config":
            generation.update(value)
        elif key in _GENERATION_KEYS:
            generation[key] = value
        else:
            setup[key] = value
    speech = generation.get("speech_config")
    if isinstance(speech, str):
        generation["speech_config"] = {"voice_config": {"prebuilt_voice_config": {"voice_name": speech}}}
    if generation:
        setup["generation_config"] = generation
    if "system_instruction" in setup:
        setup["system_instruction"] = _content(setup["system_instruction"])
    # the Live API also accepts a single object where a list is expected (as the Vertex docs send tools)
    if isinstance(setup.get("tools"), dict):
        setup["tools"] = [setup["tools"]]
    for tool in setup.get("tools", []):
        if isinstance(tool, dict) and isinstance(tool.get("function_declarations"), dict):
            tool["function_declarations"] = [tool["function_declarations"]]
    msg = live.BidiGenerateContentSetup()
    json_format.ParseDict(setup, msg)
    return msg


_REATTACH_CODES = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED, grpc.StatusCode.INTERNAL,
                   grpc.StatusCode.UNKNOWN)


def _broken_stream(err: grpc.aio.AioRpcError) -> bool:
    """A transport failure (worth a reattach), not a status the gateway decided: those carry google.rpc
    details (ErrorInfo) and are final for this stream."""
    if err.code() not in _REATTACH_CODES:
        return False
    return not any(k == "grpc-status-details-bin" for k, _ in (err.trailing_metadata() or ()))


class LiveSession:
    """One livegate session: the gRPC stream, shaped like google-genai's ``AsyncSession``.

    With ``auto_reattach`` (the default) a broken stream (network, a front restarting or draining) is
    replaced transparently: the session reattaches with its id, token and last seen ``seq`` and receives
    every server message it missed, in order."""

    def __init__(self, call: grpc.aio.StreamStreamCall, connect: Any = None, *, auto_reattach: bool = True,
                 reattach_timeout_s: float = 30.0) -> None:
        self._call = call
        self._connect = connect  # () -> a new Connect call, for reattaching
        self.auto_reattach = auto_reattach and connect is not None
        self.reattach_timeout_s = reattach_timeout_s
        self.reattaches = 0
        self.session_id = ""
        self.reattach_token = ""
        self.last_seq = 0
        self.setup_complete: Any = None

    def __repr__(self) -> str:
        return f"<LiveSession {self.session_id} seq={self.last_seq}>"

    async def _start(self, setup: live.BidiGenerateContentSetup, options: gw.SessionOptions | None) -> None:
        first = gw.ClientMessage(setup=setup)
        if options is not None:
            first.options.CopyFrom(options)
        await self._call.write(first)
        info = await self._read()
        if info is None or info.WhichOneof("message") != "session":
            raise RuntimeError("livegate did not open a session")
        self.session_id = info.session.session_id
        self.reattach_token = info.session.reattach_token

    async def _read(self) -> gw.ServerMessage | None:
        msg = await self._call.read()
        if msg is grpc.aio.EOF:
            return None
        if msg.seq:
            self.last_seq = msg.seq
        return msg

    async def reattach(self) -> None:
        """Replace the stream: reattach to this session on a (possibly different) front, retrying with
        backoff for up to ``reattach_timeout_s`` while fronts restart."""
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
            except grpc.aio.AioRpcError as err:
                call.cancel()
                if not _broken_stream(err) or loop.time() + delay > deadline:
                    raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
        self._call = call
        old.cancel()
        self.reattaches += 1
        logger.info("livegate session %s reattached at seq %d", self.session_id, self.last_seq)

    async def _write(self, msg: gw.ClientMessage) -> None:
        try:
            await self._call.write(msg)
        except (grpc.aio.AioRpcError, asyncio.InvalidStateError, grpc.aio.UsageError):
            if not self.auto_reattach:
                raise
            await self.reattach()
            await self._call.write(msg)

    # -- sending ------------------------------------------------------------------------------------

    async def send_client_content(self, *, turns: Any = None, turn_complete: bool = True) -> None:
        body: dict[str, Any] = {"turn_complete": turn_complete}
        if turns is not None:
            items = turns if isinstance(turns, list) else [turns]
            body["turns"] = [_content(t) for t in items]
        msg = gw.ClientMessage()
        json_format.ParseDict(body, msg.client_content)
        await self._write(msg)

    async def send_realtime_input(self, *, audio: Any = None, video: Any = None, text: str | None = None,
                                  media: Any = None, activity_start: Any = None, activity_end: Any = None,
                                  audio_stream_end: bool | None = None) -> None:
        msg = gw.ClientMessage()
        ri = msg.realtime_input
        if audio is not None:
            _blob(ri.audio, audio)
        elif video is not None:
            _blob(ri.video, video)
        elif media is not None:
            _blob(ri.media_chunks.add(), media)
        elif text is not None:
            ri.text = text
        elif activity_start is not None:
            ri.activity_start.SetInParent()
        elif activity_end is not None:
            ri.activity_end.SetInParent()
        elif audio_stream_end is not None:
            ri.audio_stream_end = bool(audio_stream_end)
        else:
            raise ValueError("send_realtime_input needs exactly one of audio, video, text, media, "
                             "activity_start, activity_end, audio_stream_end")
        await self._write(msg)

    async def send_tool_response(self, *, function_responses: Any) -> None:
        items = function_responses if isinstance(function_responses, (list, tuple)) else [function_responses]
        msg = gw.ClientMessage()
        json_format.ParseDict({"function_responses": [_plain(f) for f in items]}, msg.tool_response)
        await self._write(msg)

    async def send_context_update(self, *, system_instruction: Any = None, tools: Sequence[Any] | None = None) -> None:
        body: dict[str, Any] = {}
        if system_instruction is not None:
            body["system_instruction"] = _content(system_instruction)
        if tools is not None:
            body["tools"] = {"tools": [_plain(t) for t in tools]}
        msg = gw.ClientMessage()
        json_format.ParseDict(body, msg.context_update)
        await self._write(msg)

    # -- receiving ----------------------------------------------------------------------------------

    async def receive_raw(self) -> AsyncIterator[gw.ServerMessage]:
        """Every server message (including gateway events) until the session ends; reattaches transparently
        on a broken stream or a front's ``drain``."""
        while True:
            try:
                msg = await self._read()
            except grpc.aio.AioRpcError as err:
                if not self.auto_reattach or not _broken_stream(err) or not self.session_id:
                    raise
                logger.info("livegate stream broke (%s); reattaching", err.code().name)
                await self.reattach()
                continue
            if msg is None:
                return
            if msg.WhichOneof("message") == "drain" and self.auto_reattach:
                await self.reattach()
                continue
            if msg.WhichOneof("message") == "session":
                continue  # the answer to a reattach
            yield msg

    async def receive(self) -> AsyncIterator[Any]:
        """Messages of the current turn, ending after ``turn_complete`` (as google-genai does)."""
        async for msg in self.receive_raw():
            kind = msg.WhichOneof("message")
            if kind in ("session", "upstream_renewed", "drain"):
                logger.info("livegate event: %s", kind)
                continue
            yield to_genai(msg)
            if kind == "server_content" and msg.server_content.turn_complete:
                return

    async def close(self) -> None:
        """Half-close: the gateway ends the upstream session, then the stream."""
        await self._call.done_writing()

    async def aclose(self, timeout_s: float = 5.0) -> None:
        """Close and wait (bounded) for the gateway to confirm, so the session ends cleanly."""
        try:
            await self._call.done_writing()
            async with asyncio.timeout(timeout_s):
                while await self._call.read() is not grpc.aio.EOF:
                    pass
        except (grpc.aio.AioRpcError, asyncio.TimeoutError, asyncio.InvalidStateError):
            pass


def to_genai(msg: gw.ServerMessage) -> Any:
    """A ServerMessage as google-genai's ``LiveServerMessage`` (the proto itself without google-genai)."""
    if genai_types is None:
        return msg
    d = json_format.MessageToDict(msg)
    for k in _GATEWAY_KEYS:
        d.pop(k, None)
    return genai_types.LiveServerMessage.model_validate_json(orjson.dumps(d))


def _blob(target: live.Blob, value: Any) -> None:
    if isinstance(value, dict):
        data, mime = value.get("data", b""), value.get("mime_type") or value.get("mimeType", "")
    else:
        data, mime = value.data, value.mime_type
    target.mime_type = mime or ""
    target.data = base64.b64decode(data) if isinstance(data, str) else (data or b"")


class _Live:
    def __init__(self, client: Client) -> None:
        self._client = client

    @contextlib.asynccontextmanager
    async def connect(self, *, model: str, config: Any = None,
                      options: gw.SessionOptions | None = None) -> AsyncIterator[LiveSession]:
        stub = self._client.stub()
        call = stub.Connect(metadata=self._client.metadata)
        session = LiveSession(call, lambda: stub.Connect(metadata=self._client.metadata),
                              auto_reattach=self._client.auto_reattach)
        try:
            await session._start(build_setup(model, config), options)
            yield session
            await session.aclose()
        finally:
            call.cancel()


class _Aio:
    def __init__(self, client: Client) -> None:
        self.live = _Live(client)


class Client:
    """``Client(target)`` -> ``client.aio.live.connect(model=..., config=...)``."""

    def __init__(self, target: str, *, credentials: grpc.ChannelCredentials | None = None,
                 metadata: Sequence[tuple[str, str]] = (), auto_reattach: bool = True) -> None:
        self.target = target
        self.auto_reattach = auto_reattach
        self._credentials = credentials
        self.metadata = tuple(metadata)
        self._channel: grpc.aio.Channel | None = None
        self.aio = _Aio(self)

    def channel(self) -> grpc.aio.Channel:
        if self._channel is None:
            opts = [("grpc.max_receive_message_length", 64 * 1024 * 1024)]
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


__all__ = ["Client", "LiveSession", "build_setup", "to_genai", "asyncio"]

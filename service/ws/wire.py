"""The Live API WebSocket wire on the caller's side: the request paths, a client frame -> ``ClientMessage``, a
``ServerMessage`` -> a server frame.

The protos mirror the Live messages field for field, so proto3 JSON (``json_format``) is the translation, as in
``livegate/codec.py`` (the worker's side of the same wire); audio skips it in both directions. Clients may write
keys in camelCase or snake_case, mixed (proto3 JSON parsing takes both), and give a repeated field as a single
object (the Vertex docs do: ``"tools": {"function_declarations": {...}}``). The gateway writes camelCase, int64
as strings, durations as ``"Ns"``, like the real service; as binary frames of UTF-8 JSON (what the Gemini API
sends; google-genai and @google/genai read both kinds, and raw clients that ``.decode()`` every message need
bytes).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import re
from typing import Any

import orjson
from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor

from livegate.errors import GatewayError, invalid_argument
from livegate.v1 import gateway_pb2 as gw

_GEMINI = re.compile(r"^/+ws/+google\.ai\.generativelanguage\.(v1alpha|v1beta|v1)\.GenerativeService\."
                     r"(BidiGenerateContent|BidiGenerateContentConstrained)$")
_VERTEX = re.compile(r"^/+ws/+google\.cloud\.aiplatform\.(v1beta1|v1)\.LlmBidiService/BidiGenerateContent$")


@dataclasses.dataclass(frozen=True)
class Route:
    """The form of the caller's request path. Independent of the upstream a session gets: it only decides the
    flavour of the frames the caller receives (Vertex: ``setupComplete.sessionId``, ``modelTurn.role``,
    ``candidatesTokenCount``)."""

    flavour: str  # gemini | vertex
    version: str
    method: str  # BidiGenerateContent | BidiGenerateContentConstrained


def route_of(path: str) -> Route | None:
    bare = path.split("?", 1)[0]
    m = _GEMINI.match(bare)
    if m:
        return Route("gemini", m.group(1), m.group(2))
    m = _VERTEX.match(bare)
    return Route("vertex", m.group(1), "BidiGenerateContent") if m else None


# -- client frames -----------------------------------------------------------------------------------------

_TOP = {"setup": "setup", "clientContent": "client_content", "realtimeInput": "realtime_input",
        "toolResponse": "tool_response", "contextUpdate": "context_update"}
_TOP.update({v: v for v in list(_TOP.values())})
_OPAQUE = frozenset({"google.protobuf.Struct", "google.protobuf.Value", "google.protobuf.ListValue"})
_KINDS = "setup, clientContent, realtimeInput, toolResponse or contextUpdate"


def _malformed(what: str) -> GatewayError:
    return invalid_argument(f"{what}; a client message is one JSON object with exactly one key: {_KINDS}",
                            "MALFORMED_MESSAGE")


def client_message(frame: str | bytes) -> gw.ClientMessage:
    """One client WebSocket message as a ``ClientMessage``; INVALID_ARGUMENT (MALFORMED_MESSAGE) if it is not
    a Live API client message."""
    try:
        doc = orjson.loads(frame)
    except orjson.JSONDecodeError:
        raise _malformed("the message is not JSON") from None
    if not isinstance(doc, dict) or len(doc) != 1:
        raise _malformed("the message is not a JSON object with one key")
    (key, body), = doc.items()
    name = _TOP.get(key)
    if name is None:
        raise _malformed(f"unknown message {str(key)[:40]!r}")
    if not isinstance(body, dict):
        raise _malformed(f"`{key}` is not a JSON object")
    msg = gw.ClientMessage()
    sub = getattr(msg, name)
    if name == "realtime_input" and _audio_only(body, msg):
        return msg
    try:
        json_format.ParseDict(_as_lists(body, sub.DESCRIPTOR), sub, ignore_unknown_fields=True)
    except (json_format.ParseError, ValueError, TypeError, RecursionError) as exc:
        raise invalid_argument(f"`{key}` is not a valid Live API message: {str(exc)[:300]}", "MALFORMED_MESSAGE") from None
    sub.SetInParent()
    return msg


def _as_lists(body: dict[str, Any], desc: Descriptor) -> dict[str, Any]:
    """``body`` with each repeated message field given as a single object made a one-element list (proto3
    JSON takes only lists; the Live API takes both). Opaque JSON (Struct, Value) is left as it is."""
    out: dict[str, Any] = {}
    for key, value in body.items():
        f = desc.fields_by_name.get(key) or desc.fields_by_camelcase_name.get(key)
        t = f.message_type if f is not None else None
        if t is not None and t.full_name not in _OPAQUE and not t.GetOptions().map_entry:
            if isinstance(value, dict) and f.is_repeated:  # type: ignore[union-attr]
                value = [value]
            if isinstance(value, dict):
                value = _as_lists(value, t)
            elif isinstance(value, list):
                value = [_as_lists(v, t) if isinstance(v, dict) else v for v in value]
        out[key] = value
    return out


def _audio_only(body: dict[str, Any], msg: gw.ClientMessage) -> bool:
    """The per-frame path: ``{"realtimeInput": {"audio": {"mimeType", "data"}}}`` without ``json_format``.
    False (nothing set) for anything else, which then takes the general path."""
    audio = body.get("audio") if len(body) == 1 else None
    if not isinstance(audio, dict) or not set(audio) <= {"data", "mimeType", "mime_type"}:
        return False
    data, mime = audio.get("data", ""), audio.get("mimeType", audio.get("mime_type", ""))
    if not isinstance(data, str) or not isinstance(mime, str):
        return False
    try:
        pcm = b64decode(data)
    except (binascii.Error, ValueError):
        return False
    msg.realtime_input.audio.mime_type = mime
    msg.realtime_input.audio.data = pcm
    return True


_URLSAFE = str.maketrans("-_", "+/")


def b64decode(data: str) -> bytes:
    """Standard or URL-safe base64, padded or not (the Live API takes all four)."""
    if "-" in data or "_" in data:
        data = data.translate(_URLSAFE)
    if len(data) % 4:
        data += "=" * (-len(data) % 4)
    return binascii.a2b_base64(data, strict_mode=True)


# -- server frames -----------------------------------------------------------------------------------------

_VERTEX_USAGE = {"responseTokenCount": "candidatesTokenCount", "responseTokensDetails": "candidatesTokensDetails"}


def server_frame(msg: gw.ServerMessage, flavour: str, sid: str, drain_s: float) -> bytes | None:
    """The Live API frame of a gateway server message for a caller of ``flavour``; None for the gateway's own
    messages the Live API has no frame for (``session``, ``upstream_renewed``). A gateway ``drain`` (this
    front is stopping) is the Live API's ``goAway``: resume with your handle elsewhere."""
    kind = msg.WhichOneof("message")
    if kind in ("session", "upstream_renewed"):
        return None
    if kind == "drain":
        return orjson.dumps({"goAway": {"timeLeft": f"{max(0, round(drain_s))}s"}})
    vertex = flavour == "vertex"
    fast = _audio_turn(msg, vertex)
    if fast is not None:
        return fast
    msg.ClearField("seq")
    doc = json_format.MessageToDict(msg)
    if kind == "setup_complete":
        doc["setupComplete"] = {"sessionId": sid} if vertex else {}
    if vertex:
        usage = doc.get("usageMetadata")
        if usage:
            doc["usageMetadata"] = {_VERTEX_USAGE.get(k, k): v for k, v in usage.items()}
        turn = doc.get("serverContent", {}).get("modelTurn")
        if turn is not None:
            turn.setdefault("role", "model")
    return orjson.dumps(doc)


def _audio_turn(msg: gw.ServerMessage, vertex: bool) -> bytes | None:
    """The per-frame path: a model turn of audio only, without ``json_format``."""
    if msg.WhichOneof("message") != "server_content" or msg.HasField("usage_metadata"):
        return None
    sc = msg.server_content
    fields = sc.ListFields()
    if len(fields) != 1 or fields[0][0].name != "model_turn":
        return None
    parts = []
    for p in sc.model_turn.parts:
        pf = p.ListFields()
        if len(pf) != 1 or pf[0][0].name != "inline_data":
            return None
        parts.append({"inlineData": {"mimeType": p.inline_data.mime_type,
                                     "data": base64.b64encode(p.inline_data.data).decode("ascii")}})
    if not parts:
        return None
    turn: dict[str, Any] = {"parts": parts}
    role = sc.model_turn.role or ("model" if vertex else "")
    if role:
        turn["role"] = role
    return orjson.dumps({"serverContent": {"modelTurn": turn}})

"""Translation between the gRPC API (protobuf) and the Live API's WebSocket JSON.

Lossless by construction: the protos mirror the Live messages field for field, so proto3 JSON
(``json_format``) is the translation. The per-frame audio path in both directions skips ``json_format``
(it is pure Python and ~10x slower): ``realtime_input.audio`` is written with orjson directly, and a
``serverContent.modelTurn`` made only of ``inlineData`` parts is built into the proto directly.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import orjson
from google.protobuf import json_format

from livegate.errors import invalid_argument
from livegate.models import upstream_model
from livegate.routes import UpstreamRoute
from livegate.v1 import gateway_pb2 as gw
from livegate.v1 import live_pb2 as live

# oneof field -> the Live API's top-level key
_CLIENT_KEYS = {
    "setup": "setup",
    "client_content": "clientContent",
    "realtime_input": "realtimeInput",
    "tool_response": "toolResponse",
    "context_update": "contextUpdate",
}

# Vertex names of usage fields -> the Gemini API names our UsageMetadata uses
_VERTEX_USAGE = {"candidatesTokenCount": "responseTokenCount", "candidatesTokensDetails": "responseTokensDetails"}


def client_to_live(msg: gw.ClientMessage) -> str:
    """A caller's message (not ``setup``/``reattach``) as a Live API JSON text frame."""
    kind = msg.WhichOneof("message")
    if kind == "realtime_input":
        ri = msg.realtime_input
        fields = ri.ListFields()
        if len(fields) == 1 and fields[0][0].name == "audio":
            audio = ri.audio
            return orjson.dumps({"realtimeInput": {"audio": {
                "mimeType": audio.mime_type, "data": base64.b64encode(audio.data).decode("ascii")}}}).decode()
    if kind not in _CLIENT_KEYS:
        raise ValueError(f"not a Live API client message: {kind}")
    return _dumps(_CLIENT_KEYS[kind], getattr(msg, kind))


def _dumps(key: str, body: Any) -> str:
    """``{key: body}`` as Live API JSON. The front refuses what JSON cannot carry (service/validate.py); a value
    that still cannot be encoded (a front of an older version) ends its session with a typed INVALID_ARGUMENT,
    not a worker error."""
    try:
        return orjson.dumps({key: json_format.MessageToDict(body)}).decode()
    except (json_format.Error, ValueError, TypeError) as exc:
        raise invalid_argument(f"a {key} message cannot be encoded as Live API JSON: {str(exc)[:200]}",
                               "UNENCODABLE_MESSAGE") from None


def upstream_setup(setup: live.BidiGenerateContentSetup, upstream_handle: str, route: UpstreamRoute,
                   short_model: str, *, compression_default: bool = True) -> str:
    """The ``setup`` frame a worker sends upstream: full model name for the flavour, session resumption
    always on (with the stored handle when resuming; transparent on Vertex), compression on by default."""
    s = live.BidiGenerateContentSetup()
    s.CopyFrom(setup)
    s.model = upstream_model(short_model, route.flavour,  # type: ignore[arg-type]
                             project=route.vertex_project, location=route.vertex_location)
    s.session_resumption.SetInParent()
    if upstream_handle:
        s.session_resumption.handle = upstream_handle
    else:
        s.session_resumption.ClearField("handle")
    if route.flavour == "vertex":
        s.session_resumption.transparent = True
    else:
        s.session_resumption.ClearField("transparent")
    if compression_default and not s.HasField("context_window_compression"):
        s.context_window_compression.sliding_window.SetInParent()
    return _dumps("setup", s)


def server_from_live(frame: bytes | str, flavour: str) -> gw.ServerMessage | None:
    """A Live API server frame as a ``ServerMessage`` (None if it is not a JSON object we understand)."""
    try:
        d = orjson.loads(frame)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(d, dict):
        return None
    fast = _audio_fast_path(d)
    if fast is not None:
        return fast
    if flavour == "vertex":
        usage = d.get("usageMetadata")
        if isinstance(usage, dict):
            d["usageMetadata"] = {_VERTEX_USAGE.get(k, k): v for k, v in usage.items()}
    msg = gw.ServerMessage()
    try:
        json_format.ParseDict(d, msg, ignore_unknown_fields=True)
    except json_format.ParseError:
        return None
    return msg


def _audio_fast_path(d: dict[str, Any]) -> gw.ServerMessage | None:
    if len(d) != 1:
        return None
    sc = d.get("serverContent")
    if not isinstance(sc, dict) or len(sc) != 1:
        return None
    mt = sc.get("modelTurn")
    if not isinstance(mt, dict) or not set(mt) <= {"parts", "role"}:
        return None
    parts = mt.get("parts")
    if not isinstance(parts, list) or not parts:
        return None
    msg = gw.ServerMessage()
    turn = msg.server_content.model_turn
    if mt.get("role"):
        turn.role = mt["role"]
    try:
        for p in parts:
            blob = p["inlineData"] if len(p) == 1 else None
            if not isinstance(blob, dict):
                return None
            part = turn.parts.add()
            part.inline_data.mime_type = blob.get("mimeType", "")
            part.inline_data.data = base64.b64decode(blob.get("data", ""))
    except (KeyError, TypeError, binascii.Error):
        return None
    return msg

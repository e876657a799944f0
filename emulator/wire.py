"""Live API client -> server messages, parsed with proto3-JSON rules.

* keys in camelCase or snake_case, mixed at any level, are normalised to camelCase — except inside opaque
  JSON (`args`, `response`, schema `properties`, `*JsonSchema`, `labels`), which is kept verbatim;
* a repeated field given as a single object is taken as a one-element list (the Vertex docs do that);
* int64 as a JSON number or a decimal string; bytes as standard or URL-safe base64, padded or not;
* anything malformed, or nested deeper than `limits.MAX_JSON_DEPTH`, raises `SessionClosed` 1007 "Request contains
  an invalid argument.".

Only the top level is strict about unknown keys; unknown inner fields are ignored (forward compatibility).
"""

from __future__ import annotations

import binascii
import functools
import re
from dataclasses import dataclass, field
from typing import Any

import orjson

from .closes import INVALID_ARGUMENT, SessionClosed
from .limits import MAX_JSON_DEPTH, too_deep

TOP_LEVEL = ("setup", "clientContent", "realtimeInput", "toolResponse", "contextUpdate")
OPAQUE_KEYS = frozenset(
    {"args", "response", "properties", "parametersJsonSchema", "responseJsonSchema", "labels", "partialArgs"}
)
_SNAKE = re.compile(r"_([a-z0-9])")
_B64 = str.maketrans("-_", "+/")
_camel_cache: dict[str, str] = {}


def invalid(detail: str = "") -> SessionClosed:
    err = SessionClosed.of(INVALID_ARGUMENT)
    err.detail = detail  # type: ignore[attr-defined]
    return err


def camel(key: str) -> str:
    out = _camel_cache.get(key)
    if out is None:
        out = _SNAKE.sub(lambda m: m.group(1).upper(), key) if "_" in key else key
        if len(_camel_cache) < 4096:
            _camel_cache[key] = out
    return out


def normalise(value: Any) -> Any:
    """Recursively camelCases dict keys, leaving opaque sub-objects untouched."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            ck = camel(k)
            out[ck] = v if ck in OPAQUE_KEYS else normalise(v)
        return out
    if isinstance(value, list):
        return [normalise(v) for v in value]
    return value


def b64decode(data: Any) -> bytes:
    if not isinstance(data, str):
        raise invalid("bytes field is not a string")
    s = data.translate(_B64) if ("-" in data or "_" in data) else data
    if len(s) % 4:
        s += "=" * (-len(s) % 4)
    try:
        return binascii.a2b_base64(s, strict_mode=True)
    except (binascii.Error, ValueError):
        raise invalid("bad base64") from None


def as_int(value: Any, what: str) -> int:
    if isinstance(value, bool):
        raise invalid(what)
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise invalid(what)


def as_bool(value: Any, what: str) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        raise invalid(what)
    return value


def as_dict(value: Any, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise invalid(what)
    return value


def as_list(value: Any, what: str) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, dict):
        return [value]
    if not isinstance(value, list):
        raise invalid(what)
    return value


def as_str(value: Any, what: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise invalid(what)
    return value


# --- parsed messages -----------------------------------------------------------------------------


@dataclass(slots=True)
class Part:
    text: str = ""
    mime_type: str = ""
    data: bytes = b""
    function_call: dict[str, Any] | None = None
    function_response: dict[str, Any] | None = None


@dataclass(slots=True)
class Turn:
    role: str
    parts: list[Part]

    @property
    def text(self) -> str:
        return " ".join(p.text for p in self.parts if p.text)


@dataclass(slots=True)
class ClientContent:
    turns: list[Turn]
    turn_complete: bool


@dataclass(slots=True)
class RealtimeEvent:
    kind: str  # audio | video | text | activityStart | activityEnd | audioStreamEnd
    data: bytes = b""
    mime_type: str = ""
    text: str = ""
    rate: int = 16000


@dataclass(slots=True)
class FunctionResponse:
    id: str
    name: str
    response: Any
    scheduling: str = ""
    will_continue: bool = False


@dataclass(slots=True)
class ContextUpdate:
    system_instruction: str | None
    tools: list[dict[str, Any]] | None


@dataclass(slots=True)
class Message:
    kind: str  # one of TOP_LEVEL
    body: dict[str, Any]
    content: ClientContent | None = None
    realtime: list[RealtimeEvent] = field(default_factory=list)
    tool_responses: list[FunctionResponse] = field(default_factory=list)
    context_update: ContextUpdate | None = None


def decode_frame(frame: str | bytes) -> Message:
    """One WebSocket message -> Message. The setup body stays a normalised dict (see setup.py)."""
    try:
        raw = orjson.loads(frame)
    except orjson.JSONDecodeError:
        raise invalid("malformed JSON") from None
    if not isinstance(raw, dict) or len(raw) != 1:
        raise invalid("exactly one top-level key expected")
    if too_deep(frame, raw):  # before normalise() or anything else walks it
        raise invalid(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
    (key, value), = raw.items()
    kind = camel(key)
    if kind not in TOP_LEVEL:
        raise invalid(f"unknown top-level key {key!r}")
    body = normalise(as_dict(value, kind))
    msg = Message(kind, body)
    if kind == "clientContent":
        msg.content = ClientContent(
            [parse_turn(t) for t in as_list(body.get("turns"), "turns")],
            as_bool(body.get("turnComplete"), "turnComplete"),
        )
    elif kind == "realtimeInput":
        msg.realtime = parse_realtime(body)
    elif kind == "toolResponse":
        msg.tool_responses = [parse_function_response(f) for f in as_list(body.get("functionResponses"), "fr")]
    elif kind == "contextUpdate":
        instruction = body.get("systemInstruction")
        tools = body.get("tools")
        msg.context_update = ContextUpdate(
            content_text(instruction) if instruction is not None else None,
            [as_dict(t, "tool") for t in as_list(as_dict(tools, "tools").get("tools"), "tools")]
            if tools is not None
            else None,
        )
    return msg


def content_text(value: Any) -> str:
    """Text of a Content given as an object, a list of parts, or a bare string."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "\n".join(t for t in (content_text(v) for v in value) if t)
    d = as_dict(value, "content")
    if "parts" not in d and "text" in d:
        return as_str(d.get("text"), "text")
    return "\n".join(p.text for p in (parse_part(p) for p in as_list(d.get("parts"), "parts")) if p.text)


def parse_turn(value: Any) -> Turn:
    d = as_dict(value, "turn")
    role = as_str(d.get("role"), "role") or "user"
    return Turn(role, [parse_part(p) for p in as_list(d.get("parts"), "parts")])


def parse_part(value: Any) -> Part:
    d = as_dict(value, "part")
    part = Part(text=as_str(d.get("text"), "text"))
    blob = d.get("inlineData")
    if blob is not None:
        b = as_dict(blob, "inlineData")
        part.mime_type = as_str(b.get("mimeType"), "mimeType")
        part.data = b64decode(b.get("data", ""))
    if d.get("functionCall") is not None:
        part.function_call = as_dict(d["functionCall"], "functionCall")
    if d.get("functionResponse") is not None:
        part.function_response = as_dict(d["functionResponse"], "functionResponse")
    return part


def parse_function_response(value: Any) -> FunctionResponse:
    d = as_dict(value, "functionResponse")
    response = d.get("response")
    if response is not None and not isinstance(response, dict):
        raise invalid("functionResponse.response must be an object")
    return FunctionResponse(
        id=as_str(d.get("id"), "id"),
        name=as_str(d.get("name"), "name"),
        response=response or {},
        scheduling=as_str(d.get("scheduling"), "scheduling"),
        will_continue=as_bool(d.get("willContinue"), "willContinue"),
    )


@functools.lru_cache(maxsize=256)
def audio_rate(mime_type: str) -> int | None:
    """16000 for 'audio/pcm', N for 'audio/pcm;rate=N', None for anything that is not raw PCM."""
    base, _, params = mime_type.partition(";")
    if base.strip().lower() not in ("audio/pcm", "audio/l16"):
        return None
    m = re.search(r"rate\s*=\s*(\d+)", params)
    rate = int(m.group(1)) if m else 16000
    return rate if 8000 <= rate <= 48000 else None


def _blob_event(value: Any, expect: str) -> RealtimeEvent:
    b = as_dict(value, expect)
    mime = as_str(b.get("mimeType"), "mimeType")
    data = b64decode(b.get("data", ""))
    if expect == "audio" or (expect == "media" and mime.lower().startswith("audio/")):
        rate = audio_rate(mime)
        if rate is None or len(data) % 2:
            raise invalid(f"unsupported audio mime type {mime!r}")
        return RealtimeEvent("audio", data, mime, rate=rate)
    if not mime.lower().startswith(("image/", "video/")):
        raise invalid(f"unsupported video mime type {mime!r}")
    return RealtimeEvent("video", data, mime)


def parse_realtime(body: dict[str, Any]) -> list[RealtimeEvent]:
    events: list[RealtimeEvent] = []
    for key, value in body.items():
        if key == "audio":
            events.append(_blob_event(value, "audio"))
        elif key == "video":
            events.append(_blob_event(value, "video"))
        elif key == "mediaChunks":
            chunks = as_list(value, "mediaChunks")
            if chunks:
                events.append(_blob_event(chunks[0], "media"))  # only the first element is used
        elif key == "text":
            events.append(RealtimeEvent("text", text=as_str(value, "text")))
        elif key in ("activityStart", "activityEnd"):
            as_dict(value, key)
            events.append(RealtimeEvent(key))
        elif key == "audioStreamEnd":
            if as_bool(value, key):
                events.append(RealtimeEvent(key))
    return events

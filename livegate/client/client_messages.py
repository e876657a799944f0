"""google-genai-shaped arguments -> ``livegate.v1.ClientMessage``: the setup from a ``LiveConnectConfig``, and
one message per ``send_*`` call. Arguments may be google-genai ``types`` objects or plain dicts."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any

from google.protobuf import json_format

from livegate.v1 import gateway_pb2 as gw
from livegate.v1 import live_pb2 as live

# LiveConnectConfig fields that live in setup.generation_config on the wire
_GENERATION_KEYS = {
    "response_modalities", "speech_config", "temperature", "top_p", "top_k", "max_output_tokens",
    "candidate_count", "presence_penalty", "frequency_penalty", "seed", "media_resolution",
    "enable_affective_dialog", "thinking_config", "translation_config",
}
_SKIP_KEYS = {"http_options"}
# send_realtime_input's arguments, in google-genai's order (its error message lists them in this order)
REALTIME_KINDS = ("media", "audio", "audio_stream_end", "video", "text", "activity_start", "activity_end")


def plain(obj: Any) -> Any:
    """google-genai pydantic objects -> JSON-able dicts (bytes as base64); dicts/lists recursively."""
    if hasattr(obj, "model_dump"):
        return obj.model_dump(exclude_none=True, mode="json")
    if isinstance(obj, dict):
        return {k: plain(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if isinstance(obj, bytes):
        return base64.b64encode(obj).decode()
    return obj


def content(value: Any, role: str = "user") -> dict[str, Any]:
    value = plain(value)
    if isinstance(value, str):
        return {"role": role, "parts": [{"text": value}]}
    return value


def build_setup(model: str, config: Any = None) -> live.BidiGenerateContentSetup:
    """A LiveConnectConfig (object or dict) -> the setup message, as google-genai would send it."""
    cfg = plain(config) if config is not None else {}
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
        setup["system_instruction"] = content(setup["system_instruction"])
    # the Live API also accepts a single object where a list is expected (as the Vertex docs send tools)
    if isinstance(setup.get("tools"), dict):
        setup["tools"] = [setup["tools"]]
    for tool in setup.get("tools", []):
        if isinstance(tool, dict) and isinstance(tool.get("function_declarations"), dict):
            tool["function_declarations"] = [tool["function_declarations"]]
    msg = live.BidiGenerateContentSetup()
    json_format.ParseDict(setup, msg)
    return msg


def client_content(turns: Any = None, turn_complete: bool = True) -> gw.ClientMessage:
    body: dict[str, Any] = {"turn_complete": turn_complete}
    if turns is not None:
        items = turns if isinstance(turns, list) else [turns]
        body["turns"] = [content(t) for t in items]
    msg = gw.ClientMessage()
    json_format.ParseDict(body, msg.client_content)
    return msg


def realtime_input(**kinds: Any) -> gw.ClientMessage:
    """One realtime input; exactly one of REALTIME_KINDS may be set (ValueError otherwise, as google-genai)."""
    given = [k for k in REALTIME_KINDS if kinds.get(k) is not None]
    if len(given) != 1:
        raise ValueError(f"Only one argument can be set, got {len(given)}: {given}")
    [kind] = given
    value = kinds[kind]
    msg = gw.ClientMessage()
    ri = msg.realtime_input
    if kind in ("audio", "video"):
        blob(getattr(ri, kind), value)
    elif kind == "media":
        blob(ri.media_chunks.add(), value)
    elif kind == "text":
        ri.text = value
    elif kind == "audio_stream_end":
        ri.audio_stream_end = bool(value)
    else:
        getattr(ri, kind).SetInParent()
    return msg


def tool_response(function_responses: Any) -> gw.ClientMessage:
    items = function_responses if isinstance(function_responses, (list, tuple)) else [function_responses]
    msg = gw.ClientMessage()
    json_format.ParseDict({"function_responses": [plain(f) for f in items]}, msg.tool_response)
    return msg


def context_update(system_instruction: Any = None, tools: Sequence[Any] | None = None) -> gw.ClientMessage:
    if system_instruction is None and tools is None:
        raise ValueError("At least one of `system_instruction` or `tools` must be set.")
    body: dict[str, Any] = {}
    if system_instruction is not None:
        body["system_instruction"] = content(system_instruction)
    if tools is not None:
        body["tools"] = {"tools": [plain(t) for t in tools]}
    msg = gw.ClientMessage()
    json_format.ParseDict(body, msg.context_update)
    return msg


def legacy_input(value: Any, end_of_turn: bool | None = False) -> gw.ClientMessage:
    """What the deprecated ``session.send(input=..., end_of_turn=...)`` sends for the common input shapes:
    text or content (client_content), a blob (realtime media chunk), function responses (tool_response), or a
    dict naming one of those messages' fields."""
    if not value:
        return client_content(turn_complete=True)
    data = plain(value)
    items = data if isinstance(data, list) else [data]
    if all(isinstance(i, dict) and "name" in i and "response" in i for i in items):
        return tool_response(items)
    if all(isinstance(i, dict) and "data" in i for i in items):
        msg = gw.ClientMessage()
        for i in items:
            blob(msg.realtime_input.media_chunks.add(), i)
        return msg
    if all(isinstance(i, str) or (isinstance(i, dict) and "parts" in i) for i in items):
        parts = [p for i in items for p in (content(i)["parts"])]
        return client_content({"role": "user", "parts": parts}, turn_complete=bool(end_of_turn))
    if isinstance(data, dict) and ("turns" in data or "content" in data):
        return client_content(data.get("turns", data.get("content")), bool(data.get("turn_complete")))
    if isinstance(data, dict) and "media_chunks" in data:
        return legacy_input(data["media_chunks"])
    if isinstance(data, dict) and "function_responses" in data:
        return tool_response(data["function_responses"])
    raise ValueError(f'Unsupported input type "{type(value)}" or input content "{value}"')


def blob(target: live.Blob, value: Any) -> None:
    if isinstance(value, dict):
        data, mime = value.get("data", b""), value.get("mime_type") or value.get("mimeType", "")
    else:
        data, mime = value.data, value.mime_type
    target.mime_type = mime or ""
    target.data = base64.b64decode(data) if isinstance(data, str) else (data or b"")

"""Live API server -> client messages with the real casing and types, and their encoding.

camelCase everywhere, int64 as strings, durations as "Ns", standard base64. Flavour differences:
Vertex adds `setupComplete.sessionId`, `modelTurn.role = "model"`, plain `audio/pcm`, and usage as
`candidatesTokenCount`/`candidatesTokensDetails` (+ `trafficType`).
"""

from __future__ import annotations

import base64
from typing import Any

import orjson

Frame = dict[str, Any]


class Encoder:
    """Serialises frames for one flavour: binary or text WebSocket frames, compact or pretty."""

    __slots__ = ("binary", "_opts")

    def __init__(self, *, binary: bool, pretty: bool) -> None:
        self.binary = binary
        self._opts = orjson.OPT_INDENT_2 if pretty else 0

    def encode(self, frame: Frame) -> bytes | str:
        raw = orjson.dumps(frame, option=self._opts)
        return raw if self.binary else raw.decode("utf-8")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def setup_complete(flavour: str, session_id: str) -> Frame:
    return {"setupComplete": {"sessionId": session_id} if flavour == "vertex" else {}}


def model_turn(flavour: str, parts: list[dict[str, Any]], **extra: Any) -> Frame:
    turn: dict[str, Any] = {"role": "model", "parts": parts} if flavour == "vertex" else {"parts": parts}
    return {"serverContent": {"modelTurn": turn, **extra}}


def text_part(text: str) -> dict[str, Any]:
    return {"text": text}


def audio_mime(flavour: str) -> str:
    return "audio/pcm" if flavour == "vertex" else "audio/pcm;rate=24000"


def audio_part(flavour: str, b64_data: str) -> dict[str, Any]:
    return {"inlineData": {"mimeType": audio_mime(flavour), "data": b64_data}}


def server_content(**fields: Any) -> Frame:
    return {"serverContent": fields}


def transcription(kind: str, text: str, finished: bool | None = None) -> Frame:
    body: dict[str, Any] = {"text": text}
    if finished is not None:
        body["finished"] = finished
    return {"serverContent": {kind: body}}


def tool_call(calls: list[dict[str, Any]]) -> Frame:
    return {"toolCall": {"functionCalls": calls}}


def tool_call_cancellation(ids: list[str]) -> Frame:
    return {"toolCallCancellation": {"ids": ids}}


def go_away(time_left_s: float) -> Frame:
    return {"goAway": {"timeLeft": duration(time_left_s)}}


def duration(seconds: float) -> str:
    """proto3 JSON Duration: "50s", or exactly 3 fractional digits ("0.400s")."""
    millis = round(seconds * 1000)
    if millis % 1000 == 0:
        return f"{millis // 1000}s"
    return f"{millis // 1000}.{millis % 1000:03d}s"


def resumption_update(handle: str, resumable: bool, last_index: int | None = None) -> Frame:
    body: dict[str, Any] = {"newHandle": handle, "resumable": resumable}
    if last_index is not None:
        body["lastConsumedClientMessageIndex"] = str(last_index)
    return {"sessionResumptionUpdate": body}


def usage(flavour: str, prompt: dict[str, int], response: dict[str, int]) -> dict[str, Any]:
    """usageMetadata; prompt/response map modality (TEXT, AUDIO, VIDEO) -> token count."""
    p_total, r_total = sum(prompt.values()), sum(response.values())
    p_details = [{"modality": m, "tokenCount": n} for m, n in prompt.items() if n]
    r_details = [{"modality": m, "tokenCount": n} for m, n in response.items() if n]
    body: dict[str, Any] = {"promptTokenCount": p_total, "totalTokenCount": p_total + r_total}
    if flavour == "vertex":
        body["candidatesTokenCount"] = r_total
        body["promptTokensDetails"] = p_details
        body["candidatesTokensDetails"] = r_details
        body["trafficType"] = "ON_DEMAND"
    else:
        body["responseTokenCount"] = r_total
        body["promptTokensDetails"] = p_details
        body["responseTokensDetails"] = r_details
    return body


def turn_complete(flavour: str, usage_body: dict[str, Any] | None, reason: str | None = None) -> Frame:
    content: dict[str, Any] = {"turnComplete": True}
    if reason:
        content["turnCompleteReason"] = reason
    frame: Frame = {"serverContent": content}
    if usage_body is not None:
        frame["usageMetadata"] = usage_body
    return frame

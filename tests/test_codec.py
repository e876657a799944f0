"""The proto <-> Live JSON codec: what the worker sends upstream, and its per-frame fast paths agree with the
general json_format path."""

from __future__ import annotations

import base64

import orjson
from google.protobuf import json_format

from livegate import codec
from livegate.routes import UpstreamRoute
from livegate.v1 import gateway_pb2 as gw
from livegate.v1 import live_pb2 as live

GEMINI = UpstreamRoute("g", "https://x", "gemini")
VERTEX = UpstreamRoute("v", "https://x", "vertex", vertex_project="acme", vertex_location="europe-west4")


def setup_json(route: UpstreamRoute, handle: str = "", compression_default: bool = True,
               setup: live.BidiGenerateContentSetup | None = None) -> dict:
    s = setup or live.BidiGenerateContentSetup(model="gemini-live-2.5-flash")
    return orjson.loads(codec.upstream_setup(s, handle, route, "gemini-live-2.5-flash",
                                             compression_default=compression_default))["setup"]


def test_model_names_per_flavour_and_resumption_always_on() -> None:
    g = setup_json(GEMINI)
    assert g["model"] == "models/gemini-live-2.5-flash"
    assert g["sessionResumption"] == {}  # on, without transparent (Vertex only)
    v = setup_json(VERTEX, handle="h-123")
    assert v["model"] == "projects/acme/locations/europe-west4/publishers/google/models/gemini-live-2.5-flash"
    assert v["sessionResumption"] == {"handle": "h-123", "transparent": True}


def test_compression_on_by_default_configurable_and_callers_own_kept() -> None:
    assert "contextWindowCompression" in setup_json(GEMINI)
    assert "contextWindowCompression" not in setup_json(GEMINI, compression_default=False)
    own = live.BidiGenerateContentSetup(model="gemini-live-2.5-flash")
    own.context_window_compression.trigger_tokens = 25600
    own.context_window_compression.sliding_window.target_tokens = 12800
    assert setup_json(GEMINI, setup=own)["contextWindowCompression"] == {
        "triggerTokens": "25600", "slidingWindow": {"targetTokens": "12800"}}


def test_audio_fast_paths_agree_with_json_format() -> None:
    pcm = bytes(range(256)) * 5
    m = gw.ClientMessage()
    m.realtime_input.audio.mime_type = "audio/pcm;rate=16000"
    m.realtime_input.audio.data = pcm
    fast = orjson.loads(codec.client_to_live(m))
    assert fast == {"realtimeInput": json_format.MessageToDict(m.realtime_input)}
    frame = orjson.dumps({"serverContent": {"modelTurn": {"parts": [
        {"inlineData": {"mimeType": "audio/pcm;rate=24000", "data": base64.b64encode(pcm).decode()}}]}}})
    slow = gw.ServerMessage()
    json_format.ParseDict(orjson.loads(frame), slow)
    assert codec.server_from_live(frame, "gemini") == slow


def test_vertex_usage_names_are_mapped() -> None:
    frame = orjson.dumps({"serverContent": {"turnComplete": True}, "usageMetadata": {
        "promptTokenCount": 10, "candidatesTokenCount": 7, "totalTokenCount": 17,
        "candidatesTokensDetails": [{"modality": "AUDIO", "tokenCount": 7}]}})
    msg = codec.server_from_live(frame, "vertex")
    assert msg is not None and msg.usage_metadata.response_token_count == 7
    assert msg.usage_metadata.response_tokens_details[0].token_count == 7


def test_not_understood_frames_are_none() -> None:
    for frame in (b"not json", b"[1, 2]", b'{"serverContent": {"modelTurn": 5}}'):
        assert codec.server_from_live(frame, "gemini") is None

"""The livegate.v1 protos carry every Live API JSON message without loss.

Each frame (fixtures/: the SDK probe's captured frames, the protocol notes' examples, the user docs' examples) is parsed
with proto3 JSON (`json_format.ParseDict`) into `ClientMessage` / `ServerMessage` and printed back with
`MessageToDict`. The result must equal the input up to the variations proto3 JSON allows: key casing (camelCase vs
snake_case), base64 alphabet (URL-safe vs standard), int64 as number or string, Duration/Timestamp spelling, enum as
name or number, float32 rounding. Keys and values inside `Struct`/`Value` fields (function args and responses, schemas)
must come back verbatim. The comparison walks the message descriptor next to the JSON, so every input key must map to a
field and reappear in the output: a dropped explicit `false`/`0` (a missing `optional`) fails.
"""

from __future__ import annotations

import base64
import copy
import json
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import descriptor, json_format
from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from livegate.v1 import gateway_pb2, live_pb2

FIXTURES = Path(__file__).parent / "fixtures"
FD = descriptor.FieldDescriptor
VERBATIM_TYPES = {"google.protobuf.Struct", "google.protobuf.Value", "google.protobuf.ListValue"}
INT64_TYPES = {FD.TYPE_INT64, FD.TYPE_UINT64, FD.TYPE_SINT64, FD.TYPE_FIXED64, FD.TYPE_SFIXED64}


# --- fixtures ------------------------------------------------------------------------------------------------------


def _load_json(name: str) -> list[dict[str, Any]]:
    return json.loads((FIXTURES / name).read_text())


def _probe_frames(direction: str) -> list[dict[str, Any]]:
    lines = (FIXTURES / "sdk_probe_frames.jsonl").read_text().splitlines()
    frames = [json.loads(line) for line in lines if line.strip()]
    return [f for f in frames if f["direction"] == direction]


def _cases(frames: list[dict[str, Any]], label: str) -> list[Any]:
    return [pytest.param(f, id=f"{label}:{f.get('name') or f.get('source')}:{i}") for i, f in enumerate(frames)]


CLIENT_CASES = (
    _cases(_probe_frames("client"), "probe")
    + _cases(_load_json("protocol_client.json"), "protocol")
    + _cases(_load_json("seeds_client.json"), "seed")
)
SERVER_CASES = _cases(_probe_frames("server"), "probe") + _cases(_load_json("protocol_server.json"), "protocol")


def vertex_usage_to_gemini(frame: dict[str, Any]) -> dict[str, Any]:
    """Rename Vertex usage fields to the Gemini API names, as the gateway does before parsing a Vertex frame.

    Vertex sends `candidatesTokenCount` / `candidatesTokensDetails`; `UsageMetadata` only has the Gemini names
    `responseTokenCount` / `responseTokensDetails` (see the comment on UsageMetadata in live.proto).
    """
    frame = copy.deepcopy(frame)
    usage = frame.get("usageMetadata")
    if isinstance(usage, dict):
        for vertex, gemini in (
            ("candidatesTokenCount", "responseTokenCount"),
            ("candidatesTokensDetails", "responseTokensDetails"),
        ):
            if vertex in usage:
                usage[gemini] = usage.pop(vertex)
    return frame


# --- descriptor-guided comparison ----------------------------------------------------------------------------------


def _b64(value: str) -> bytes:
    """Decode standard or URL-safe base64, padded or not."""
    value = value.replace("-", "+").replace("_", "/")
    return base64.b64decode(value + "=" * (-len(value) % 4), validate=True)


def _f32(value: float) -> float:
    return struct.unpack("<f", struct.pack("<f", float(value)))[0]


def _field(message: descriptor.Descriptor, key: str, path: str) -> descriptor.FieldDescriptor:
    for field in message.fields:
        if key in (field.json_name, field.name):
            return field
    raise AssertionError(f"{path}: key {key!r} is not a field of {message.full_name}")


def assert_same(original: Any, printed: Any, message: descriptor.Descriptor, path: str = "$") -> None:
    """Assert that `printed` (MessageToDict output) carries exactly the content of `original` (input JSON)."""
    name = message.full_name
    if name in VERBATIM_TYPES:
        assert printed == original, f"{path}: free-form JSON changed: {original!r} -> {printed!r}"
        return
    if name == "google.protobuf.Duration":
        a, b = Duration(), Duration()
        a.FromJsonString(original)
        b.FromJsonString(printed)
        assert a == b, f"{path}: duration {original!r} -> {printed!r}"
        return
    if name == "google.protobuf.Timestamp":
        ta, tb = Timestamp(), Timestamp()
        ta.FromJsonString(original)
        tb.FromJsonString(printed)
        assert ta == tb, f"{path}: timestamp {original!r} -> {printed!r}"
        return
    assert isinstance(original, dict), f"{path}: expected an object, got {original!r}"
    assert isinstance(printed, dict), f"{path}: expected an object, got {printed!r}"
    expected_keys = set()
    for key, value in original.items():
        field = _field(message, key, path)
        if field.is_repeated and value in ([], {}):
            # proto3 has no presence for repeated and map fields: an empty list is the same as an absent one (the
            # presence of the enclosing message carries the meaning, e.g. contextUpdate `tools: {tools: []}`).
            assert field.json_name not in printed or printed[field.json_name] == value, f"{path}.{key}: {value!r}"
            continue
        if value is None and field.type == FD.TYPE_ENUM and field.enum_type.full_name == "google.protobuf.NullValue":
            assert field.json_name in printed and printed[field.json_name] is None, f"{path}.{key}: null lost"
            expected_keys.add(field.json_name)
            continue
        expected_keys.add(field.json_name)
        assert field.json_name in printed, f"{path}.{key}: lost in the round trip (value {value!r})"
        _assert_field(field, value, printed[field.json_name], f"{path}.{key}")
    extra = set(printed) - expected_keys
    assert not extra, f"{path}: round trip invented keys {sorted(extra)}"


def _assert_field(field: descriptor.FieldDescriptor, original: Any, printed: Any, path: str) -> None:
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        value_field = field.message_type.fields_by_name["value"]
        assert set(original) == set(printed), f"{path}: map keys {sorted(original)} -> {sorted(printed)}"
        for key in original:
            _assert_value(value_field, original[key], printed[key], f"{path}[{key!r}]")
        return
    if field.is_repeated:
        assert isinstance(original, list) and isinstance(printed, list), f"{path}: expected lists"
        assert len(original) == len(printed), f"{path}: {len(original)} items -> {len(printed)}"
        for i, (a, b) in enumerate(zip(original, printed, strict=True)):
            _assert_value(field, a, b, f"{path}[{i}]")
        return
    _assert_value(field, original, printed, path)


def _assert_value(field: descriptor.FieldDescriptor, original: Any, printed: Any, path: str) -> None:
    if field.type == FD.TYPE_MESSAGE:
        assert_same(original, printed, field.message_type, path)
    elif field.type == FD.TYPE_ENUM and field.enum_type.full_name == "google.protobuf.NullValue":
        assert original is None and printed is None, f"{path}: null {original!r} -> {printed!r}"
    elif field.type == FD.TYPE_ENUM:

        def number(v: Any) -> int:
            return v if isinstance(v, int) else field.enum_type.values_by_name[v].number

        assert number(original) == number(printed), f"{path}: enum {original!r} -> {printed!r}"
    elif field.type == FD.TYPE_BYTES:
        assert _b64(original) == _b64(printed), f"{path}: bytes {original!r} -> {printed!r}"
    elif field.type in INT64_TYPES:
        assert int(original) == int(printed), f"{path}: int64 {original!r} -> {printed!r}"
    elif field.type == FD.TYPE_FLOAT:
        assert _f32(original) == _f32(printed), f"{path}: float {original!r} -> {printed!r}"
    else:
        assert original == printed, f"{path}: {original!r} -> {printed!r}"


def round_trip(frame: dict[str, Any], message_type: type[Message]) -> dict[str, Any]:
    parsed = json_format.ParseDict(frame, message_type())
    # Through the binary encoding too: what the front sends to a worker must keep everything.
    reparsed = message_type.FromString(parsed.SerializeToString())
    assert reparsed == parsed
    return json_format.MessageToDict(reparsed)


# --- the round trips -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CLIENT_CASES)
def test_client_frame_round_trips(case: dict[str, Any]) -> None:
    frame = case["msg"]
    printed = round_trip(frame, gateway_pb2.ClientMessage)
    assert_same(frame, printed, gateway_pb2.ClientMessage.DESCRIPTOR)


@pytest.mark.parametrize("case", SERVER_CASES)
def test_server_frame_round_trips(case: dict[str, Any]) -> None:
    frame = vertex_usage_to_gemini(case["msg"])
    printed = round_trip(frame, gateway_pb2.ServerMessage)
    assert_same(frame, printed, gateway_pb2.ServerMessage.DESCRIPTOR)


def test_fixtures_cover_every_envelope_key() -> None:
    client_keys = {key for case in CLIENT_CASES for key in case.values[0]["msg"]}
    server_keys = {key for case in SERVER_CASES for key in case.values[0]["msg"]}
    assert {"setup", "client_content", "clientContent", "realtime_input", "realtimeInput"} <= client_keys
    assert {"tool_response", "toolResponse", "contextUpdate"} <= client_keys
    assert {
        "setupComplete",
        "serverContent",
        "toolCall",
        "toolCallCancellation",
        "goAway",
        "sessionResumptionUpdate",
        "usageMetadata",
        "voiceActivityDetectionSignal",
        "voiceActivity",
    } <= server_keys


def test_server_output_is_live_api_json() -> None:
    """A ServerMessage without gateway fields prints as the Live API frame: camelCase keys, no `seq`."""
    frame = {
        "serverContent": {"turnComplete": True},
        "usageMetadata": {"promptTokenCount": 3, "responseTokenCount": 2, "totalTokenCount": 5},
    }
    message = json_format.ParseDict(frame, gateway_pb2.ServerMessage())
    assert json_format.MessageToDict(message) == frame
    update = json_format.ParseDict(
        {"sessionResumptionUpdate": {"newHandle": "h", "resumable": True, "lastConsumedClientMessageIndex": 7}},
        gateway_pb2.ServerMessage(),
    )
    # int64 is a JSON string on the wire, as the Live API sends it.
    assert json_format.MessageToDict(update)["sessionResumptionUpdate"]["lastConsumedClientMessageIndex"] == "7"
    message.seq = 12
    assert json_format.MessageToDict(message)["seq"] == "12"


# --- free-form JSON stays verbatim ---------------------------------------------------------------------------------

ODD_KEYS = {
    "snake_case": 1,
    "camelCase": 2,
    "PascalCase": 3,
    "UPPER_CASE": 4,
    "with space": 5,
    "dash-key": 6,
    "": 7,
    "nested_obj": {"inner_key": [{"deepKey": None}], "x-y": True},
}


def test_struct_keys_are_preserved_verbatim() -> None:
    frame = {
        "toolCall": {"functionCalls": [{"id": "c1", "name": "f", "args": ODD_KEYS}]},
    }
    message = json_format.ParseDict(frame, gateway_pb2.ServerMessage())
    call = message.tool_call.function_calls[0]
    assert json_format.MessageToDict(call.args) == ODD_KEYS
    assert json.loads(json_format.MessageToJson(message))["toolCall"]["functionCalls"][0]["args"] == ODD_KEYS

    response = json_format.ParseDict(
        {"tool_response": {"function_responses": [{"id": "c1", "name": "f", "response": ODD_KEYS}]}},
        gateway_pb2.ClientMessage(),
    )
    assert json_format.MessageToDict(response)["toolResponse"]["functionResponses"][0]["response"] == ODD_KEYS


def test_schema_property_names_and_types_stay_verbatim() -> None:
    parameters = {
        "type": "OBJECT",
        "properties": {"city_name": {"type": "STRING"}, "cityName": {"type": "STRING"}, "days": {"type": "INTEGER"}},
        "required": ["city_name"],
        "propertyOrdering": ["city_name", "cityName", "days"],
    }
    setup = {"setup": {"model": "models/m", "tools": [{"function_declarations": [{"name": "w", "parameters": parameters}]}]}}
    message = json_format.ParseDict(setup, gateway_pb2.ClientMessage())
    declaration = message.setup.tools[0].function_declarations[0]
    # `"type": "OBJECT"` stays a string: parameters are a Struct, not Google's typed Schema.
    assert declaration.parameters.fields["type"].string_value == "OBJECT"
    assert json_format.MessageToDict(message)["setup"]["tools"][0]["functionDeclarations"][0]["parameters"] == parameters


# --- presence: explicit false/0 survive ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("frame", "message_type"),
    [
        ({"clientContent": {"turnComplete": False}}, gateway_pb2.ClientMessage),
        ({"realtimeInput": {"audioStreamEnd": False}}, gateway_pb2.ClientMessage),
        ({"setup": {"realtimeInputConfig": {"automaticActivityDetection": {"disabled": False}}}}, gateway_pb2.ClientMessage),
        ({"setup": {"generationConfig": {"temperature": 0.0, "enableAffectiveDialog": False}}}, gateway_pb2.ClientMessage),
        ({"setup": {"sessionResumption": {"transparent": False, "handle": ""}}}, gateway_pb2.ClientMessage),
        ({"setup": {"proactivity": {"proactiveAudio": False}}}, gateway_pb2.ClientMessage),
        ({"serverContent": {"generationComplete": False, "turnComplete": False}}, gateway_pb2.ServerMessage),
        ({"sessionResumptionUpdate": {"resumable": False, "lastConsumedClientMessageIndex": "0"}}, gateway_pb2.ServerMessage),
    ],
)
def test_explicit_defaults_survive(frame: dict[str, Any], message_type: type[Message]) -> None:
    assert_same(frame, round_trip(frame, message_type), message_type.DESCRIPTOR)


def test_empty_objects_are_kept() -> None:
    """`{}` means "enabled" for sessionResumption, transcription, codeExecution, googleSearch, activityStart."""
    frame = {
        "setup": {
            "model": "models/m",
            "sessionResumption": {},
            "inputAudioTranscription": {},
            "outputAudioTranscription": {},
            "tools": [{"codeExecution": {}}, {"googleSearch": {}}, {"urlContext": {}}],
        }
    }
    message = json_format.ParseDict(frame, gateway_pb2.ClientMessage())
    assert message.setup.HasField("session_resumption")
    assert message.setup.HasField("input_audio_transcription")
    assert json_format.MessageToDict(message) == frame
    activity = json_format.ParseDict({"realtimeInput": {"activityStart": {}}}, gateway_pb2.ClientMessage())
    assert activity.realtime_input.HasField("activity_start")


# --- wire variants -------------------------------------------------------------------------------------------------


def test_base64_variants_decode_to_the_same_bytes() -> None:
    raw = bytes(range(256))
    standard, urlsafe = base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode()
    for encoded in (standard, urlsafe, standard.rstrip("="), urlsafe.rstrip("=")):
        message = json_format.ParseDict(
            {"realtimeInput": {"audio": {"mimeType": "audio/pcm;rate=16000", "data": encoded}}}, gateway_pb2.ClientMessage()
        )
        assert message.realtime_input.audio.data == raw
    # Output is standard base64, as the Live API sends it.
    printed = json_format.MessageToDict(message)["realtimeInput"]["audio"]["data"]
    assert printed == base64.b64encode(raw).decode()


def test_mixed_casing_at_every_level() -> None:
    camel = {
        "setup": {
            "model": "models/m",
            "generationConfig": {"responseModalities": ["AUDIO"], "speechConfig": {"voiceConfig": {"prebuiltVoiceConfig": {"voiceName": "Kore"}}}},
            "realtimeInputConfig": {"automaticActivityDetection": {"silenceDurationMs": 500}},
        }
    }
    mixed = {
        "setup": {
            "model": "models/m",
            "generation_config": {"responseModalities": ["AUDIO"], "speechConfig": {"voice_config": {"prebuiltVoiceConfig": {"voice_name": "Kore"}}}},
            "realtimeInputConfig": {"automatic_activity_detection": {"silenceDurationMs": 500}},
        }
    }
    a = json_format.ParseDict(camel, gateway_pb2.ClientMessage())
    b = json_format.ParseDict(mixed, gateway_pb2.ClientMessage())
    assert a == b
    assert json_format.MessageToDict(b) == camel


def test_int64_as_number_or_string() -> None:
    for value in (25600, "25600"):
        message = json_format.ParseDict({"setup": {"contextWindowCompression": {"triggerTokens": value}}}, gateway_pb2.ClientMessage())
        assert message.setup.context_window_compression.trigger_tokens == 25600


def test_enum_wire_strings() -> None:
    """Enum value names are the Live API's JSON strings."""
    cases: list[tuple[Any, str]] = [
        (live_pb2.GenerationConfig.Modality, "AUDIO"),
        (live_pb2.GenerationConfig.MediaResolution, "MEDIA_RESOLUTION_LOW"),
        (live_pb2.RealtimeInputConfig.AutomaticActivityDetection.StartSensitivity, "START_SENSITIVITY_LOW"),
        (live_pb2.RealtimeInputConfig.ActivityHandling, "START_OF_ACTIVITY_INTERRUPTS"),
        (live_pb2.FunctionDeclaration.Behavior, "BLOCKING"),
        (live_pb2.FunctionDeclaration.Behavior, "NON_BLOCKING"),
        (live_pb2.ExecutableCode.Language, "PYTHON"),
        (live_pb2.CodeExecutionResult.Outcome, "OUTCOME_OK"),
        (live_pb2.FunctionResponse.Scheduling, "SILENT"),
        (live_pb2.BidiGenerateContentServerContent.InteractionStatus, "IDLE"),
        (live_pb2.UsageMetadata.TrafficType, "ON_DEMAND"),
        (live_pb2.ModalityTokenCount.Modality, "DOCUMENT"),
    ]
    for enum, name in cases:
        assert enum.Name(enum.Value(name)) == name
    # Google's numbers.
    assert live_pb2.GenerationConfig.AUDIO == 3
    assert live_pb2.ModalityTokenCount.AUDIO == 4
    assert live_pb2.FunctionResponse.SILENT == 1


# --- what the front rejects ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("frame", "message_type"),
    [
        ({"setup": {"model": "models/m", "bogusField": 1}}, gateway_pb2.ClientMessage),
        ({"unknownEnvelope": {}}, gateway_pb2.ClientMessage),
        ({"clientContent": {"turns": [{"parts": [{"text": "x", "madeUp": True}]}]}}, gateway_pb2.ClientMessage),
        ({"setup": {"tool_config": {}}}, gateway_pb2.ClientMessage),
        ({"serverContent": {"newServerField": True}}, gateway_pb2.ServerMessage),
    ],
)
def test_unknown_fields_fail_to_parse(frame: dict[str, Any], message_type: type[Message]) -> None:
    with pytest.raises(json_format.ParseError):
        json_format.ParseDict(frame, message_type())
    # ...unless the caller opts into forward compatibility.
    message = json_format.ParseDict(frame, message_type(), ignore_unknown_fields=True)
    assert json_format.MessageToDict(message).keys() <= frame.keys()


def test_unknown_fields_ignored_keep_the_rest() -> None:
    frame = {"setup": {"model": "models/m", "futureField": {"a": 1}, "generationConfig": {"responseModalities": ["TEXT"], "futureKnob": 3}}}
    message = json_format.ParseDict(frame, gateway_pb2.ClientMessage(), ignore_unknown_fields=True)
    assert json_format.MessageToDict(message) == {"setup": {"model": "models/m", "generationConfig": {"responseModalities": ["TEXT"]}}}


def test_unknown_enum_value() -> None:
    frame = {"setup": {"generationConfig": {"mediaResolution": "MEDIA_RESOLUTION_GIGANTIC"}}}
    with pytest.raises(json_format.ParseError):
        json_format.ParseDict(frame, gateway_pb2.ClientMessage())
    message = json_format.ParseDict(frame, gateway_pb2.ClientMessage(), ignore_unknown_fields=True)
    assert not message.setup.generation_config.HasField("media_resolution")


def test_two_envelope_keys_fail() -> None:
    with pytest.raises(json_format.ParseError):
        json_format.ParseDict({"setup": {"model": "models/m"}, "clientContent": {}}, gateway_pb2.ClientMessage())


def test_seed_singular_tools_is_rejected() -> None:
    """Seed 001 (a Vertex doc sample) sends `tools` and `function_declarations` as single objects, not lists.

    proto3 JSON requires lists for repeated fields, so this form fails to parse (the front answers INVALID_ARGUMENT);
    the list form of the same setup is in seeds_client.json and round-trips.
    """
    frame = {
        "setup": {
            "model": "gemini-2.0-flash-live-preview-04-09",
            "tools": {"function_declarations": {"name": "get_current_weather", "parameters": {"type": "OBJECT"}}},
        }
    }
    with pytest.raises(json_format.ParseError):
        json_format.ParseDict(frame, gateway_pb2.ClientMessage())


def _walk_keys(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for key, inner in value.items():
            yield key
            yield from _walk_keys(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from _walk_keys(inner)


def test_probe_fixtures_mix_both_casings() -> None:
    """The captured SDK frames really exercise snake_case and camelCase (guards against a rewritten fixture)."""
    keys = {key for frame in _probe_frames("client") for key in _walk_keys(frame["msg"])}
    assert {"client_content", "turnComplete", "mime_type", "mimeType", "automatic_activity_detection", "contextUpdate"} <= keys

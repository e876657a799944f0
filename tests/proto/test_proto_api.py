"""The shape of the public API: Google's field numbers, the numbering policy, the service and envelope contracts.

fixtures/googleapis_v1beta.json holds the field and enum numbers of the googleapis v1beta messages that livegate.v1
mirrors (compiled from googleapis/googleapis; see its "source" key).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import descriptor

from livegate.v1 import gateway_pb2, gateway_pb2_grpc, live_pb2

GOOGLE = json.loads((Path(__file__).parent / "fixtures" / "googleapis_v1beta.json").read_text())
PACKAGE = "livegate.v1."
EXTENSION_MIN = 1000

# Our message -> Google's message, where the names differ.
RENAMED = {
    "Transcription": "BidiGenerateContentTranscription",
    "ClientMessage": "BidiGenerateContentClientMessage",
    "ServerMessage": "BidiGenerateContentServerMessage",
    "Interval": "google.type.Interval",
}
# Our enum -> Google's enum, where Google's is top-level.
RENAMED_ENUMS = {"ModalityTokenCount.Modality": "Modality", "SafetySetting.HarmCategory": "HarmCategory"}
# Google fields deliberately absent or renumbered (explained in live.proto).
GOOGLE_FIELD_EXCEPTIONS = {
    # Google's `response_json_schema` (24) has json_name "_responseJsonSchema" (internal); the JSON key
    # "responseJsonSchema" is field 28, which we call response_json_schema.
    ("GenerationConfig", "response_json_schema"),
    ("GenerationConfig", "response_json_schema_ordered"),
}
# Gateway-only members of the envelopes (gateway.proto): 100+, plus context_update at Google's next free number.
GATEWAY_FIELDS = {
    ("ClientMessage", "context_update"): 5,
    ("ClientMessage", "reattach"): 100,
    ("ClientMessage", "options"): 101,
    ("ServerMessage", "session"): 100,
    ("ServerMessage", "upstream_renewed"): 101,
    ("ServerMessage", "drain"): 102,
    ("ServerMessage", "seq"): 110,
}


def our_messages() -> Iterator[descriptor.Descriptor]:
    def walk(message: descriptor.Descriptor) -> Iterator[descriptor.Descriptor]:
        yield message
        for nested in message.nested_types:
            yield from walk(nested)

    for file in (live_pb2.DESCRIPTOR, gateway_pb2.DESCRIPTOR):
        for message in file.message_types_by_name.values():
            yield from walk(message)


def mirrored() -> list[tuple[str, descriptor.Descriptor, dict[str, Any]]]:
    pairs = []
    for message in our_messages():
        name = message.full_name.removeprefix(PACKAGE)
        google = GOOGLE["messages"].get(RENAMED.get(name, name))
        if google is not None:
            pairs.append((name, message, google))
    return pairs


MIRRORED = mirrored()


def test_every_google_message_is_mirrored() -> None:
    ours = {RENAMED.get(name, name) for name, _, _ in MIRRORED}
    assert set(GOOGLE["messages"]) - ours == set()


@pytest.mark.parametrize(("name", "message", "google"), MIRRORED, ids=[name for name, _, _ in MIRRORED])
def test_google_fields_keep_google_numbers(name: str, message: descriptor.Descriptor, google: dict[str, Any]) -> None:
    for field_name, spec in google.items():
        if (name, field_name) in GOOGLE_FIELD_EXCEPTIONS:
            continue
        field = message.fields_by_name.get(field_name)
        assert field is not None, f"{name}.{field_name} (Google #{spec['number']}) is missing"
        assert field.number == spec["number"], f"{name}.{field_name}: #{field.number}, Google #{spec['number']}"
        assert field.json_name == spec["json_name"], f"{name}.{field_name}: JSON name differs from Google's"


@pytest.mark.parametrize(("name", "message", "google"), MIRRORED, ids=[name for name, _, _ in MIRRORED])
def test_added_fields_use_the_extension_range(name: str, message: descriptor.Descriptor, google: dict[str, Any]) -> None:
    google_numbers = {spec["number"] for spec in google.values()}
    for field in message.fields:
        if field.name in google or (name, field.name) in GOOGLE_FIELD_EXCEPTIONS:
            continue
        if (name, field.name) in GATEWAY_FIELDS:
            assert field.number == GATEWAY_FIELDS[(name, field.name)]
            assert field.number not in google_numbers
            continue
        assert field.number >= EXTENSION_MIN, f"{name}.{field.name} is not in v1beta but has #{field.number} < 1000"


def test_response_json_schema_is_googles_json_key() -> None:
    field = live_pb2.GenerationConfig.DESCRIPTOR.fields_by_name["response_json_schema"]
    google = GOOGLE["messages"]["GenerationConfig"]["response_json_schema_ordered"]
    assert (field.number, field.json_name) == (google["number"], google["json_name"])


def our_enums() -> Iterator[tuple[str, descriptor.EnumDescriptor]]:
    for message in our_messages():
        for enum in message.enum_types:
            yield enum.full_name.removeprefix(PACKAGE), enum


ENUM_PAIRS = [
    (name, enum, GOOGLE["enums"][RENAMED_ENUMS.get(name, name)])
    for name, enum in our_enums()
    if RENAMED_ENUMS.get(name, name) in GOOGLE["enums"]
]


def test_every_google_enum_is_mirrored() -> None:
    assert set(GOOGLE["enums"]) - {RENAMED_ENUMS.get(name, name) for name, _, _ in ENUM_PAIRS} == set()


@pytest.mark.parametrize(("name", "enum", "google"), ENUM_PAIRS, ids=[name for name, _, _ in ENUM_PAIRS])
def test_enum_values_match_google(name: str, enum: descriptor.EnumDescriptor, google: dict[str, int]) -> None:
    for value_name, number in google.items():
        assert value_name in enum.values_by_name, f"{name}.{value_name} missing"
        assert enum.values_by_name[value_name].number == number, f"{name}.{value_name} renumbered"
    for value in enum.values:
        if value.name not in google:
            assert value.number >= EXTENSION_MIN, f"{name}.{value.name} is not in v1beta but has #{value.number}"


def test_envelopes() -> None:
    client = gateway_pb2.ClientMessage.DESCRIPTOR
    assert {f.name: f.number for f in client.oneofs_by_name["message"].fields} == {
        "setup": 1,
        "client_content": 2,
        "realtime_input": 3,
        "tool_response": 4,
        "context_update": 5,
        "reattach": 100,
    }
    assert client.fields_by_name["options"].containing_oneof is None
    server = gateway_pb2.ServerMessage.DESCRIPTOR
    oneof = {f.name: f.number for f in server.oneofs_by_name["message"].fields}
    assert oneof == {
        "setup_complete": 2,
        "server_content": 3,
        "tool_call": 4,
        "tool_call_cancellation": 5,
        "go_away": 6,
        "session_resumption_update": 7,
        "voice_activity_detection_signal": 1000,
        "voice_activity": 1001,
        "session": 100,
        "upstream_renewed": 101,
        "drain": 102,
    }
    usage = server.fields_by_name["usage_metadata"]
    assert (usage.number, usage.containing_oneof) == (10, None)
    seq = server.fields_by_name["seq"]
    assert (seq.number, seq.type) == (110, descriptor.FieldDescriptor.TYPE_UINT64)


def test_service() -> None:
    service = gateway_pb2.DESCRIPTOR.services_by_name["LiveGateway"]
    methods = {
        m.name: (m.input_type.name, m.output_type.name, m.client_streaming, m.server_streaming) for m in service.methods
    }
    assert methods == {
        "Connect": ("ClientMessage", "ServerMessage", True, True),
        "GetSession": ("GetSessionRequest", "Session", False, False),
        "ListSessions": ("ListSessionsRequest", "ListSessionsResponse", False, False),
        "CloseSession": ("CloseSessionRequest", "CloseSessionResponse", False, False),
    }
    assert hasattr(gateway_pb2_grpc, "LiveGatewayServicer")
    assert hasattr(gateway_pb2_grpc, "LiveGatewayStub")
    assert hasattr(gateway_pb2_grpc, "add_LiveGatewayServicer_to_server")


def test_session_resource() -> None:
    session = gateway_pb2.Session
    assert [v.name for v in session.State.DESCRIPTOR.values] == [
        "STATE_UNSPECIFIED",
        "PENDING",
        "ACTIVE",
        "RESUMING",
        "DETACHED",
        "CLOSING",
        "CLOSED",
    ]
    assert set(session.Counters.DESCRIPTOR.fields_by_name) == {
        "client_messages",
        "server_messages",
        "upstream_connects",
        "go_aways",
        "resumes",
        "reattaches",
    }
    fields = session.DESCRIPTOR.fields_by_name
    assert fields["create_time"].message_type.full_name == "google.protobuf.Timestamp"
    assert fields["age"].message_type.full_name == "google.protobuf.Duration"


@pytest.mark.parametrize("file", [live_pb2.DESCRIPTOR, gateway_pb2.DESCRIPTOR], ids=["live", "gateway"])
def test_language_options(file: descriptor.FileDescriptor) -> None:
    options = file.GetOptions()
    for option in (
        "go_package",
        "java_package",
        "java_multiple_files",
        "java_outer_classname",
        "csharp_namespace",
        "php_namespace",
        "ruby_package",
        "objc_class_prefix",
    ):
        assert options.HasField(option), f"{file.name}: option {option} missing"


async def test_generated_stubs_serve_over_grpc() -> None:
    """The generated servicer and stub talk over a real grpc.aio server on port 0 (method paths, streaming kinds)."""
    import grpc

    class Echo(gateway_pb2_grpc.LiveGatewayServicer):
        async def Connect(self, request_iterator: Any, context: Any) -> Any:
            yield gateway_pb2.ServerMessage(session=gateway_pb2.SessionInfo(session_id="s1", reattach_token="t"))
            seq = 0
            async for message in request_iterator:
                seq += 1
                if message.HasField("setup"):
                    yield gateway_pb2.ServerMessage(seq=seq, setup_complete=live_pb2.BidiGenerateContentSetupComplete())
                else:
                    yield gateway_pb2.ServerMessage(
                        seq=seq, server_content=live_pb2.BidiGenerateContentServerContent(turn_complete=True)
                    )

        async def GetSession(self, request: Any, context: Any) -> Any:
            if request.session_id != "s1":
                await context.abort(grpc.StatusCode.NOT_FOUND, "no such session")
            return gateway_pb2.Session(session_id="s1", state=gateway_pb2.Session.ACTIVE, flavour="gemini")

    server = grpc.aio.server()
    gateway_pb2_grpc.add_LiveGatewayServicer_to_server(Echo(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = gateway_pb2_grpc.LiveGatewayStub(channel)

            async def requests() -> AsyncIterator[gateway_pb2.ClientMessage]:
                yield gateway_pb2.ClientMessage(
                    setup=live_pb2.BidiGenerateContentSetup(model="models/m"),
                    options=gateway_pb2.SessionOptions(upstream_events=True),
                )
                yield gateway_pb2.ClientMessage(client_content=live_pb2.BidiGenerateContentClientContent(turn_complete=True))

            replies = [reply async for reply in stub.Connect(requests())]
            assert [r.WhichOneof("message") for r in replies] == ["session", "setup_complete", "server_content"]
            assert [r.seq for r in replies] == [0, 1, 2]
            session = await stub.GetSession(gateway_pb2.GetSessionRequest(session_id="s1"))
            assert session.state == gateway_pb2.Session.ACTIVE
            with pytest.raises(grpc.aio.AioRpcError) as error:
                await stub.GetSession(gateway_pb2.GetSessionRequest(session_id="nope"))
            assert error.value.code() == grpc.StatusCode.NOT_FOUND
    finally:
        await server.stop(None)


def test_generated_code_is_fresh() -> None:
    """livegate/v1/ matches proto/ (the same check as `python scripts/gen_proto.py --check`)."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [sys.executable, "scripts/gen_proto.py", "--check"], cwd=root, capture_output=True, text=True, timeout=100
    )
    assert result.returncode == 0, result.stdout + result.stderr

"""Property tests of the proto3-JSON rules in emulator.wire (no sockets)."""

from __future__ import annotations

import base64
import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from emulator import wire

keys = st.text(alphabet="abcdefgXYZ_019", min_size=1, max_size=12)
NO_DB = settings(database=None)  # no .hypothesis/ directory in the work tree

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(keys, inner, max_size=3),
    max_leaves=12,
)


@NO_DB
@given(st.binary(max_size=300), st.booleans(), st.booleans())
def test_b64_accepts_both_alphabets_with_or_without_padding(data: bytes, urlsafe: bool, strip: bool) -> None:
    text = (base64.urlsafe_b64encode if urlsafe else base64.b64encode)(data).decode()
    assert wire.b64decode(text.rstrip("=") if strip else text) == data


@NO_DB
@given(st.dictionaries(keys, json_values, max_size=4), st.dictionaries(keys, json_values, max_size=4))
def test_opaque_json_is_never_rewritten(args: dict[str, Any], response: dict[str, Any]) -> None:
    frame = json.dumps({"tool_response": {"function_responses": [
        {"id": "i", "name": "n", "response": response, "will_continue": False}]}})
    msg = wire.decode_frame(frame)
    assert msg.kind == "toolResponse" and msg.tool_responses[0].response == response
    content = json.dumps({"client_content": {"turns": [{"role": "model", "parts": [
        {"function_call": {"name": "f", "args": args}}]}], "turn_complete": False}})
    msg = wire.decode_frame(content)
    assert msg.content is not None and msg.content.turns[0].parts[0].function_call == {"name": "f", "args": args}


@NO_DB
@given(st.lists(st.sampled_from(["camel", "snake"]), min_size=4, max_size=4))
def test_mixed_casing_parses_the_same(styles: list[str]) -> None:
    def k(camel: str, snake: str, i: int) -> str:
        return camel if styles[i] == "camel" else snake

    frame = json.dumps({k("realtimeInput", "realtime_input", 0): {
        k("mediaChunks", "media_chunks", 1): [{k("mimeType", "mime_type", 2): "audio/pcm;rate=16000", "data": "AAAAAA=="}]}})
    [event] = wire.decode_frame(frame).realtime
    assert (event.kind, event.data, event.rate) == ("audio", b"\0\0\0\0", 16000)
    frame = json.dumps({k("clientContent", "client_content", 3): {"turns": [{"parts": [{"text": "x"}]}],
                                                                  k("turnComplete", "turn_complete", 2): True}})
    msg = wire.decode_frame(frame)
    assert msg.content is not None and msg.content.turn_complete and msg.content.turns[0].text == "x"

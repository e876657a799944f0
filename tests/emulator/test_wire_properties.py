"""Property tests of the proto3-JSON rules in emulator.wire (no sockets)."""

from __future__ import annotations

import base64
import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from emulator import wire

keys = st.text(alphabet="abcdefgXYZ_019", min_size=1, max_size=12)
NO_DB = settings(database=None, max_examples=300)  # no .hypothesis/ directory in the work tree
TOP = ["setup", "clientContent", "realtimeInput", "toolResponse", "contextUpdate", "client_content"]
FIELDS = [
    "model", "generationConfig", "responseModalities", "speechConfig", "voiceConfig", "prebuiltVoiceConfig",
    "voiceName", "languageCode", "systemInstruction", "parts", "text", "tools", "functionDeclarations", "name",
    "parameters", "properties", "type", "behavior", "codeExecution", "googleSearch", "retrieval", "vertexRagStore",
    "ragCorpora", "ragResources", "ragCorpus", "storeContext", "realtimeInputConfig", "automaticActivityDetection",
    "disabled", "silenceDurationMs", "prefixPaddingMs", "sessionResumption", "handle", "transparent",
    "contextWindowCompression", "triggerTokens", "slidingWindow", "targetTokens", "proactivity", "proactiveAudio",
    "turns", "role", "turnComplete", "inlineData", "mimeType", "data", "audio", "video", "mediaChunks",
    "activityStart", "audioStreamEnd", "functionResponses", "id", "response", "scheduling", "historyConfig",
    "enableAffectiveDialog", "inputAudioTranscription", "functionCall", "args",
]

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


anything = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 70000) | st.floats(allow_nan=False) | st.sampled_from(
        ["", "x", "AUDIO", "TEXT", "Kore", "models/gemini-live-2.5-flash-preview", "audio/pcm", "AAAA", "en-US"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(FIELDS), inner, max_size=4),
    max_leaves=20,
)


@NO_DB
@given(st.dictionaries(st.sampled_from(FIELDS), anything, max_size=6), st.sampled_from(TOP))
def test_any_shape_is_parsed_or_rejected_with_1007(body: dict[str, Any], top: str) -> None:
    """Whatever the shape, the parser either accepts or raises SessionClosed 1007/1008 — never crashes."""
    from emulator.closes import SessionClosed
    from emulator.routes import Route
    from emulator.setup import parse_setup
    from emulator.tools import Toolbox

    frame = json.dumps({top: body})
    for route in (Route("gemini", "v1beta", "BidiGenerateContent"), Route("vertex", "v1", "BidiGenerateContent")):
        try:
            msg = wire.decode_frame(frame)
            if msg.kind == "setup":
                setup = parse_setup(msg.body, route, strict_models=False)
                Toolbox.from_tools(setup.tools)
            elif msg.context_update is not None and msg.context_update.tools is not None:
                Toolbox.from_tools(msg.context_update.tools)
        except SessionClosed as exc:
            assert exc.code in (1007, 1008)


rag_store = st.dictionaries(st.sampled_from(["ragCorpora", "ragResources", "storeContext"]), anything, max_size=3)
tool_value = st.one_of(
    anything,
    st.lists(st.dictionaries(st.sampled_from(FIELDS), anything, max_size=4), max_size=2),
    st.dictionaries(st.sampled_from(["vertexRagStore", "vertex_rag_store"]), rag_store),
)
tool_keys = st.sampled_from(
    ["functionDeclarations", "codeExecution", "googleSearch", "retrieval", "google_search", "function_declarations"])
tool_shapes = st.lists(st.dictionaries(tool_keys, tool_value, max_size=3), max_size=3)


@NO_DB
@given(tool_shapes, st.sampled_from(["gemini", "vertex"]))
def test_any_tools_shape_is_accepted_or_1007(tools: list[Any], flavour: str) -> None:
    from emulator.closes import SessionClosed
    from emulator.routes import Route
    from emulator.setup import parse_setup
    from emulator.tools import Toolbox, extract_args, match_functions

    body = wire.normalise({"model": "models/gemini-live-2.5-flash-preview", "tools": tools})
    try:
        setup = parse_setup(body, Route(flavour, "v1", "BidiGenerateContent"), strict_models=False)
    except SessionClosed as exc:
        assert exc.code == 1007
        return
    box = Toolbox.from_tools(setup.tools)
    for decl in match_functions("x in Paris 3", box) + box.functions:
        extract_args("x=1 type: 2 in Paris 3", decl)


# --- nesting: refused past MAX_JSON_DEPTH with 1007, never a RecursionError --------------------------------

# where a nested value can sit in a client message, with how many containers enclose it there
NEST_SITES = {
    "clientContent": ('{"clientContent": {"turns": [{"parts": [{"text": "x", "extra": %s}]}], "turnComplete": false}}', 6),
    "realtimeInput": ('{"realtime_input": {"extra": %s}}', 2),
    "toolResponse": ('{"toolResponse": {"functionResponses": [{"id": "i", "name": "f", "response": {"r": %s}}]}}', 5),
    "setup": ('{"setup": {"model": "models/gemini-live-2.5-flash-preview", "generationConfig": {"extra": %s}}}', 3),
}


def reference_depth(value: Any) -> int:
    """Containers on the deepest path (no recursion, so it can check what the parser must refuse)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, (dict, list)):
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for child in (node.values() if isinstance(node, dict) else node))
    return deepest


@st.composite
def nested_json(draw: Any, max_depth: int = 1100) -> tuple[str, int]:
    """JSON text `depth` containers deep: a random mix of arrays and objects, with shallow siblings on the way."""
    depth = draw(st.one_of(st.integers(1, max_depth), st.integers(88, 100)))  # the second: around the limit
    kinds = draw(st.integers(0, 2**64 - 1))
    sibling, sibling_depth = draw(st.sampled_from([("", 0), ('"a[{"', 0), ("1", 0), ("[]", 1), ('{"k": [1, 2]}', 2)]))
    opening, closing, deepest = [], [], depth
    for i in range(depth):
        obj = (kinds >> (i % 64)) & 1
        extra = sibling if i % 7 == 3 else ""
        if extra:
            deepest = max(deepest, i + 1 + sibling_depth)  # a container sibling may go one level further
        opening.append('{"k": ' if obj else "[")
        if obj:
            closing.append(', "s": ' + extra + "}" if extra else "}")
        else:
            closing.append(", " + extra + "]" if extra else "]")
    return "".join(opening) + "null" + "".join(reversed(closing)), deepest


@NO_DB
@given(nested_json(), st.sampled_from(sorted(NEST_SITES)))
def test_nesting_is_accepted_up_to_the_limit_and_refused_past_it(nest: tuple[str, int], site: str) -> None:
    from emulator.closes import INVALID_ARGUMENT, SessionClosed
    from emulator.limits import MAX_JSON_DEPTH

    value, depth = nest
    template, enclosing = NEST_SITES[site]
    frame = template % value
    total = enclosing + depth
    if total <= MAX_JSON_DEPTH:
        assert reference_depth(json.loads(frame)) == total
        assert wire.decode_frame(frame.encode()).kind == site
        return
    try:
        wire.decode_frame(frame)
    except SessionClosed as exc:
        assert (exc.code, exc.reason) == INVALID_ARGUMENT
        assert exc.detail in (f"JSON nested deeper than {MAX_JSON_DEPTH} levels", "malformed JSON")  # type: ignore[attr-defined]
    else:
        raise AssertionError(f"{total} levels accepted")


@NO_DB
@given(json_values, st.integers(0, 6))
def test_too_deep_agrees_with_the_depth(value: Any, limit: int) -> None:
    from emulator.limits import too_deep

    text = json.dumps(value)  # strings may hold brackets: the pre-count only ever overestimates
    assert too_deep(text, value, limit) == (reference_depth(value) > limit)
    assert too_deep(text.encode(), value, limit) == (reference_depth(value) > limit)

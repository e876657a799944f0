"""What a client can make the emulator hold or walk: an unauthenticated peer never gets a big frame buffered
(refused from its header), and JSON nested deeper than MAX_JSON_DEPTH closes 1007, never a RecursionError."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from emu_helpers import GEMINI_MODEL, cli_emulator, open_session, raw_connect, recv_until, text_of
from emulator.closes import BAD_API_KEY, INVALID_ARGUMENT
from emulator.limits import MAX_JSON_DEPTH, UNAUTHENTICATED_MAX_BYTES
from emulator.server import EmulatorServer

MiB = 1024 * 1024


async def closed_with(ws: Any, timeout: float = 10.0) -> tuple[int | None, str | None]:
    with pytest.raises(ConnectionClosed):
        async with asyncio.timeout(timeout):
            while True:
                await ws.recv()
    return ws.close_code, ws.close_reason


def nested(depth: int) -> str:
    """A JSON value that is `depth` containers deep, alternating arrays and objects."""
    opening = "".join('{"n":' if i % 2 else "[" for i in range(depth))
    closing = "".join("}" if i % 2 else "]" for i in reversed(range(depth)))
    return opening + "1" + closing


def turn_with(value: str) -> str:
    """A clientContent whose part carries `value` in an unknown field (ignored when it is acceptable).
    The outer object, clientContent, turns, the turn, parts and the part are 6 levels."""
    return '{"clientContent": {"turns": [{"parts": [{"text": "deep", "extra": %s}]}], "turnComplete": true}}' % value


# --- an unauthenticated peer ---------------------------------------------------------------------------

async def test_unauthenticated_frame_over_the_small_limit_is_refused_from_its_header(start_server: Any) -> None:
    server = await start_server(api_keys=frozenset({"good"}))
    ws = await raw_connect(server, headers={"x-goog-api-key": "bad"}, query="")
    pad = "x" * (UNAUTHENTICATED_MAX_BYTES + 1)  # far below max_message_bytes, which an authenticated peer has
    await ws.send(json.dumps({"setup": {"model": GEMINI_MODEL, "systemInstruction": pad}}))
    code, reason = await closed_with(ws)
    assert code == 1009 and reason is not None and f"limit of {UNAUTHENTICATED_MAX_BYTES} bytes" in reason
    # a setup that fits still gets the real service's credential close; no credential at all is the same
    for headers in ({"x-goog-api-key": "bad"}, {}):
        ws = await raw_connect(server, headers=headers)
        await ws.send(json.dumps({"setup": {"model": GEMINI_MODEL}}))
        assert await closed_with(ws) == BAD_API_KEY
    # an authenticated peer keeps max_message_bytes, and the server keeps working
    ws = await open_session(server, headers={"x-goog-api-key": "good"})
    await ws.send(json.dumps({"realtimeInput": {"text": "big " + "y" * MiB}}))
    assert text_of(await recv_until(ws, "turnComplete")).startswith('You said: "big yyy')
    await ws.close()


async def test_unauthenticated_big_frame_is_refused_before_the_credential_check_would_read_it(start_server: Any) -> None:
    """The order: an unauthenticated setup that is over max_message_bytes but under the small limit closes with
    the credential error, not the size error (the credential is known from the upgrade)."""
    server = await start_server(api_keys=frozenset({"good"}), max_message_bytes=1000)
    ws = await raw_connect(server, headers={"x-goog-api-key": "bad"})
    await ws.send(json.dumps({"setup": {"model": GEMINI_MODEL, "systemInstruction": "x" * 2000}}))
    assert await closed_with(ws) == BAD_API_KEY


def _rss_mib(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise AssertionError(field)


async def _send_big(ws: Any, payload: str) -> int | None:
    """Sends one big frame on an open connection and returns the close code the client saw."""
    try:
        await ws.send(payload)
        await asyncio.wait_for(ws.recv(), 30)
    except ConnectionClosed:
        pass
    return ws.close_code


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc for the peak RSS")
async def test_twenty_unauthenticated_30mb_frames_do_not_grow_the_server(tmp_path: Path) -> None:
    """A subprocess emulator's peak RSS while 20 unauthenticated peers each send one 30 MB frame at once
    (before the fix each was buffered whole: about +850 MiB)."""
    with cli_emulator(tmp_path, "--api-key", "good", "--log-level", "WARNING") as emu:
        pid = emu.proc.pid
        before = _rss_mib(pid, "VmRSS")
        Path(f"/proc/{pid}/clear_refs").write_text("5")  # resets VmHWM (the peak) to the current RSS
        ctx = ssl.create_default_context(cafile=emu.cert_path)
        payload = json.dumps({"setup": {"model": GEMINI_MODEL, "systemInstruction": "x" * (30 * MiB)}})
        async with contextlib.AsyncExitStack() as peers:  # all 20 upgraded first, so the frames arrive together
            opened = [connect(emu.gemini_url(), ssl=ctx, additional_headers={"x-goog-api-key": "wrong"},
                              open_timeout=30, close_timeout=5, compression=None) for _ in range(20)]
            sockets = [await peers.enter_async_context(ws) for ws in await asyncio.gather(*opened)]
            codes = await asyncio.gather(*(_send_big(ws, payload) for ws in sockets))
        peak = _rss_mib(pid, "VmHWM")
    print(f"unauthenticated 20 x 30 MB: RSS before {before:.0f} MiB, peak during {peak:.0f} MiB (+{peak - before:.0f})")
    assert set(codes) <= {1009, 1006}, codes  # refused from the header (1006 if the abort beat the close frame)
    assert peak - before < 30, (before, peak)  # not even one frame's worth


# --- nesting ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 900, 1023, 5000])
async def test_deep_nesting_closes_1007_and_the_server_keeps_working(
    server: EmulatorServer, depth: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    ws = await open_session(server)
    await ws.send(turn_with(nested(depth - 6)))
    assert await closed_with(ws) == INVALID_ARGUMENT
    [conv] = [c for c in server.conversations if c["messages"][-1]["kind"] == "invalid"]
    detail = conv["messages"][-1]["detail"]
    assert detail in (f"JSON nested deeper than {MAX_JSON_DEPTH} levels", "malformed JSON"), detail  # orjson: >1024
    assert not [r for r in caplog.records if r.name.startswith("emulator")], caplog.text  # no crash logged
    ws = await open_session(server)  # the next connection is served normally
    await ws.send(json.dumps({"realtimeInput": {"text": "still fine?"}}))
    assert text_of(await recv_until(ws, "turnComplete")) == 'You said: "still fine?"'
    await ws.close()


async def test_nesting_at_the_limit_is_accepted(server: EmulatorServer) -> None:
    ws = await open_session(server)
    await ws.send(turn_with(nested(MAX_JSON_DEPTH - 6)))
    assert text_of(await recv_until(ws, "turnComplete")) == 'You said: "deep"'
    await ws.close()


async def test_deep_setup_closes_1007(server: EmulatorServer) -> None:
    ws = await raw_connect(server)
    await ws.send('{"setup": {"model": "%s", "generationConfig": {"extra": %s}}}' % (GEMINI_MODEL, nested(950)))
    assert await closed_with(ws) == INVALID_ARGUMENT
    ws = await open_session(server)
    await ws.close()


async def test_deep_tool_response_closes_1007(server: EmulatorServer) -> None:
    """Opaque JSON (functionResponse.response) is never normalised, but is bounded all the same."""
    ws = await open_session(server)
    frame = '{"toolResponse": {"functionResponses": [{"id": "x", "name": "f", "response": {"r": %s}}]}}' % nested(300)
    await ws.send(frame)
    assert await closed_with(ws, timeout=3) == INVALID_ARGUMENT


# --- fuzz: sizes and nesting through a real socket ----------------------------------------------------------

SMALL_LIMIT = 4096  # max_message_bytes of the fuzzed server, so sizes on both sides of it stay cheap


@st.composite
def input_case(draw: Any) -> tuple[bool, int, int]:
    """(authenticated, padding bytes, nesting depth of the extra value) around every limit on the input path."""
    authenticated = draw(st.booleans())
    near = UNAUTHENTICATED_MAX_BYTES if not authenticated else SMALL_LIMIT
    pad = draw(st.one_of(st.integers(0, 2 * SMALL_LIMIT), st.integers(near - 300, near + 300)))
    depth = draw(st.one_of(st.integers(1, 1100), st.integers(MAX_JSON_DEPTH - 12, MAX_JSON_DEPTH)))
    return authenticated, pad, depth


def fuzz_frame(authenticated: bool, pad: int, depth: int) -> str:
    """An unauthenticated peer's setup (the only message of its that is read), or a turn after setup; the
    nested value sits 6 levels down in the turn."""
    if not authenticated:
        return '{"setup": {"model": "%s", "pad": "%s", "extra": %s}}' % (GEMINI_MODEL, "x" * pad, nested(depth))
    return ('{"clientContent": {"turns": [{"parts": [{"text": "fuzz", "extra": %s}]}], "turnComplete": true,'
            ' "pad": "%s"}}') % (nested(depth), "x" * pad)


async def one_input(server: EmulatorServer, authenticated: bool, pad: int, depth: int) -> str:
    """Sends one fuzzed message and returns what came back: "reply", "1007 <reason>" or "1009"."""
    if not authenticated:
        ws = await raw_connect(server, headers={"x-goog-api-key": "bad"})
    else:
        ws = await open_session(server, headers={"x-goog-api-key": "good"})
    await ws.send(fuzz_frame(authenticated, pad, depth))
    try:
        async with asyncio.timeout(10):
            while True:
                if "turnComplete" in json.loads(await ws.recv()).get("serverContent", {}):
                    await ws.close()
                    return "reply"
    except ConnectionClosed:
        return "1009" if ws.close_code == 1009 else f"{ws.close_code} {ws.close_reason}"


async def test_fuzz_sizes_and_nesting_on_the_input_path(start_server: Any, caplog: pytest.LogCaptureFixture) -> None:
    """Every size and depth ends in exactly the documented outcome, and the server never crashes."""
    caplog.set_level(logging.WARNING)
    server = await start_server(api_keys=frozenset({"good"}), max_message_bytes=SMALL_LIMIT)
    loop = asyncio.get_running_loop()
    seen: dict[str, int] = {}

    @settings(max_examples=200, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(input_case())
    def run(case: tuple[bool, int, int]) -> None:
        authenticated, pad, depth = case
        got = asyncio.run_coroutine_threadsafe(one_input(server, *case), loop).result(timeout=30)
        seen[got] = seen.get(got, 0) + 1
        size = len(fuzz_frame(*case))
        if not authenticated:
            assert got == ("1009" if size > UNAUTHENTICATED_MAX_BYTES else "%d %s" % BAD_API_KEY), (size, got)
            return
        refused = size > SMALL_LIMIT or depth + 6 > MAX_JSON_DEPTH
        assert got == ("%d %s" % INVALID_ARGUMENT if refused else "reply"), (size, depth, got)

    await asyncio.to_thread(run)
    print(f"fuzz outcomes: {seen}")
    assert not [r for r in caplog.records if r.name.startswith("emulator")], caplog.text
    ws = await open_session(server, headers={"x-goog-api-key": "good"})  # and it still serves
    await ws.send(json.dumps({"realtimeInput": {"text": "after the fuzz"}}))
    assert text_of(await recv_until(ws, "turnComplete")) == 'You said: "after the fuzz"'
    await ws.close()

"""The upstream is renewed inside the gateway: go_away, transient closes, drops and stalls never reach the
caller; non-retryable closes end the session with a typed status (livegate/errors.py, docs/errors.md)."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from livegate.client import APIError
from livegate.v1 import gateway_pb2 as gw
from tests.e2e.helpers import text_of

MODEL = "gemini-live-2.5-flash"
SILENCE_20MS = b"\x00\x00" * 320


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "parts": [{"text": text}]}


async def turn(session: Any, text: str, timeout_s: float = 20.0) -> tuple[str, list[gw.ServerMessage]]:
    """Send a text turn; return the reply text and every raw message (gateway events included)."""
    await session.send_client_content(turns=user(text))
    raw: list[gw.ServerMessage] = []
    async with asyncio.timeout(timeout_s):
        async for m in session.receive_raw():
            raw.append(m)
            if m.server_content.turn_complete:
                break
    return "".join(p.text for m in raw for p in m.server_content.model_turn.parts), raw


def only_conversation(emulator: Any) -> dict[str, Any]:
    convs = emulator.conversations
    assert len(convs) == 1, [c["id"] for c in convs]
    return convs[0]


@pytest.fixture
def emulator_config(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from emulator.config import EmulatorConfig

    # connections live 2.5 s; go_away 1.5 s before the end
    return EmulatorConfig(port=0, pacing=0.0, cert_dir=str(tmp_path_factory.getbasetemp() / "emulator-cert"),
                          connection_lifetime_s=2.5, go_away_lead_s=1.5)


@pytest.mark.parametrize("flavour", ["gemini", "vertex"])
@pytest.mark.parametrize("settings_overrides", [{"go_away_margin_s": 0.3}])
async def test_conversation_across_go_aways(client: Any, stack: dict[str, Any], flavour: str,
                                            settings_overrides: dict[str, Any]) -> None:
    duration_s = float(os.environ.get("LIVEGATE_SOAK_S", "14"))
    loop = asyncio.get_running_loop()
    sent: list[str] = []
    frames = 0
    renewals: list[gw.UpstreamRenewed] = []
    async with client.aio.live.connect(model=MODEL, config={"response_modalities": ["TEXT"]},
                                       options=gw.SessionOptions(upstream_events=True)) as s:
        end = loop.time() + duration_s
        while loop.time() < end:
            question = f"Question {len(sent)}: is {len(sent)} even?"
            sent.append(question)
            reply, raw = await turn(s, question)
            assert reply == f'You said: "{question}"'
            renewals += [m.upstream_renewed for m in raw if m.HasField("upstream_renewed")]
            for _ in range(5):  # some realtime audio between turns (silence)
                await s.send_realtime_input(audio={"data": SILENCE_20MS, "mime_type": "audio/pcm;rate=16000"})
                frames += 1
            await asyncio.sleep(0.2)  # the conversation's pace: it must span many connection lifetimes
        reply, raw = await turn(s, "What was the last question I asked?")
        renewals += [m.upstream_renewed for m in raw if m.HasField("upstream_renewed")]
    assert reply == f'You asked: "{sent[-1]}"'
    conv = only_conversation(stack["emulator"])
    assert conv["go_aways"] >= 5 and conv["connections"] >= 6, conv
    # every turn reached the upstream exactly once, in order, across all connections
    texts = [m["text"] for m in conv["messages"] if m["kind"] == "clientContent"]
    assert texts == sent + ["What was the last question I asked?"]
    # realtime audio sent after the last snapshot is re-sent on the new connection (the resumed state does not
    # hold the old connection's copy): none is lost; a copy is received twice only in that window
    received = sum(1 for m in conv["messages"] if m["kind"] == "realtimeInput.audio")
    assert frames <= received <= frames + 5 * len(renewals)
    # the history survived every renewal (a user and a model entry per turn)
    assert conv["history_turns"] >= 2 * len(sent)
    # the caller saw no error, only renewal events with their gap
    assert len(renewals) >= 5 and all(r.reason == "go_away" for r in renewals)
    assert all(0 < r.gap.ToNanoseconds() < 2e9 for r in renewals)


# (emulator close name, None = resumed transparently | (gRPC code, ErrorInfo reason))
CLOSES = [
    ("internal", None),
    ("unavailable", None),
    ("deadline", None),
    ("go_away_ignored", None),
    ("normal", None),
    ("quota", (grpc.StatusCode.RESOURCE_EXHAUSTED, "UPSTREAM_QUOTA_EXCEEDED")),
    ("invalid_argument", (grpc.StatusCode.INVALID_ARGUMENT, "UPSTREAM_INVALID_ARGUMENT")),
    ("bad_api_key", (grpc.StatusCode.INTERNAL, "UPSTREAM_AUTH")),
    ("bad_credentials", (grpc.StatusCode.INTERNAL, "UPSTREAM_AUTH")),
    ("location_unsupported", (grpc.StatusCode.FAILED_PRECONDITION, "UPSTREAM_LOCATION")),
    ("not_implemented", (grpc.StatusCode.FAILED_PRECONDITION, "UPSTREAM_UNSUPPORTED")),
    ("invalid_handle", (grpc.StatusCode.ABORTED, "UPSTREAM_SESSION_LOST")),
    ("session_not_found", (grpc.StatusCode.ABORTED, "UPSTREAM_SESSION_LOST")),
    ("entity_not_found", (grpc.StatusCode.ABORTED, "UPSTREAM_SESSION_LOST")),
]


@pytest.mark.parametrize(("close", "expected"), CLOSES, ids=[c for c, _ in CLOSES])
async def test_every_upstream_close(client: Any, stack: dict[str, Any], close: str, expected: Any) -> None:
    emulator = stack["emulator"]
    async with client.aio.live.connect(model=MODEL, config={"response_modalities": ["TEXT"]}) as s:
        reply, _ = await turn(s, "Is the first question answered?")
        assert reply == 'You said: "Is the first question answered?"'
        conv = only_conversation(emulator)
        emulator.faults.add({"target": conv["id"], "when": "immediately", "action": "close", "close": close})
        if expected is None:
            # resumed inside the gateway: the next turn works and remembers the first
            reply, _ = await turn(s, "What was the last question I asked?")
            assert reply == 'You asked: "Is the first question answered?"'
            assert only_conversation(emulator)["connections"] == 2
        else:
            code, reason = expected
            with pytest.raises(APIError) as raised:  # the client raises google-genai's errors
                await turn(s, "Are you still there?")
            ended = raised.value.rpc_error
            assert ended.code() == code
            status = rpc_status.from_call(ended)
            info = error_details_pb2.ErrorInfo()
            assert status is not None and status.details[0].Unpack(info)
            assert info.reason == reason and info.metadata["upstream_close_code"] in ("1007", "1008", "1011")
            assert only_conversation(emulator)["connections"] == 1  # not retried blindly


@pytest.mark.parametrize("action", ["drop", "stall"])
@pytest.mark.parametrize("settings_overrides", [{"upstream_stall_s": 1.0}])
async def test_drop_and_stall_are_renewed(client: Any, stack: dict[str, Any], action: str,
                                          settings_overrides: dict[str, Any]) -> None:
    emulator = stack["emulator"]
    async with client.aio.live.connect(model=MODEL, config={"response_modalities": ["TEXT"]}) as s:
        reply, _ = await turn(s, "Is this the first question?")
        conv = only_conversation(emulator)
        # the upstream goes silent (or drops) in the middle of the next model turn
        emulator.faults.add({"target": conv["id"], "when": "mid_turn", "action": action})
        await s.send_client_content(turns=user("say: a long answer that will be cut off by the fault"))
        async with asyncio.timeout(20):  # that turn completes on the renewed upstream (replayed)
            async for m in s.receive_raw():
                if m.server_content.turn_complete:
                    break
        reply, _ = await turn(s, "What was the last question I asked?")
    assert 'You asked: "Is this the first question?"' in reply
    assert only_conversation(emulator)["connections"] >= 2


async def test_a_renewal_the_upstream_refuses_is_counted_as_a_failed_resume(client: Any, stack: dict[str, Any]) -> None:
    """livegate_upstream_resumes_total{result="error"}: the alert on failed resumes had nothing to fire on, as
    only successful renewals were counted."""
    from prometheus_client import REGISTRY

    def failed() -> float:
        return REGISTRY.get_sample_value("livegate_upstream_resumes_total",
                                         {"flavour": "gemini", "reason": "upstream_close", "result": "error"}) or 0.0

    emulator = stack["emulator"]
    before = failed()
    async with client.aio.live.connect(model=MODEL, config={"response_modalities": ["TEXT"]}) as s:
        await turn(s, "Is this the first question?")
        conv = only_conversation(emulator)
        # the connection drops (renewed at once), and the upstream refuses the renewal's setup
        emulator.faults.add({"target": "next", "when": "before_setup_complete", "action": "close",
                             "close": "invalid_argument"})
        emulator.faults.add({"target": conv["id"], "when": "immediately", "action": "drop"})
        with pytest.raises(APIError):
            await turn(s, "Are you still there?")
    assert failed() == before + 1

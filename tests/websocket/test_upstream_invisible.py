"""Through the Live API WebSocket, the upstream's ``goAway`` and transient closes are as invisible as through gRPC
(the same worker renews the upstream with its resumption handle): a google-genai session spans several upstream
connections without seeing a ``goAway`` or an error, and remembers the conversation; a draining worker hands it
to another one unseen. An upstream close that is not transient reaches the caller as that close's Live API
code."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from google import genai
from google.genai import errors

MODEL = "gemini-live-2.5-flash"
TEXT = {"response_modalities": ["TEXT"]}


@pytest.fixture
def emulator_config(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from emulator.config import EmulatorConfig

    # upstream connections live 2 s, with a goAway 1.2 s before their end
    return EmulatorConfig(port=0, pacing=0.0, cert_dir=str(tmp_path_factory.getbasetemp() / "emulator-cert"),
                          connection_lifetime_s=2.0, go_away_lead_s=1.2)


@pytest.fixture
def ws_settings() -> dict[str, Any]:
    return {"go_away_margin_s": 0.3}


@pytest.fixture
def client(base_url: str, ws_cert: tuple[str, str], monkeypatch: pytest.MonkeyPatch) -> genai.Client:
    monkeypatch.setenv("SSL_CERT_FILE", ws_cert[0])
    return genai.Client(api_key="test-key", http_options={"base_url": base_url})


async def ask(session: Any, text: str) -> tuple[str, list[Any]]:
    await session.send_client_content(turns={"role": "user", "parts": [{"text": text}]})
    async with asyncio.timeout(20):
        msgs = [m async for m in session.receive()]
    return "".join(m.text for m in msgs if m.text), msgs


async def test_conversation_across_upstream_go_aways(client: genai.Client, stack: dict[str, Any]) -> None:
    emulator = stack["emulator"]
    seen: list[Any] = []
    async with client.aio.live.connect(model=MODEL, config=TEXT) as session:
        asked = []
        loop = asyncio.get_running_loop()
        end = loop.time() + 6.0  # three upstream connection lifetimes
        while loop.time() < end:
            asked.append(f"Question {len(asked)}?")
            reply, msgs = await ask(session, asked[-1])
            assert reply == f'You said: "{asked[-1]}"'
            seen += msgs
            await asyncio.sleep(0.2)
        reply, msgs = await ask(session, "What was the last question I asked?")
        seen += msgs
    assert reply == f'You asked: "{asked[-1]}"'
    (conv,) = emulator.conversations
    assert conv["go_aways"] >= 2 and conv["connections"] >= 3, conv
    assert not [m for m in seen if m.go_away is not None]  # the caller never saw one


@pytest.mark.parametrize(("close", "expected"), [
    ("internal", None), ("unavailable", None), ("quota", (1011, "UPSTREAM_QUOTA_EXCEEDED")),
    ("invalid_argument", (1007, "UPSTREAM_INVALID_ARGUMENT")), ("session_not_found", (1011, "UPSTREAM_SESSION_LOST"))])
async def test_upstream_close(client: genai.Client, stack: dict[str, Any], close: str,
                              expected: tuple[int, str] | None) -> None:
    emulator = stack["emulator"]
    async with client.aio.live.connect(model=MODEL, config=TEXT) as session:
        assert (await ask(session, "Is the first question answered?"))[0] == 'You said: "Is the first question answered?"'
        (conv,) = emulator.conversations
        emulator.faults.add({"target": conv["id"], "when": "immediately", "action": "close", "close": close})
        if expected is None:  # renewed inside the gateway: the next turn remembers the first
            assert (await ask(session, "What was the last question I asked?"))[0] == \
                'You asked: "Is the first question answered?"'
        else:
            with pytest.raises(errors.APIError) as raised:
                await ask(session, "Are you still there?")
            assert raised.value.code == expected[0] and f"{expected[1]}: " in str(raised.value)


async def test_worker_drain_hands_the_session_over_unseen(client: genai.Client, stack: dict[str, Any]) -> None:
    async with client.aio.live.connect(model=MODEL, config=TEXT) as session:
        assert (await ask(session, "Is this the first question?"))[0] == 'You said: "Is this the first question?"'
        (owner,) = [w for w in stack["workers"] if w.sessions]
        await owner.drain(timeout_s=10)  # SIGTERM's path: the session moves to the other worker
        assert not owner.sessions
        reply, msgs = await ask(session, "What was the last question I asked?")
        (successor,) = [w for w in stack["workers"] if w.sessions]
    assert successor is not owner
    assert reply == 'You asked: "Is this the first question?"'
    assert not [m for m in msgs if m.go_away is not None]

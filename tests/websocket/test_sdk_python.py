"""The user's google-genai examples (every snippet of the Live API documents the project was given, kept as they
are in tests/client/seed_examples.py) through the gateway's Live API WebSocket endpoint with google-genai
itself, only the client line changed, in both client forms:
``Client(vertexai=True, project=..., location=..., credentials=..., http_options={"base_url": ...})`` and
``Client(api_key=..., http_options={"base_url": ...})``.

Each example runs twice against the same emulator (Vertex, as the documents are Vertex's): google-genai straight
to it, and google-genai through the whole stack; with the Vertex form what it prints, displays and writes must
be equal, with the Gemini API form it must do what the example does (tests/client/test_seed_examples.py's
expectations). google-genai always connects with ``wss://`` (it rewrites the base URL's scheme), so the
endpoint serves TLS here, with the emulator's self-signed certificate.
"""

from __future__ import annotations

import re
import ssl
from pathlib import Path
from typing import Any

import pytest
from google import genai
from google.oauth2.credentials import Credentials

from tests.client.seed_examples import EXAMPLES
from tests.client.test_seed_examples import EXPECTED, genai_client, run_example

MODEL = "gemini-live-2.5-flash"


@pytest.fixture
def flavour() -> str:
    return "vertex"


def gateway_client(form: str, base_url: str, ssl_ctx: ssl.SSLContext) -> genai.Client:
    http_options = {"base_url": base_url, "async_client_args": {"ssl": ssl_ctx}}
    if form == "vertex":
        return genai.Client(vertexai=True, project="p", location="us-central1",
                            credentials=Credentials(token="test-key"), http_options=http_options)
    return genai.Client(api_key="test-key", http_options=http_options)


async def direct_and_gateway(name: str, form: str, stack: dict[str, Any], base_url: str, ssl_ctx: ssl.SSLContext,
                             tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[dict[str, Any], dict[str, Any]]:
    (tmp_path / "sdk").mkdir()
    (tmp_path / "gateway").mkdir()
    sdk = await run_example(name, genai_client(stack["emulator"]), tmp_path / "sdk", monkeypatch)
    ours = await run_example(name, gateway_client(form, base_url, ssl_ctx), tmp_path / "gateway", monkeypatch)
    return sdk, ours


@pytest.mark.parametrize("form", ["vertex", "gemini"])
@pytest.mark.parametrize("name", list(EXAMPLES))
async def test_seed_example_through_the_websocket_endpoint(name: str, form: str, stack: dict[str, Any], base_url: str,
                                                           ssl_ctx: ssl.SSLContext, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    sdk, ours = await direct_and_gateway(name, form, stack, base_url, ssl_ctx, tmp_path, monkeypatch)
    assert EXPECTED[name](sdk), f"google-genai itself: {sdk['error'] or sdk['shown']}"
    if form == "vertex":
        assert ours == sdk
    elif name == "rag_engine":  # google-genai refuses Vertex's retrieval tool in the Gemini API form, before sending
        assert (ours["error"] or "").startswith("ValueError: retrieval parameter is only supported"), ours
    else:
        assert EXPECTED[name](ours), f"through the gateway: {ours['error'] or ours['shown']}"


async def test_function_calling_with_the_typo_fixed_answers_the_call(stack: dict[str, Any], base_url: str,
                                                                     ssl_ctx: ssl.SSLContext, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The published script reads ``tool_call`` where it means ``chunk.tool_call``: fixed, the call is answered."""
    monkeypatch.setitem(EXAMPLES, "function_calling_fixed",
                        re.sub(r"in tool_call\.", "in chunk.tool_call.", EXAMPLES["function_calling"]))
    sdk, ours = await direct_and_gateway("function_calling_fixed", "vertex", stack, base_url, ssl_ctx, tmp_path,
                                         monkeypatch)
    assert sdk["error"] is None and sdk["shown"], sdk
    assert ours == sdk
    answered = [m for c in stack["emulator"].conversations for m in c["messages"] if m["kind"] == "toolResponse"]
    assert [m["names"] for m in answered] == [["turn_on_the_lights"], ["turn_on_the_lights"]]


@pytest.mark.parametrize("form", ["gemini", "vertex"])
async def test_frames_of_each_client_form(form: str, stack: dict[str, Any], base_url: str,
                                          ssl_ctx: ssl.SSLContext) -> None:
    """What differs by path form reaches google-genai as each form expects: Vertex's ``setupComplete.sessionId``
    (the gateway's session id) and ``candidatesTokenCount`` (which google-genai reads as response tokens)."""
    client = gateway_client(form, base_url, ssl_ctx)
    async with client.aio.live.connect(model=MODEL, config={"response_modalities": ["TEXT"]}) as session:
        if form == "vertex":
            assert session.session_id in stack["front"].sessions
        await session.send_client_content(turns={"role": "user", "parts": [{"text": "Hello"}]})
        messages = [m async for m in session.receive()]
    assert "".join(m.text for m in messages if m.text) == 'You said: "Hello"'
    usage = messages[-1].usage_metadata
    assert usage is not None and usage.response_token_count

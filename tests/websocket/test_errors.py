"""Errors on the Live API WebSocket are the Live API's own closes, so google-genai raises ``APIError`` with the
code the real service would use, and the close reason starts with the gateway's ErrorInfo reason: a bad key
1007, an unknown model 1008, a full admission scope 1011, malformed JSON 1007. The stack authenticates callers
with API keys (tenant ``acme``) and admits one session of the model at a time."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from google import genai
from google.genai import errors
from google.oauth2.credentials import Credentials
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from livegate.admission.control import scope_of
from service.auth import key_line

KEY = "lgk_acme-websocket-key-0123456789abcdefgh"
MODEL = "gemini-live-2.5-flash"
GEMINI_PATH = "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent"
TEXT = {"response_modalities": ["TEXT"]}


@pytest.fixture
def ws_settings(tmp_path: Path) -> dict[str, Any]:
    keys = tmp_path / "caller-keys.json"
    keys.write_text(json.dumps({"keys": [key_line(KEY, "acme")]}))
    return {"auth_modes": ("api_key",), "caller_keys_file": str(keys), "setup_timeout_s": 2.0,
            "max_message_bytes": 64 * 1024,
            "admission_json": json.dumps({"scopes": {scope_of("default", MODEL): {"cap": 1}}})}


@pytest.fixture(autouse=True)
def trust_gateway_cert(monkeypatch: pytest.MonkeyPatch, ws_cert: tuple[str, str]) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", ws_cert[0])


def client(base_url: str, key: str = KEY) -> genai.Client:
    return genai.Client(api_key=key, http_options={"base_url": base_url})


async def test_the_right_key_is_tenant_acme_by_header_query_or_bearer(base_url: str, ws_url: str,
                                                                      stack: dict[str, Any]) -> None:
    async with client(base_url).aio.live.connect(model=MODEL, config=TEXT) as session:  # x-goog-api-key
        await session.send_client_content(turns={"role": "user", "parts": [{"text": "Hello"}]})
        assert "".join([m.text async for m in session.receive() if m.text]) == 'You said: "Hello"'
        assert [s.tenant for s in stack["front"].sessions.values()] == ["acme"]
    vertex = genai.Client(vertexai=True, project="p", location="us-central1", credentials=Credentials(token=KEY),
                          http_options={"base_url": base_url})
    async with vertex.aio.live.connect(model=MODEL, config=TEXT) as session:  # Authorization: Bearer <key>
        assert stack["front"].sessions[session.session_id].tenant == "acme"
    async with connect(f"{ws_url}{GEMINI_PATH}?key={KEY}") as ws:  # ?key=
        await ws.send(json.dumps({"setup": {"model": f"models/{MODEL}"}}))
        assert json.loads(await ws.recv()) == {"setupComplete": {}}


@pytest.mark.parametrize(("path", "query", "headers"), [
    ("/ws/google.ai.generativelanguage.v1alpha.GenerativeService.BidiGenerateContentConstrained",
     f"?access_token={KEY}", {}),  # @google/genai's form for an auth_tokens/ key
    ("/ws/google.ai.generativelanguage.v1alpha.GenerativeService.BidiGenerateContentConstrained",
     "", {"Authorization": f"Token {KEY}"}),  # google-genai's form for it
    ("/ws/google.cloud.aiplatform.v1beta1.LlmBidiService/BidiGenerateContent", "",
     {"Authorization": f"Bearer {KEY}"}),
])
async def test_other_credential_places(ws_url: str, stack: dict[str, Any], path: str, query: str,
                                       headers: dict[str, str]) -> None:
    async with connect(ws_url + path + query, additional_headers=headers) as ws:
        await ws.send(json.dumps({"setup": {"model": f"models/{MODEL}"}}))
        assert "setupComplete" in json.loads(await ws.recv())
        assert [s.tenant for s in stack["front"].sessions.values()] == ["acme"]


async def test_bad_key_is_1007(base_url: str) -> None:
    with pytest.raises(errors.APIError) as err:
        async with client(base_url, "lgk_not-a-key-of-this-gateway-00000000000").aio.live.connect(model=MODEL,
                                                                                               config=TEXT):
            pass
    assert err.value.code == 1007 and "API_KEY_INVALID" in str(err.value)


async def test_missing_key_is_1007_after_the_setup(ws_url: str) -> None:
    """As the Live API: the upgrade succeeds, the setup is read, then the close refuses the credential."""
    async with connect(ws_url + GEMINI_PATH) as ws:
        await ws.send(json.dumps({"setup": {"model": f"models/{MODEL}"}}))
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1007
    assert closed.value.rcvd.reason.startswith("CREDENTIALS_MISSING: ")


async def test_unknown_model_is_1008(base_url: str) -> None:
    with pytest.raises(errors.APIError) as err:
        async with client(base_url).aio.live.connect(model="gemini-9-live-nonexistent", config=TEXT):
            pass
    assert err.value.code == 1008 and "MODEL_NOT_FOUND" in str(err.value)


async def test_admission_full_is_1011_with_the_reason(base_url: str) -> None:
    c = client(base_url)
    async with c.aio.live.connect(model=MODEL, config=TEXT) as first:
        await first.send_client_content(turns={"role": "user", "parts": [{"text": "one"}]})
        assert [m async for m in first.receive()]
        with pytest.raises(errors.APIError) as err:  # the cap is 1: refused within setup_timeout_s
            async with c.aio.live.connect(model=MODEL, config=TEXT):
                pass
    assert err.value.code == 1011 and "ADMISSION_FULL" in str(err.value)


SETUP = {"setup": {"model": f"models/{MODEL}", "generationConfig": TEXT}}


async def close_after(ws_url: str, *messages: Any) -> Any:
    """Send ``messages`` (a dict after ``setup`` waits for ``setupComplete``); return the server's close frame."""
    async with connect(ws_url + GEMINI_PATH, additional_headers={"x-goog-api-key": KEY}) as ws:
        with pytest.raises(ConnectionClosed) as closed:
            for m in messages:
                await ws.send(m if isinstance(m, str) else json.dumps(m))
                if m is SETUP:
                    assert json.loads(await ws.recv()) == {"setupComplete": {}}
            while True:
                await ws.recv()
    assert closed.value.rcvd is not None
    return closed.value.rcvd


@pytest.mark.parametrize(("messages", "reason"), [
    (["{not json"], "MALFORMED_MESSAGE: the message is not JSON"),  # as the first message
    ([SETUP, {"clientContent": {"turns": "not a list of turns"}}],  # mid-session
     "MALFORMED_MESSAGE: `clientContent` is not a valid Live API message"),
    ([SETUP, {"realtimeInput": {"text": "x" * 70_000}}],  # max_message_bytes is 64 KiB
     "MESSAGE_TOO_LARGE: a client message of 70"),
    ([SETUP, SETUP], "SECOND_SETUP: "),
    ([{"reattach": {"session_id": "s-1"}}],  # the gateway's own gRPC message: not a Live API one
     "MALFORMED_MESSAGE: unknown message 'reattach'"),
], ids=["not_json", "bad_field", "too_large", "second_setup", "unknown_message"])
async def test_bad_messages_are_1007(ws_url: str, messages: list[Any], reason: str) -> None:
    close = await close_after(ws_url, *messages)
    assert close.code == 1007 and close.reason.startswith(reason), close


async def test_unknown_path_is_http_404(ws_url: str) -> None:
    with pytest.raises(InvalidStatus) as err:
        async with connect(ws_url + "/ws/google.ai.generativelanguage.v1beta.GenerativeService.Nope"):
            pass
    assert err.value.response.status_code == 404


async def test_no_session_is_left_behind(base_url: str, stack: dict[str, Any]) -> None:
    """A refused setup leaves no session, no lease and no key in Redis."""
    with pytest.raises(errors.APIError):
        async with client(base_url).aio.live.connect(model="gemini-9-live-nonexistent", config=TEXT):
            pass
    deadline = asyncio.get_running_loop().time() + 5
    while await stack["redis"].keys("lg:{s-*") and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.05)
    assert not stack["front"].sessions
    assert not await stack["redis"].keys("lg:{s-*")

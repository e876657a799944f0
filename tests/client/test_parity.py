"""livegate.client behaves like google-genai's ``AsyncSession`` where a ported example can tell: the setup reply
is consumed by ``connect()``, refusals are ``google.genai.errors.APIError``, ``send_realtime_input`` takes one kind
per call, and a cancelled ``receive()`` leaves the session usable and its exit clean."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import grpc
import pytest
from google.genai import errors, types

from livegate.client import Client
from tests.e2e.helpers import collect_turn, redis_keys, text_of

MODEL = "gemini-live-2.5-flash"
TEXT = {"response_modalities": ["TEXT"]}


async def hello(session: Any, text: str) -> str:
    await session.send_client_content(turns={"role": "user", "parts": [{"text": text}]})
    return text_of(await collect_turn(session))


async def no_session_keys(redis: Any, timeout_s: float = 10.0) -> bool:
    """Polls (bounded) until the gateway deleted every key of every session: a session ended, not detached."""
    async with asyncio.timeout(timeout_s):
        while any(k.startswith(("lg:{s-", "lg:{t:")) for k in await redis_keys(redis)):
            await asyncio.sleep(0.05)
    return True


async def test_connect_consumes_setup_complete(client: Client) -> None:
    async with client.aio.live.connect(model=MODEL, config=TEXT) as session:
        assert isinstance(session.setup_complete, types.LiveServerSetupComplete)
        await session.send_client_content(turns={"role": "user", "parts": [{"text": "Hello?"}]})
        messages = await collect_turn(session)
    assert messages and all(m.setup_complete is None for m in messages)
    assert messages[0].server_content is not None  # the first thing receive() yields is the model's reply
    assert text_of(messages) == 'You said: "Hello?"'


async def test_a_bad_model_is_an_api_error_at_connect(client: Client) -> None:
    with pytest.raises(errors.APIError) as info:
        async with client.aio.live.connect(model="gemini-imaginary", config=TEXT):
            pass
    err = info.value
    assert err.code == 1008 and err.status == "NOT_FOUND"  # the Live API's close code for an unknown model
    assert isinstance(err, errors.ClientError)
    assert err.reason == "MODEL_NOT_FOUND" and err.domain == "livegate.dev" and err.retryable is False
    assert err.grpc_status == grpc.StatusCode.NOT_FOUND and "gemini-imaginary" in (err.message or "")
    assert isinstance(err.__cause__, grpc.aio.AioRpcError) and err.rpc_error is err.__cause__
    assert "MODEL_NOT_FOUND" in str(err) and "1008" in str(err)


@pytest.mark.parametrize("settings_overrides", [{"admission_json": json.dumps(
    {"rate": {"default": {"per_s": 0.1, "burst": 1}}})}])
async def test_an_admission_refusal_is_an_api_error(client: Client, settings_overrides: dict[str, Any]) -> None:
    async with client.aio.live.connect(model=MODEL, config=TEXT) as first:
        try:
            async with client.aio.live.connect(model=MODEL, config=TEXT):
                raise AssertionError("the second session should have been refused")
        except errors.APIError as e:  # what a ported google-genai example catches
            err = e
        assert await hello(first, "still here") == 'You said: "still here"'
    assert err.code == 1011 and err.status == "RESOURCE_EXHAUSTED"  # the Live API closes quota refusals 1011
    assert isinstance(err, errors.ServerError)
    assert err.reason == "RATE_LIMITED" and err.retryable is True and err.retry_delay_s is not None
    assert err.error_metadata["retryable"] == "true"


async def test_an_error_mid_session_is_an_api_error_with_the_upstream_close(stack: dict[str, Any],
                                                                         client: Client) -> None:
    async with client.aio.live.connect(model=MODEL, config=TEXT) as session:
        assert await hello(session, "Hello?") == 'You said: "Hello?"'
        emulator = stack["emulator"]
        emulator.faults.add({"target": emulator.conversations[-1]["id"], "when": "immediately", "action": "close",
                             "close": "invalid_argument"})
        with pytest.raises(errors.APIError) as info:
            await hello(session, "Still there?")
    assert info.value.code == 1007 and info.value.reason == "UPSTREAM_INVALID_ARGUMENT"
    assert info.value.error_metadata["upstream_close_code"] == "1007"


async def test_send_realtime_input_takes_one_kind_per_call(client: Client) -> None:
    async with client.aio.live.connect(model=MODEL, config=TEXT) as session:
        audio = {"data": b"\x00\x00" * 320, "mime_type": "audio/pcm;rate=16000"}
        with pytest.raises(ValueError, match=r"^Only one argument can be set, got 2: \['audio', 'text'\]$"):
            await session.send_realtime_input(audio=audio, text="hello")
        with pytest.raises(ValueError, match=r"^Only one argument can be set, got 0: \[\]$"):
            await session.send_realtime_input()
        await session.send_realtime_input(text="hello")  # one kind: sent, and the session goes on
        assert "hello" in text_of(await collect_turn(session))


async def test_a_cancelled_receive_leaves_the_session_usable_and_its_exit_clean(stack: dict[str, Any],
                                                                                client: Client) -> None:
    async with client.aio.live.connect(model=MODEL, config=TEXT) as session:
        started = asyncio.Event()

        async def listen() -> None:
            started.set()
            async for _ in session.receive():  # nothing comes: no turn was sent
                pass

        task = asyncio.create_task(listen())
        await started.wait()
        await asyncio.sleep(0)  # the task is now blocked inside receive()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await hello(session, "Are you still there?") == 'You said: "Are you still there?"'
        task = asyncio.create_task(listen())
        await started.wait()
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    # leaving `async with` raised nothing, and the gateway ended the session (a broken stream would leave it
    # detached, waiting for a reattach, for reattach_grace_s = 30 s)
    assert await no_session_keys(stack["redis"])
    assert stack["emulator"].conversations[-1]["connections"] == 1



async def test_a_timeout_around_the_session_ends_it_cleanly(stack: dict[str, Any], client: Client) -> None:
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.5):
            async with client.aio.live.connect(model=MODEL, config=TEXT) as session:
                async for _ in session.receive():  # nothing comes: the timeout cancels this read
                    pass
    assert await no_session_keys(stack["redis"])  # ended, not left detached for a reattach
    assert stack["emulator"].conversations[-1]["closes"][-1]["code"] == 1000

class TestWithCallerKeys:
    @pytest.fixture
    def settings_overrides(self, tmp_path: Any) -> dict[str, Any]:
        from service.auth import hash_key

        keys = tmp_path / "keys.json"
        keys.write_text(json.dumps({"keys": [{"tenant": "acme", "sha256": hash_key("acme-key"), "name": "a"}]}))
        return {"auth_modes": ("api_key",), "caller_keys_file": str(keys)}

    async def test_a_bad_credential_is_an_api_error_1007(self, stack: dict[str, Any]) -> None:
        async with Client(stack["front"].address, metadata=[("x-api-key", "not-a-key")]) as client:
            with pytest.raises(errors.APIError) as info:
                async with client.aio.live.connect(model=MODEL, config=TEXT):
                    pass
        # the Live API closes a bad API key with 1007 "API key not valid. Please pass a valid API key."
        assert info.value.code == 1007 and info.value.status == "UNAUTHENTICATED"
        assert info.value.reason == "API_KEY_INVALID" and isinstance(info.value, errors.ClientError)
        async with Client(stack["front"].address, metadata=[("x-api-key", "acme-key")]) as client:
            async with client.aio.live.connect(model=MODEL, config=TEXT) as session:
                assert await hello(session, "me again") == 'You said: "me again"'

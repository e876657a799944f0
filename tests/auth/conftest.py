"""A real gateway per test with a chosen authenticator: the session's redis-server, the emulator over TLS, one
worker and a front built as production builds it (``build_authenticator(settings)``; TLS through
``service.tls.bind``). Every test also checks that no secret it used reached a log line or stdout/stderr."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from livegate.settings import Settings
from livegate.v1 import gateway_pb2 as gw
from livegate.v1 import gateway_pb2_grpc
from service.auth import build_authenticator
from service.server import Front

MODEL = "gemini-live-2.5-flash"


@pytest.fixture
def gateway(redis: Any, redis_url: str, emulator_config: Any) -> Any:
    """``async with gateway(auth_modes=(...), ...) as gw_parts``: a running stack with these settings."""

    @contextlib.asynccontextmanager
    async def start(**overrides: Any) -> AsyncIterator[dict[str, Any]]:
        from emulator.server import EmulatorServer
        from workers.worker import Worker

        settings = Settings(**{"redis_url": redis_url, "front_listen": "127.0.0.1:0", "worker_capacity": 10,
                               "setup_timeout_s": 10.0, "log_json": False, "upstream_api_key": "test-upstream-key",
                               **overrides})
        async with contextlib.AsyncExitStack() as stack:
            emu = EmulatorServer(emulator_config)
            await emu.start()
            stack.push_async_callback(emu.aclose)
            s = settings.model_copy(update={"upstream_url": emu.url, "upstream_ca_file": str(emu.cert_path or "")})
            worker = Worker(s)
            await worker.start()
            stack.push_async_callback(worker.aclose)
            front = Front(s, authenticator=build_authenticator(s))
            await front.start()
            stack.push_async_callback(front.aclose, 1.0)
            yield {"settings": s, "front": front, "worker": worker, "redis": redis, "address": front.address}

    return start


@pytest.fixture
def secrets_used(caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]) -> Iterator[list[str]]:
    """Append every key, token and private-key fragment a test uses; after the test none may appear in the
    captured log records (DEBUG and up) or in the process's stdout/stderr (grpc's C core included)."""
    caplog.set_level(logging.DEBUG)
    used: list[str] = []
    yield used
    out, err = capfd.readouterr()
    fmt = logging.Formatter("%(name)s %(levelname)s %(message)s")  # with tracebacks (exc_info) and args
    records = [r for phase in ("setup", "call") for r in caplog.get_records(phase)]  # caplog.text: this phase only
    assert records, "no log record captured: the leak check would prove nothing"
    captured = {"logs": "\n".join(fmt.format(r) for r in records), "stdout": out, "stderr": err}
    assert used, "the test registered no secret to look for"
    for where, text in captured.items():
        for secret in used:
            assert secret not in text, f"a secret ({len(secret)} chars) leaked into {where}"


def pem_fragments(pem: bytes) -> list[str]:
    """Lines of a private key's base64 body: any of them in a log would be a leak."""
    lines = pem.decode().splitlines()
    return [line for line in lines if line and not line.startswith("-----")][:3]


def jwt_fragments(token: str) -> list[str]:
    return [token, token.rsplit(".", 1)[-1]]


# -- calling the gateway ------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def channel(address: str, credentials: grpc.ChannelCredentials | None = None) -> AsyncIterator[grpc.aio.Channel]:
    ch = (grpc.aio.secure_channel(address, credentials) if credentials else grpc.aio.insecure_channel(address))
    try:
        yield ch
    finally:
        await ch.close()


def error_reason(err: grpc.aio.AioRpcError) -> str:
    """The google.rpc.ErrorInfo reason of a status the gateway decided ('' if none)."""
    for key, value in err.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            status = status_pb2.Status.FromString(value)
            for detail in status.details:
                info = error_details_pb2.ErrorInfo()
                if detail.Unpack(info):
                    return info.reason
    return ""


async def open_session(ch: grpc.aio.Channel, md: tuple[tuple[str, str], ...] = ()) -> tuple[Any, gw.SessionInfo]:
    """Connect and set up; returns the live call and its SessionInfo (id + reattach token)."""
    call = gateway_pb2_grpc.LiveGatewayStub(ch).Connect(metadata=md)
    m = gw.ClientMessage()
    m.setup.model = MODEL
    m.setup.generation_config.response_modalities.append(1)  # TEXT
    await call.write(m)
    first = await call.read()
    assert first is not grpc.aio.EOF and first.WhichOneof("message") == "session", first
    return call, first.session


async def refused(coro: Any) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await coro
    return info.value


async def connect_refusal(ch: grpc.aio.Channel, md: tuple[tuple[str, str], ...]) -> grpc.aio.AioRpcError:
    """A Connect the gateway refuses before any session exists."""
    call = gateway_pb2_grpc.LiveGatewayStub(ch).Connect(metadata=md)
    m = gw.ClientMessage()
    m.setup.model = MODEL
    with contextlib.suppress(grpc.aio.AioRpcError, asyncio_errors()):
        await call.write(m)
    err = await refused(call.read())
    return err


def asyncio_errors() -> type[BaseException]:
    import asyncio

    return asyncio.InvalidStateError


async def health_check(ch: grpc.aio.Channel, service: str = "") -> int:
    resp = await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
    return int(resp.status)


def stub(ch: grpc.aio.Channel) -> gateway_pb2_grpc.LiveGatewayStub:
    return gateway_pb2_grpc.LiveGatewayStub(ch)


async def finish(*calls: Any) -> None:
    """End sessions the way a caller does (half-close, read to the end) so no close is still in flight when
    the stack stops."""
    for call in calls:
        await call.done_writing()
    async with asyncio.timeout(15):
        for call in calls:
            while await call.read() is not grpc.aio.EOF:
                pass

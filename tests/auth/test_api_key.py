"""Caller API keys: hashed in a file, accepted as x-api-key or a bearer token, rotated without a restart;
health and reflection stay open."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from livegate.v1 import gateway_pb2 as gw
from service.auth import hash_key, key_line
from tests.auth.conftest import (channel, connect_refusal, error_reason, finish, health_check, open_session, refused,
                                 stub)

ACME_KEY = "lgk_acme-first-key-0123456789abcdefghijkl"
ACME_KEY_2 = "lgk_acme-rotated-key-9876543210zyxwvutsrq"
BETA_KEY = "lgk_beta-key-abcdefabcdefabcdefabcdefabcd"


def write_keys(path: Path, *entries: dict[str, str]) -> None:
    """As a Kubernetes Secret volume updates: write a new timestamped dir, swap the ..data symlink."""
    d = path.parent
    new = d / f"..{os.urandom(4).hex()}"
    new.mkdir()
    (new / path.name).write_text(json.dumps({"keys": list(entries)}))
    tmp = d / "..data_tmp"
    tmp.symlink_to(new.name)
    os.replace(tmp, d / "..data")
    if not path.is_symlink():
        path.symlink_to(f"..data/{path.name}")


async def test_key_accepted_as_x_api_key_x_goog_api_key_or_bearer(gateway: Any, tmp_path: Path, secrets_used: list[str]) -> None:
    secrets_used += [ACME_KEY]
    keys = tmp_path / "caller-keys"
    write_keys(keys, key_line(ACME_KEY, "acme", "acme-prod-1"))
    assert ACME_KEY not in keys.read_text()  # only the hash is stored
    async with gateway(auth_modes=("api_key",), caller_keys_file=str(keys)) as g, channel(g["address"]) as ch:
        call, info = await open_session(ch, (("x-api-key", ACME_KEY),))
        for md in ((("x-api-key", ACME_KEY),), (("x-goog-api-key", ACME_KEY),),
                   (("authorization", f"Bearer {ACME_KEY}"),)):
            view = await stub(ch).GetSession(gw.GetSessionRequest(session_id=info.session_id), metadata=md)
            assert view.tenant == "acme"
        await finish(call)


async def test_wrong_or_missing_key_refused(gateway: Any, tmp_path: Path, secrets_used: list[str]) -> None:
    wrong = "lgk_not-a-key-of-this-gateway-000000000000"
    secrets_used += [ACME_KEY, wrong]
    keys = tmp_path / "caller-keys"
    write_keys(keys, key_line(ACME_KEY, "acme"))
    async with gateway(auth_modes=("api_key",), caller_keys_file=str(keys)) as g, channel(g["address"]) as ch:
        cases = {(("x-api-key", wrong),): "API_KEY_INVALID",
                 (("authorization", f"Bearer {wrong}"),): "API_KEY_INVALID",
                 (("authorization", f"Basic {wrong}"),): "CREDENTIALS_MISSING",
                 (): "CREDENTIALS_MISSING"}
        for md, reason in cases.items():
            for err in (await refused(stub(ch).ListSessions(gw.ListSessionsRequest(), metadata=md)),
                        await connect_refusal(ch, md)):
                assert err.code() == grpc.StatusCode.UNAUTHENTICATED, (md, err)
                assert error_reason(err) == reason
                assert wrong not in (err.details() or "")
                assert "key" in (err.details() or "")  # tells a person what to fix


async def test_rotation_without_restart(gateway: Any, tmp_path: Path, secrets_used: list[str],
                                        caplog: Any) -> None:
    secrets_used += [ACME_KEY, ACME_KEY_2]
    keys = tmp_path / "caller-keys"
    write_keys(keys, key_line(ACME_KEY, "acme", "acme-1"))
    async with gateway(auth_modes=("api_key",), caller_keys_file=str(keys)) as g, channel(g["address"]) as ch:
        lst = stub(ch).ListSessions
        await lst(gw.ListSessionsRequest(), metadata=(("x-api-key", ACME_KEY),))

        async def accepted(key: str) -> bool:
            try:
                await lst(gw.ListSessionsRequest(), metadata=(("x-api-key", key),))
                return True
            except grpc.aio.AioRpcError as err:
                assert err.code() == grpc.StatusCode.UNAUTHENTICATED
                return False

        async def until(pred: Any, timeout_s: float = 5.0) -> None:  # bounded polling of the real front
            async with asyncio.timeout(timeout_s):
                while not await pred():
                    await asyncio.sleep(0.1)

        # rotate: the Secret now holds only the new key (symlink swap, as the kubelet does it)
        write_keys(keys, key_line(ACME_KEY_2, "acme", "acme-2"))

        async def rotated() -> bool:
            return await accepted(ACME_KEY_2) and not await accepted(ACME_KEY)

        await until(rotated)

        # a broken new version keeps the previous keys and says so in the log
        new = keys.parent / "..broken"
        new.mkdir()
        (new / keys.name).write_text('{"keys": [{"tenant": "acme", "sha256": "not-hex"}]}')
        (keys.parent / "..tmp").symlink_to(new.name)
        os.replace(keys.parent / "..tmp", keys.parent / "..data")

        async def complained() -> bool:
            await accepted(ACME_KEY_2)
            return "changed but is invalid" in caplog.text

        await until(complained)
        assert await accepted(ACME_KEY_2)

        # an in-place rewrite (same inode) is seen too
        (new / keys.name).write_text(json.dumps({"keys": [key_line(ACME_KEY, "acme", "acme-back")]}))
        await until(lambda: accepted(ACME_KEY))
        assert not await accepted(ACME_KEY_2)


async def test_health_and_reflection_open_without_credentials(gateway: Any, tmp_path: Path,
                                                              secrets_used: list[str]) -> None:
    secrets_used += [ACME_KEY]
    keys = tmp_path / "caller-keys"
    write_keys(keys, key_line(ACME_KEY, "acme"))
    async with gateway(auth_modes=("api_key",), caller_keys_file=str(keys)) as g, channel(g["address"]) as ch:
        assert await health_check(ch) == health_pb2.HealthCheckResponse.SERVING
        assert await health_check(ch, "livegate.v1.LiveGateway") == health_pb2.HealthCheckResponse.SERVING
        call = reflection_pb2_grpc.ServerReflectionStub(ch).ServerReflectionInfo()
        await call.write(reflection_pb2.ServerReflectionRequest(list_services=""))
        resp = await call.read()
        await call.done_writing()
        names = {s.name for s in resp.list_services_response.service}
        assert "livegate.v1.LiveGateway" in names and "grpc.health.v1.Health" in names
        # while the gateway itself refuses the same anonymous caller
        err = await refused(stub(ch).ListSessions(gw.ListSessionsRequest()))
        assert err.code() == grpc.StatusCode.UNAUTHENTICATED


def test_cli_mints_and_hashes_keys() -> None:
    out = subprocess.run([sys.executable, "-m", "service.auth", "hash", "--tenant", "beta", "--name", "beta-1"],
                         input=BETA_KEY + "\n", capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == {"tenant": "beta", "sha256": hash_key(BETA_KEY), "name": "beta-1"}
    assert BETA_KEY not in out.stdout + out.stderr
    new = subprocess.run([sys.executable, "-m", "service.auth", "new", "--tenant", "beta"],
                         capture_output=True, text=True, check=True)
    key = new.stderr.rsplit(" ", 1)[-1].strip()
    assert key.startswith("lgk_") and json.loads(new.stdout)["sha256"] == hash_key(key)
    bad = subprocess.run([sys.executable, "-m", "service.auth", "hash", "--tenant", "no{braces}"],
                         input="k\n", capture_output=True, text=True)
    assert bad.returncode == 2 and "tenant" in bad.stderr


async def test_every_refused_connect_carries_its_status(gateway: Any, tmp_path: Path, secrets_used: list[str]) -> None:
    """1,000 Connects with a wrong key, each writing its setup at once: every one is refused UNAUTHENTICATED.
    (Refused before its first message was read, about 1 in 1,000 reached a grpc-python caller as INTERNAL,
    "Internal error from Core": its send failed as the refusal arrived, and that overrode the status.)"""
    secrets_used += [ACME_KEY]
    keys = tmp_path / "caller-keys"
    write_keys(keys, key_line(ACME_KEY, "acme", "acme-prod-1"))
    wrong = (("x-api-key", "lgk_wrong-key-000000000000000000000000"),)
    codes: dict[str, int] = {}
    async with gateway(auth_modes=("api_key",), caller_keys_file=str(keys)) as g, channel(g["address"]) as ch:
        for _ in range(40):
            for err in await asyncio.gather(*(connect_refusal(ch, wrong) for _ in range(25))):
                codes[err.code().name] = codes.get(err.code().name, 0) + 1
    assert codes == {"UNAUTHENTICATED": 1000}

"""Tenant isolation: another tenant's session is indistinguishable from one that does not exist (GetSession,
CloseSession, reattach), and ListSessions shows each tenant only its own."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import grpc

from livegate.v1 import gateway_pb2 as gw
from service.auth import key_line
from tests.auth.conftest import channel, error_reason, finish, open_session, refused, stub

ACME, BETA = "lgk_isolation-acme-dddddddddddddddddddddddd", "lgk_isolation-beta-eeeeeeeeeeeeeeeeeeeeeeee"
A, B = (("x-api-key", ACME),), (("x-api-key", BETA),)
MISSING = "s-thisSessionDoesNotExist0"


def same_refusal(err: grpc.aio.AioRpcError, nonexistent: grpc.aio.AioRpcError, sid: str) -> None:
    assert err.code() == nonexistent.code() == grpc.StatusCode.NOT_FOUND
    assert error_reason(err) == error_reason(nonexistent)
    assert err.details().replace(sid, "<id>") == nonexistent.details().replace(MISSING, "<id>")


async def reattach_refusal(ch: grpc.aio.Channel, md: Any, sid: str, token: str) -> grpc.aio.AioRpcError:
    call = stub(ch).Connect(metadata=md)
    await call.write(gw.ClientMessage(reattach=gw.Reattach(session_id=sid, reattach_token=token)))
    return await refused(call.read())


async def test_tenant_b_cannot_see_or_touch_tenant_a(gateway: Any, tmp_path: Path, secrets_used: list[str]) -> None:
    secrets_used += [ACME, BETA]
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps({"keys": [key_line(ACME, "acme"), key_line(BETA, "beta")]}))
    async with gateway(auth_modes=("api_key",), caller_keys_file=str(keys)) as g, channel(g["address"]) as ch:
        a_call, a = await open_session(ch, A)
        a2_call, a2 = await open_session(ch, A)
        b_call, b = await open_session(ch, B)
        secrets_used += [a.reattach_token, a2.reattach_token, b.reattach_token]
        s = stub(ch)

        nonexistent = await refused(s.GetSession(gw.GetSessionRequest(session_id=MISSING), metadata=B))
        same_refusal(await refused(s.GetSession(gw.GetSessionRequest(session_id=a.session_id), metadata=B)),
                     nonexistent, a.session_id)

        nonexistent = await refused(s.CloseSession(gw.CloseSessionRequest(session_id=MISSING), metadata=B))
        same_refusal(await refused(s.CloseSession(gw.CloseSessionRequest(session_id=a.session_id), metadata=B)),
                     nonexistent, a.session_id)

        # even with A's real reattach token
        nonexistent = await reattach_refusal(ch, B, MISSING, a.reattach_token)
        same_refusal(await reattach_refusal(ch, B, a.session_id, a.reattach_token), nonexistent, a.session_id)

        listed_a = await s.ListSessions(gw.ListSessionsRequest(), metadata=A)
        listed_b = await s.ListSessions(gw.ListSessionsRequest(), metadata=B)
        assert {x.session_id for x in listed_a.sessions} == {a.session_id, a2.session_id}
        assert {x.session_id for x in listed_b.sessions} == {b.session_id}
        assert {x.tenant for x in listed_a.sessions} == {"acme"} and listed_b.sessions[0].tenant == "beta"

        # B's attempts changed nothing: A's session is still there, not closing
        view = await s.GetSession(gw.GetSessionRequest(session_id=a.session_id), metadata=A)
        assert view.tenant == "acme" and view.state != gw.Session.CLOSING
        await finish(a_call, a2_call, b_call)

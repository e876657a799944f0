"""Tenancy under OIDC (issue 20): with ``oidc_tenants`` only listed identities are tenants (others are
PERMISSION_DENIED), a pattern can map many identities to one tenant, and whatever identities call, the
``tenant`` metric label takes only the values the configuration names, plus ``other``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc
import pytest

from livegate import metrics
from livegate.redis import keys, records
from livegate.settings import Settings
from livegate.tenants import TenantSet
from livegate.v1 import gateway_pb2 as gw
from service.auth import build_authenticator
from tests.auth.conftest import channel, connect_refusal, error_reason, finish, jwt_fragments, open_session, refused, stub
from tests.auth.pki import TokenIssuer
from tests.auth.test_oidc import AUD, bearer, oidc_settings


@pytest.fixture(scope="module")
def issuer() -> TokenIssuer:
    return TokenIssuer("kid-tenants")


def label_values(metric: Any, label: str) -> set[str]:
    return {s.labels[label] for family in metric.collect() for s in family.samples if label in s.labels}


async def test_allowlist_denies_unlisted_identities(gateway: Any, issuer: TokenIssuer, tmp_path: Path,
                                                    secrets_used: list[str]) -> None:
    jwks = issuer.write_jwks(tmp_path / "jwks.json")
    listed = issuer.token(aud=AUD, email="acme@example.com")
    by_glob = issuer.token(aud=AUD, email="bot-7@ci.example.com")
    mapped = issuer.token(aud=AUD, email="svc-a@acme.iam.gserviceaccount.com")
    mapped2 = issuer.token(aud=AUD, email="svc-b@acme.iam.gserviceaccount.com")
    stranger = issuer.token(aud=AUD, email="mallory@evil.example")
    for t in (listed, by_glob, mapped, mapped2, stranger):
        secrets_used += jwt_fragments(t)
    tenants = ("acme@example.com", "*@ci.example.com", "*@acme.iam.gserviceaccount.com => acme")
    async with gateway(**oidc_settings(str(jwks)), oidc_tenants=tenants) as g, channel(g["address"]) as ch:
        for token, tenant in ((listed, "acme@example.com"), (by_glob, "bot-7@ci.example.com"), (mapped, "acme")):
            call, info = await open_session(ch, bearer(token))
            view = await stub(ch).GetSession(gw.GetSessionRequest(session_id=info.session_id), metadata=bearer(token))
            assert view.tenant == tenant
            await finish(call)
        # two identities mapped to one tenant share it: one sees the other's session
        call, info = await open_session(ch, bearer(mapped))
        view = await stub(ch).GetSession(gw.GetSessionRequest(session_id=info.session_id), metadata=bearer(mapped2))
        assert view.tenant == "acme"
        await finish(call)
        # an identity outside the list: refused on every RPC, with a reason and an actionable message
        for err in (await refused(stub(ch).ListSessions(gw.ListSessionsRequest(), metadata=bearer(stranger))),
                    await connect_refusal(ch, bearer(stranger))):
            assert err.code() == grpc.StatusCode.PERMISSION_DENIED, err
            assert error_reason(err) == "TENANT_NOT_ALLOWED"
            assert "mallory@evil.example" in err.details() and "oidc_tenants" in err.details()
        assert not await g["redis"].keys("lg:{t:mallory@evil.example}*")
    # the labels: the exact name and the mapping's target are named; the glob's identity is `other`
    labels = label_values(metrics.SESSIONS_STARTED, "tenant")
    assert {"acme@example.com", "acme", "other"} <= labels
    assert "bot-7@ci.example.com" not in labels


async def test_without_a_list_every_identity_is_a_tenant_but_labels_stay_bounded(
        gateway: Any, issuer: TokenIssuer, tmp_path: Path, secrets_used: list[str]) -> None:
    """Issue 20: 87 identities gave 87 `tenant` label values. Without oidc_tenants (every verified identity is
    its own tenant, as before), identities the configuration does not name are all counted as `other`."""
    jwks = issuer.write_jwks(tmp_path / "jwks.json")
    identities = [f"caller-{i}@many.example" for i in range(8)]  # the stack has one worker of 10
    tokens = [issuer.token(aud=AUD, email=e) for e in identities]
    for t in tokens:
        secrets_used += jwt_fragments(t)
    async with gateway(**oidc_settings(str(jwks))) as g, channel(g["address"]) as ch:
        calls = []
        for token in tokens:
            call, info = await open_session(ch, bearer(token))
            calls.append(call)
        # the worker labels the session's token counts with the label the front decided (in the record)
        record = records.SessionRecord.from_redis(await g["redis"].hgetall(keys.session_meta(info.session_id)))
        assert record.tenant == identities[-1] and record.tenant_label == "other"
        await finish(*calls)
    for metric in (metrics.SESSIONS_STARTED, metrics.SESSIONS_ENDED):
        labels = label_values(metric, "tenant")
        assert not labels & set(identities), labels
        assert "other" in labels


def test_bad_entries_stop_the_front(tmp_path: Path) -> None:
    for entry, match in (("re:(unclosed", "regular expression"), ("has space", "not a tenant name"),
                         ("*@x.example => not a tenant!", "not a tenant name")):
        with pytest.raises(ValueError, match=match):
            build_authenticator(Settings(auth_modes=("oidc",), oidc_audience=AUD, oidc_jwks=str(tmp_path / "j.json"),
                                         oidc_tenants=(entry,)))


def test_tenant_set_resolution() -> None:
    ts = TenantSet.parse(["a@x.example", "re:svc-[0-9]+@y\\.example", "*@z.example => zed"])
    assert ts.resolve("a@x.example") == "a@x.example"
    assert ts.resolve("svc-12@y.example") == "svc-12@y.example"
    assert ts.resolve("svc-x@y.example") is None  # a regex must match the whole identity
    assert ts.resolve("anyone@z.example") == "zed"
    assert ts.resolve("a@x.example.evil") is None
    assert ts.named() == {"a@x.example", "zed"}
    assert not TenantSet.parse([])

"""Caller authentication with Google-signed OIDC ID tokens (auth mode ``oidc``).

A caller sends ``authorization: Bearer <id token>`` (e.g. from the GCE/GKE metadata server's
``.../identity?audience=<aud>``, or ``gcloud auth print-identity-token --audiences=<aud>``). The token is
verified with google-auth (signature, ``iat``/``exp`` with clock skew, ``aud``), then its issuer and the claim
that names the tenant (``Settings.oidc_tenant_claim``, ``email`` by default) are checked.

The signing keys come from ``Settings.oidc_jwks``: an https URL (Google's
``https://www.googleapis.com/oauth2/v3/certs`` JWKS or ``.../oauth2/v1/certs`` PEM map), fetched with
google-auth's transport and cached per ``Cache-Control: max-age`` (5 min without one), or a file path
(reloaded when it changes). Both a JWKS (``{"keys": [...]}``, RSA and EC P-256 keys) and a ``{kid: PEM}``
document are accepted.
"""

from __future__ import annotations

import base64
import concurrent.futures
import json
import logging
import re
import threading
import time
import urllib.parse
from collections.abc import Callable, Sequence
from typing import Any

import grpc
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from google.auth import exceptions as gexc
from google.auth import jwt

from livegate.errors import GatewayError, echo
from livegate.tenants import TenantSet
from service.auth import WatchedFile, bearer, check_tenant, looks_like_jwt, metadata, unauthenticated

logger = logging.getLogger(__name__)

DEFAULT_MAX_AGE_S = 300.0
MIN_REFETCH_S = 30.0  # an unknown key id refetches the URL at most this often
FETCH_TIMEOUT_S = 5.0
CLOCK_SKEW_S = 30


def _b64int(value: str) -> int:
    return int.from_bytes(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)), "big")


def jwk_to_pem(jwk: dict[str, Any]) -> str:
    """One JWK (RSA, or EC P-256) -> a PEM public key google-auth can verify with."""
    kty = jwk.get("kty")
    if kty == "RSA":
        key: Any = rsa.RSAPublicNumbers(_b64int(jwk["e"]), _b64int(jwk["n"])).public_key()
    elif kty == "EC" and jwk.get("crv") == "P-256":
        key = ec.EllipticCurvePublicNumbers(_b64int(jwk["x"]), _b64int(jwk["y"]), ec.SECP256R1()).public_key()
    else:
        raise ValueError(f"unsupported JWK kty={kty!r} crv={jwk.get('crv')!r}")
    return str(key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode())


def parse_certs(text: str | bytes) -> dict[str, str]:
    """A JWKS or a Google-style ``{kid: PEM}`` document -> {kid: PEM}; ValueError if neither."""
    doc = json.loads(text)
    if isinstance(doc, dict) and isinstance(doc.get("keys"), list):
        out: dict[str, str] = {}
        for i, jwk in enumerate(doc["keys"]):
            if not isinstance(jwk, dict) or jwk.get("use", "sig") != "sig":
                continue
            try:
                out[str(jwk.get("kid", f"#{i}"))] = jwk_to_pem(jwk)
            except (KeyError, ValueError, TypeError) as exc:
                logger.warning("JWKS key %s skipped: %s", jwk.get("kid", i), exc)
        if not out:
            raise ValueError("the JWKS has no usable signing key")
        return out
    if isinstance(doc, dict) and doc and all(isinstance(v, str) and "-----BEGIN" in v for v in doc.values()):
        return {str(k): v for k, v in doc.items()}
    raise ValueError('expected a JWKS {"keys": [...]} or a {kid: PEM certificate} document')


def _max_age(cache_control: str | None) -> float:
    m = re.search(r"max-age=(\d+)", cache_control or "")
    return float(m.group(1)) if m else DEFAULT_MAX_AGE_S


class UrlCerts:
    """Signing keys fetched from an https URL. Stale keys keep serving while one background fetch refreshes
    them; only the very first fetch (and one for an unknown key id, rate-limited) blocks the caller."""

    def __init__(self, url: str, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.url = url
        self._clock = clock
        self._certs: dict[str, str] = {}
        self._expires = 0.0
        self._fetched_at = float("-inf")
        self._lock = threading.Lock()
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="oidc-jwks")
        self._refresh: concurrent.futures.Future[None] | None = None

    def fetch(self) -> None:
        from google.auth.transport.requests import Request

        resp = Request()(self.url, method="GET", timeout=FETCH_TIMEOUT_S)
        if resp.status != 200:
            raise ValueError(f"GET {self.url} answered {resp.status}")
        certs = parse_certs(resp.data)
        headers = {k.lower(): v for k, v in resp.headers.items()}
        with self._lock:
            self._certs, self._fetched_at = certs, self._clock()
            self._expires = self._fetched_at + _max_age(headers.get("cache-control"))
        logger.info("OIDC signing keys fetched from %s (%d keys)", self.url, len(certs))

    def _fetch_logged(self) -> None:
        try:
            self.fetch()
        except Exception as exc:  # keep the previous keys
            logger.error("OIDC signing keys: fetching %s failed (%r); keeping the previous keys", self.url, exc)

    def get(self, kid: str | None) -> dict[str, str]:
        now = self._clock()
        if not self._certs or (kid and kid not in self._certs and now - self._fetched_at >= MIN_REFETCH_S):
            self._fetch_logged()  # blocking: nothing to verify with yet, or the issuer rotated its keys
        elif now >= self._expires and (self._refresh is None or self._refresh.done()):
            certs = self._certs  # this call is served from the cache, however fast the refresh is
            self._refresh = self._pool.submit(self._fetch_logged)
            return certs
        return self._certs


class OidcAuth:
    name = "oidc"

    def __init__(self, audience: str | Sequence[str], jwks: str, issuers: Sequence[str], tenant_claim: str,
                 *, clock_skew_s: int = CLOCK_SKEW_S, tenants: TenantSet = TenantSet()) -> None:
        self.audience = [audience] if isinstance(audience, str) else list(audience)
        self.tenants = tenants  # empty: every verified identity is a tenant
        self.issuers = tuple(issuers)
        self.tenant_claim = tenant_claim
        self.clock_skew_s = clock_skew_s
        self.source = jwks
        if jwks.startswith("http://") and urllib.parse.urlsplit(jwks).hostname not in ("127.0.0.1", "localhost"):
            raise ValueError("oidc_jwks must be an https URL (plain http only on loopback, for tests)")
        if jwks.startswith("https://") or jwks.startswith("http://"):
            self._url: UrlCerts | None = UrlCerts(jwks)
            self._file: WatchedFile | None = None
        else:
            self._url, self._file = None, WatchedFile(jwks, parse_certs, "OIDC JWKS file")

    def __repr__(self) -> str:
        return (f"<OidcAuth aud={self.audience} jwks={self.source} claim={self.tenant_claim} "
                f"tenants={self.tenants.describe() if self.tenants else 'any'}>")

    def _certs(self, kid: str | None) -> dict[str, str]:
        if self._url is not None:
            return self._url.get(kid)
        assert self._file is not None
        if self._file.value is None:
            try:
                self._file.load()
            except (OSError, ValueError) as exc:
                logger.error("OIDC JWKS file %s unusable: %s", self._file.path, exc)
                return {}
        value = self._file.current()
        return value if isinstance(value, dict) else {}

    def presented(self, context: grpc.aio.ServicerContext) -> bool:
        token = bearer(metadata(context))
        return token is not None and looks_like_jwt(token)

    def tenant(self, context: grpc.aio.ServicerContext) -> str:
        token = bearer(metadata(context))
        if not token:
            raise unauthenticated("CREDENTIALS_MISSING", "no ID token: send metadata "
                                  f"`authorization: Bearer <ID token for audience {self.audience[0]}>`")
        try:
            header = jwt.decode_header(token)
        except (gexc.GoogleAuthError, ValueError, TypeError):
            raise unauthenticated("TOKEN_MALFORMED", "the bearer token is not a JWT; send a Google-signed "
                                  "OIDC ID token") from None
        kid = header.get("kid") if isinstance(header, dict) else None
        certs = self._certs(kid if isinstance(kid, str) else None)
        if not certs:
            raise unauthenticated("TOKEN_KEYS_UNAVAILABLE", "the gateway could not load the ID-token signing "
                                  "keys; retry later, and tell its operator (oidc_jwks)")
        try:
            claims = jwt.decode(token, certs=certs, audience=self.audience,
                                clock_skew_in_seconds=self.clock_skew_s)
        except (gexc.GoogleAuthError, ValueError, TypeError) as exc:
            raise _refusal(str(exc), self.audience) from None
        iss = claims.get("iss")
        if iss not in self.issuers:
            raise unauthenticated("TOKEN_ISSUER", f"the ID token's issuer {echo(iss)} is not trusted "
                                  f"(expected one of {', '.join(self.issuers)}); get a token from that issuer")
        tenant = claims.get(self.tenant_claim)
        if not isinstance(tenant, str) or not tenant:
            raise unauthenticated("TOKEN_TENANT_CLAIM", f"the ID token has no `{self.tenant_claim}` claim naming "
                                  "the tenant; request it (e.g. format=full / include_email) or use another identity")
        if self.tenant_claim == "email" and claims.get("email_verified") is False:
            raise unauthenticated("TOKEN_TENANT_CLAIM", "the ID token's email is not verified")
        if not self.tenants:
            return check_tenant(tenant, f"the ID token's `{self.tenant_claim}` claim")
        resolved = self.tenants.resolve(tenant)
        if resolved is None:
            raise GatewayError(grpc.StatusCode.PERMISSION_DENIED, "TENANT_NOT_ALLOWED",
                               f"the identity {echo(tenant)} (the ID token's `{self.tenant_claim}` claim) is not a "
                               "tenant of this gateway; ask its operator to add it to oidc_tenants")
        return check_tenant(resolved, f"the ID token's `{self.tenant_claim}` claim (as mapped by oidc_tenants)")


def _refusal(error: str, audience: list[str]) -> Exception:
    """google-auth's error -> our refusal, without echoing the token (its parse errors quote segments)."""
    e = error.lower()
    if "expired" in e:
        return unauthenticated("TOKEN_EXPIRED", "the ID token has expired; fetch a fresh one (they live 1 hour)")
    if "too early" in e:
        return unauthenticated("TOKEN_NOT_YET_VALID", "the ID token was issued in the future; check the "
                               "caller's clock")
    if "audience" in e:
        return unauthenticated("TOKEN_AUDIENCE", "the ID token was issued for another audience; request it with "
                               f"audience {audience[0]!r}")
    if "signature" in e or "key id" in e or "certificate" in e:
        return unauthenticated("TOKEN_SIGNATURE", "the ID token's signature does not verify against the "
                               "trusted signing keys; send a token issued by the trusted issuer")
    if "algorithm" in e:
        return unauthenticated("TOKEN_MALFORMED", "the ID token uses an unsupported signing algorithm "
                               "(RS256 or ES256 expected)")
    return unauthenticated("TOKEN_MALFORMED", "the ID token could not be parsed or lacks iat/exp; send a "
                           "Google-signed OIDC ID token")

"""Who is calling: resolves each RPC to a tenant, or refuses it with UNAUTHENTICATED.

Modes (``Settings.auth_modes``, tried in order by :class:`Chain`):

- ``open``: no authentication, every caller is ``Settings.open_tenant`` (development only).
- ``api_key``: static caller keys, stored as SHA-256 hashes in a JSON file that is reloaded when it changes
  (:class:`ApiKeyAuth`); callers send ``x-api-key: <key>`` or ``authorization: Bearer <key>``.
- ``mtls`` / ``mtls:san``: the tenant is the verified client certificate's CN (or its one SAN) (:class:`MtlsAuth`).
- ``oidc``: Google-signed OIDC ID tokens in ``authorization: Bearer <jwt>`` (:class:`OidcAuth`, in
  ``service/oidc.py``).

Every refusal is a ``GatewayError(UNAUTHENTICATED)`` whose message says what to fix and never contains the
credential that was presented; nothing here logs one either. The health service and reflection are not routed
through an authenticator: they stay open.

``python -m service.auth new --tenant acme`` mints a key and prints its line for the keys file;
``python -m service.auth hash --tenant acme`` hashes a key read from stdin.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import os
import re
import secrets
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import grpc

from livegate.errors import GatewayError
from livegate.settings import Settings
from livegate.tenants import TENANT_RE, TenantSet

logger = logging.getLogger(__name__)

RELOAD_CHECK_S = 1.0


def unauthenticated(reason: str, message: str) -> GatewayError:
    return GatewayError(grpc.StatusCode.UNAUTHENTICATED, reason, message)


class Authenticator(Protocol):
    def tenant(self, context: grpc.aio.ServicerContext) -> str:
        """The caller's tenant, or raise GatewayError(UNAUTHENTICATED)."""
        ...


class Mode(Authenticator, Protocol):
    """An authenticator that can tell whether a call carries its kind of credential (for :class:`Chain`)."""

    name: str

    def presented(self, context: grpc.aio.ServicerContext) -> bool:
        ...


def metadata(context: grpc.aio.ServicerContext) -> dict[str, str]:
    """The call's text metadata, keys lower-cased (the last value of a repeated key wins)."""
    out: dict[str, str] = {}
    for key, value in context.invocation_metadata() or ():
        if not key.endswith("-bin") and isinstance(value, str):
            out[key.lower()] = value
    return out


def bearer(md: dict[str, str]) -> str | None:
    scheme, _, value = md.get("authorization", "").strip().partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None


@dataclasses.dataclass(frozen=True)
class Presented:
    """The credentials a call presented over another protocol than gRPC (the Live API WebSocket,
    service/ws/), in the two shapes every mode reads from a gRPC call: its metadata and its TLS peer. So each
    mode (and :class:`Chain`) decides the tenant of both protocols with the same code: ``auth.tenant(presented)``
    (:func:`presented`)."""

    md: tuple[tuple[str, str], ...] = ()
    peer: dict[str, list[bytes]] = dataclasses.field(default_factory=dict)

    def __repr__(self) -> str:  # never the credential itself
        return f"<Presented {[k for k, _ in self.md]} peer={bool(self.peer)}>"

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self.md

    def auth_context(self) -> dict[str, list[bytes]]:
        return self.peer


def presented(kind: str, credential: str, peer_cert: dict[str, Any] | None = None,
              peer_pem: str = "") -> Presented:
    """A credential of ``kind`` ``api_key`` (a caller key) or ``bearer`` (an OIDC ID token, or a caller key),
    or none (``kind`` ``none``), and the TLS client certificate the handshake verified
    (``ssl.SSLSocket.getpeercert()``), as the gRPC metadata and peer every mode reads."""
    md: tuple[tuple[str, str], ...] = ()
    if kind == "api_key" and credential:
        md = (("x-api-key", credential),)
    elif kind == "bearer" and credential:
        md = (("authorization", f"Bearer {credential}"),)
    peer: dict[str, list[bytes]] = {}
    if peer_cert:
        cns = [v for rdn in peer_cert.get("subject", ()) for k, v in rdn if k == "commonName"]
        sans = [v for k, v in peer_cert.get("subjectAltName", ()) if k in ("DNS", "URI", "email", "IP Address")]
        peer = {"x509_common_name": [v.encode() for v in cns],
                "x509_subject_alternative_name": [v.encode() for v in sans],
                "x509_pem_cert": [peer_pem.encode()] if peer_pem else [b"verified"]}
    return Presented(md, peer)


def looks_like_jwt(token: str) -> bool:
    parts = token.split(".")
    return len(parts) == 3 and token.startswith("eyJ") and all(parts)


def check_tenant(tenant: str, source: str) -> str:
    if not TENANT_RE.match(tenant):
        raise unauthenticated("TENANT_INVALID", f"the tenant named by {source} is not a valid tenant name "
                              "(letters, digits and . _ @ : / + -, at most 128); fix the credential's tenant")
    return tenant


class OpenAccess:
    """No caller authentication: every caller is the one tenant ``default`` (development only)."""

    name = "open"

    def __init__(self, tenant: str = "default") -> None:
        self._tenant = tenant

    def __repr__(self) -> str:
        return f"<OpenAccess tenant={self._tenant}>"

    def presented(self, context: grpc.aio.ServicerContext) -> bool:
        return True

    def tenant(self, context: grpc.aio.ServicerContext) -> str:
        return self._tenant


# -- API keys ------------------------------------------------------------------------------------------


def hash_key(key: str) -> str:
    """The hex SHA-256 of a caller key: what the keys file stores."""
    return hashlib.sha256(key.encode()).hexdigest()


def key_line(key: str, tenant: str, name: str = "") -> dict[str, str]:
    """One entry of the keys file for ``key``."""
    check_tenant(tenant, "--tenant")
    return {"tenant": tenant, "sha256": hash_key(key), "name": name or f"{tenant}-{hash_key(key)[:8]}"}


@dataclasses.dataclass(frozen=True)
class CallerKey:
    tenant: str
    name: str


def parse_keys(text: str) -> dict[str, CallerKey]:
    """``{"keys": [{"tenant": ..., "sha256": ..., "name": ...}]}`` -> {sha256: CallerKey}; ValueError if bad."""
    doc = json.loads(text)
    entries = doc.get("keys") if isinstance(doc, dict) else None
    if not isinstance(entries, list):
        raise ValueError('expected a JSON object {"keys": [...]}')
    out: dict[str, CallerKey] = {}
    for i, e in enumerate(entries):
        if not isinstance(e, dict):
            raise ValueError(f"keys[{i}] is not an object")
        tenant, digest, name = e.get("tenant"), e.get("sha256"), e.get("name", "")
        if not isinstance(tenant, str) or not TENANT_RE.match(tenant):
            raise ValueError(f"keys[{i}]: tenant missing or not a valid tenant name")
        if not isinstance(digest, str) or not re.fullmatch(r"[0-9a-fA-F]{64}", digest):
            raise ValueError(f"keys[{i}] ({tenant}): sha256 must be 64 hex digits (python -m service.auth hash)")
        if not isinstance(name, str):
            raise ValueError(f"keys[{i}] ({tenant}): name must be a string")
        if digest.lower() in out:
            raise ValueError(f"keys[{i}] ({tenant}): the same key is listed twice")
        out[digest.lower()] = CallerKey(tenant, name or f"{tenant}-{digest[:8].lower()}")
    return out


class WatchedFile:
    """A file re-read when its identity changes (inode, size, mtime; ``os.stat`` follows the symlink a
    Kubernetes Secret volume swaps), checked at most once per ``every_s``. A bad new version keeps the last
    good value and logs an error once per version."""

    def __init__(self, path: str, parse: Callable[[str], object], what: str, *, every_s: float = RELOAD_CHECK_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.path = path
        self._parse = parse
        self._what = what
        self._every_s = every_s
        self._clock = clock
        self._checked_at = float("-inf")
        self._sig: tuple[int, ...] | None = None
        self.value: object = None
        self.loads = 0

    def load(self) -> object:
        """Read and parse now; raises (OSError, ValueError) if the file is missing or bad."""
        st = os.stat(self.path)
        with open(self.path, encoding="utf-8") as f:
            value = self._parse(f.read())
        self.value, self._sig, self._checked_at = value, _sig(st), self._clock()
        self.loads += 1
        return value

    def current(self) -> object:
        now = self._clock()
        if now - self._checked_at < self._every_s:
            return self.value
        self._checked_at = now
        try:
            sig = _sig(os.stat(self.path))
        except OSError as exc:
            if self._sig != ():
                logger.error("%s %s is unreadable (%s); keeping the previous version", self._what, self.path,
                             exc.strerror)
                self._sig = ()
            return self.value
        if sig != self._sig:
            self._sig = sig
            try:
                with open(self.path, encoding="utf-8") as f:
                    self.value = self._parse(f.read())
                self.loads += 1
                logger.info("%s %s reloaded", self._what, self.path)
            except (OSError, ValueError) as exc:
                logger.error("%s %s changed but is invalid (%s); keeping the previous version", self._what,
                             self.path, _safe_error(exc))
        return self.value


def _sig(st: os.stat_result) -> tuple[int, ...]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _safe_error(exc: Exception) -> str:
    """An error about a secrets file, without echoing the file's content (json errors quote none; ours
    name fields and positions only)."""
    if isinstance(exc, json.JSONDecodeError):
        return f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
    return str(exc) if isinstance(exc, ValueError) else type(exc).__name__


class ApiKeyAuth:
    """Static caller keys, hashed in a file (a Kubernetes Secret key); rotated by rewriting the file."""

    name = "api_key"

    def __init__(self, path: str, *, every_s: float = RELOAD_CHECK_S) -> None:
        self.file = WatchedFile(path, parse_keys, "caller keys file", every_s=every_s)

    def __repr__(self) -> str:
        keys = self.file.value if isinstance(self.file.value, dict) else {}
        return f"<ApiKeyAuth {self.file.path} keys={len(keys)} loads={self.file.loads}>"

    def load(self) -> ApiKeyAuth:
        """Read the file now (at startup: a missing or bad file fails loudly)."""
        try:
            self.file.load()
        except (OSError, ValueError) as exc:
            raise ValueError(f"caller keys file {self.file.path}: {_safe_error(exc)}") from None
        return self

    @staticmethod
    def _key(md: dict[str, str]) -> str | None:
        for name in ("x-api-key", "x-goog-api-key"):  # the latter: where Live API clients put their key
            if md.get(name):
                return md[name].strip()
        token = bearer(md)
        return token if token and not looks_like_jwt(token) else None

    def presented(self, context: grpc.aio.ServicerContext) -> bool:
        return self._key(metadata(context)) is not None

    def tenant(self, context: grpc.aio.ServicerContext) -> str:
        key = self._key(metadata(context))
        if not key:
            raise unauthenticated("CREDENTIALS_MISSING", "no API key: send metadata `x-api-key: <key>` "
                                  "(or `authorization: Bearer <key>`)")
        keys = self.file.current()
        found = keys.get(hash_key(key)) if isinstance(keys, dict) else None
        if found is None:
            raise unauthenticated("API_KEY_INVALID", "the API key is not valid (unknown, mistyped or rotated "
                                  "out); ask the gateway's operator for a current key")
        logger.debug("caller key %s -> tenant %s", found.name, found.tenant)
        return str(found.tenant)


# -- mTLS ----------------------------------------------------------------------------------------------


class MtlsAuth:
    """The tenant is named by the client certificate the TLS handshake verified (``front_client_ca_file``):
    its subject CN (``tenant_from="cn"``) or its single subject alternative name (``"san"``)."""

    def __init__(self, tenant_from: str = "cn") -> None:
        if tenant_from not in ("cn", "san"):
            raise ValueError("MtlsAuth tenant_from must be 'cn' or 'san'")
        self.tenant_from = tenant_from
        self.name = "mtls" if tenant_from == "cn" else "mtls:san"

    def __repr__(self) -> str:
        return f"<MtlsAuth tenant_from={self.tenant_from}>"

    @staticmethod
    def _peer(context: grpc.aio.ServicerContext) -> dict[str, list[bytes]]:
        ctx = context.auth_context() or {}
        return ctx if ctx.get("x509_pem_cert") or ctx.get("x509_common_name") else {}

    def presented(self, context: grpc.aio.ServicerContext) -> bool:
        return bool(self._peer(context))

    def tenant(self, context: grpc.aio.ServicerContext) -> str:
        peer = self._peer(context)
        if not peer:
            raise unauthenticated("CLIENT_CERT_MISSING", "no verified client certificate: connect over TLS with "
                                  "a client certificate signed by the gateway's client CA")
        if self.tenant_from == "cn":
            names = [v.decode() for v in peer.get("x509_common_name", [])]
            what = "the client certificate's subject CN"
        else:
            names = sorted({v.decode() for v in peer.get("x509_subject_alternative_name", [])})
            what = "the client certificate's subject alternative name"
        if len(names) != 1 or not names[0]:
            raise unauthenticated("CLIENT_CERT_NO_TENANT", f"{what} must name the tenant exactly once "
                                  f"(found {len(names)}); issue the certificate with one")
        return check_tenant(names[0], what)


# -- the chain -----------------------------------------------------------------------------------------


class Chain:
    """Tries each mode in order: the first whose kind of credential the call carries decides (a present
    but wrong credential is refused, never passed on to the next mode)."""

    def __init__(self, modes: Sequence[Mode]) -> None:
        if not modes:
            raise ValueError("Chain needs at least one mode")
        self.modes = list(modes)

    def __repr__(self) -> str:
        return f"<Chain {[m.name for m in self.modes]}>"

    def tenant(self, context: grpc.aio.ServicerContext) -> str:
        for mode in self.modes:
            if mode.presented(context):
                return mode.tenant(context)
        if len(self.modes) == 1:
            return self.modes[0].tenant(context)  # its own "missing" message
        raise unauthenticated("CREDENTIALS_MISSING", "no credentials: this gateway accepts "
                              + ", ".join(_HOW[m.name.partition(":")[0]] for m in self.modes))


_HOW = {
    "open": "anonymous callers",
    "api_key": "an API key (metadata `x-api-key: <key>`)",
    "mtls": "a TLS client certificate signed by its client CA",
    "oidc": "a Google-signed ID token (metadata `authorization: Bearer <id token>`)",
}


def build_authenticator(settings: Settings) -> Authenticator:
    """The authenticator of ``settings.auth_modes``; ValueError (at startup) on a configuration that cannot
    work. Files are read here, so a missing keys file stops the front instead of refusing every call."""
    names = [m.strip().lower() for m in settings.auth_modes]
    if "open" in names[:-1]:
        raise ValueError("auth mode open accepts every caller: it can only be the last mode")
    modes: list[Mode] = []
    for raw in settings.auth_modes:
        mode = raw.strip().lower()
        if mode == "open":
            modes.append(OpenAccess(settings.open_tenant))
        elif mode == "api_key":
            if not settings.caller_keys_file:
                raise ValueError("auth mode api_key needs caller_keys_file (LIVEGATE_CALLER_KEYS_FILE)")
            modes.append(ApiKeyAuth(settings.caller_keys_file).load())
        elif mode in ("mtls", "mtls:cn", "mtls:san"):
            if not (settings.front_client_ca_file and settings.front_tls_cert_file and settings.front_tls_key_file):
                raise ValueError(f"auth mode {mode} needs front TLS (front_tls_cert_file, front_tls_key_file) "
                                 "and front_client_ca_file")
            modes.append(MtlsAuth("san" if mode == "mtls:san" else "cn"))
        elif mode == "oidc":
            from service.oidc import OidcAuth

            if not settings.oidc_audience or not settings.oidc_jwks:
                raise ValueError("auth mode oidc needs oidc_audience and oidc_jwks (an https URL or a file)")
            modes.append(OidcAuth(settings.oidc_audience, settings.oidc_jwks, settings.oidc_issuers,
                                  settings.oidc_tenant_claim, tenants=TenantSet.parse(settings.oidc_tenants)))
        else:
            raise ValueError(f"unknown auth mode {raw!r}: use open, api_key, mtls, mtls:san or oidc")
    if not modes:
        raise ValueError("auth_modes is empty: use open, api_key, mtls or oidc")
    return modes[0] if len(modes) == 1 and isinstance(modes[0], OpenAccess) else Chain(modes)


def known_tenants(settings: Settings) -> tuple[Callable[[str], bool] | None, str]:
    """Whether a tenant name can be some caller's tenant under ``settings.auth_modes`` (None: any can, e.g.
    mTLS or OIDC without ``oidc_tenants``), and the valid tenants in words. For configuration checks at start."""
    names: set[str] = set()
    sets: list[TenantSet] = []
    for raw in settings.auth_modes:
        mode = raw.strip().lower()
        if mode == "open":
            names.add(settings.open_tenant)
        elif mode == "api_key" and settings.caller_keys_file:
            try:
                keys = ApiKeyAuth(settings.caller_keys_file).load().file.value
            except ValueError:
                return None, ""  # build_authenticator refuses the file
            names |= {k.tenant for k in keys.values()} if isinstance(keys, dict) else set()
        elif mode == "oidc" and settings.oidc_tenants:
            sets.append(TenantSet.parse(settings.oidc_tenants))
        else:
            return None, ""
    hint = ", ".join([*sorted(names), *(e for ts in sets for e in ts.entries)]) or "none"
    return (lambda t: t in names or any(t in ts.named() or ts.resolve(t) == t for ts in sets)), hint


# -- CLI -----------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m service.auth", description="caller API keys for livegate")
    sub = p.add_subparsers(dest="cmd", required=True)
    new = sub.add_parser("new", help="mint a random key: prints the key (give it to the caller) and its line")
    hsh = sub.add_parser("hash", help="hash an existing key (read from stdin, or the argument) into a line")
    hsh.add_argument("key", nargs="?", default="-", help="the key; '-' or nothing: read it from stdin")
    for sp in (new, hsh):
        sp.add_argument("--tenant", required=True)
        sp.add_argument("--name", default="", help="a label for operators (which caller, which rotation)")
    args = p.parse_args(argv)
    try:
        if args.cmd == "new":
            key = "lgk_" + secrets.token_urlsafe(32)
            line = key_line(key, args.tenant, args.name)
            print(f"key (give to the caller, not stored anywhere): {key}", file=sys.stderr)
        else:
            key = sys.stdin.readline().strip() if args.key == "-" else args.key
            if not key:
                p.error("empty key")
            line = key_line(key, args.tenant, args.name)
    except GatewayError as err:
        p.error(err.message)
    print(json.dumps(line))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

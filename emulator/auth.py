"""Credentials on the upgrade request (an API key or an OAuth bearer token, as the Live API takes them) and their check against the configured sets."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal
from urllib.parse import parse_qs, urlsplit

from .closes import BAD_API_KEY, BAD_CREDENTIALS
from .config import EmulatorConfig

CredentialKind = Literal["api_key", "bearer", "ephemeral", "none"]


@dataclass(frozen=True)
class Credential:
    kind: CredentialKind
    value: str = ""

    @property
    def quota_key(self) -> str:
        """What the concurrent-session cap counts against."""
        return f"{self.kind}:{self.value}"

    def __repr__(self) -> str:  # never print secrets, not even a part of one: a fingerprint tells them apart
        if not self.value:
            return f"Credential({self.kind})"
        return f"Credential({self.kind}, sha256:{hashlib.sha256(self.value.encode()).hexdigest()[:8]})"


def extract(path: str, headers: object) -> Credential:
    """Reads the credential: Authorization (Token / Bearer), x-goog-api-key, ?access_token=, ?key=."""
    get = getattr(headers, "get")
    query = parse_qs(urlsplit(path).query)
    authz = (get("Authorization") or "").strip()
    if authz[:6].lower() == "token ":
        return Credential("ephemeral", authz[6:].strip())
    if authz[:7].lower() == "bearer ":
        token = authz[7:].strip()
        return Credential("ephemeral" if token.startswith("auth_tokens/") else "bearer", token)
    access = query.get("access_token", [""])[0]
    if access:
        return Credential("ephemeral" if access.startswith("auth_tokens/") else "bearer", access)
    key = (get("x-goog-api-key") or "").strip() or query.get("key", [""])[0]
    if key:
        return Credential("ephemeral" if key.startswith("auth_tokens/") else "api_key", key)
    return Credential("none")


def check(config: EmulatorConfig, credential: Credential) -> tuple[int, str] | None:
    """None if accepted, else the (code, reason) the session closes with right after the upgrade."""
    if credential.kind == "none":
        return None if not config.require_credentials else BAD_API_KEY
    allowed = {
        "api_key": config.api_keys,
        "bearer": config.bearer_tokens,
        "ephemeral": config.ephemeral_tokens,
    }[credential.kind]
    if not allowed or credential.value in allowed:  # an empty set accepts any credential of its kind
        return None
    return BAD_CREDENTIALS if credential.kind == "bearer" else BAD_API_KEY

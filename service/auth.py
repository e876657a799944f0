"""Who is calling: resolves each RPC to a tenant. The seam where mTLS, API keys and OIDC plug in."""

from __future__ import annotations

from typing import Protocol

import grpc


class Authenticator(Protocol):
    def tenant(self, context: grpc.aio.ServicerContext) -> str:
        """The caller's tenant, or raise GatewayError(UNAUTHENTICATED)."""
        ...


class OpenAccess:
    """No caller authentication: every caller is the one tenant ``default`` (development only)."""

    def __init__(self, tenant: str = "default") -> None:
        self._tenant = tenant

    def __repr__(self) -> str:
        return f"<OpenAccess tenant={self._tenant}>"

    def tenant(self, context: grpc.aio.ServicerContext) -> str:
        return self._tenant

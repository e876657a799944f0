"""The front's transport security: plaintext h2c (default), TLS, or TLS with required client certificates, for
gRPC and for the Live API WebSocket listener (``ssl_context``).

- ``front_tls_cert_file`` + ``front_tls_key_file``: serve gRPC over TLS.
- plus ``front_client_ca_file``: every connection must present a client certificate signed by that CA
  (mTLS). grpc's Python server cannot request a certificate without requiring it, so with mTLS a caller
  without a certificate (including a health checker) fails the handshake; auth mode ``mtls`` then names the
  tenant from the verified certificate.

The files are read once at startup: rotating the certificate needs a restart (a rolling one in Kubernetes).
"""

from __future__ import annotations

import ssl

import grpc

from livegate.settings import Settings


def _read(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise ValueError(f"{what} {path}: {exc.strerror}") from None
    if b"-----BEGIN" not in data:
        raise ValueError(f"{what} {path} is not PEM")
    return data


def _files(settings: Settings) -> tuple[str, str, str] | None:
    """(certificate, key, client CA) of the front's TLS, or None for plaintext. ValueError on a half-done
    configuration."""
    cert, key, ca = settings.front_tls_cert_file, settings.front_tls_key_file, settings.front_client_ca_file
    if not cert and not key:
        if ca:
            raise ValueError("front_client_ca_file (mTLS) needs front_tls_cert_file and front_tls_key_file")
        return None
    if not (cert and key):
        raise ValueError("front TLS needs both front_tls_cert_file and front_tls_key_file")
    return cert, key, ca


def server_credentials(settings: Settings) -> grpc.ServerCredentials | None:
    """TLS credentials of the front, or None for plaintext. ValueError on a half-done configuration."""
    files = _files(settings)
    if files is None:
        return None
    cert, key, ca = files
    root = _read(ca, "front_client_ca_file") if ca else None
    return grpc.ssl_server_credentials([(_read(key, "front_tls_key_file"), _read(cert, "front_tls_cert_file"))],
                                       root_certificates=root, require_client_auth=root is not None)


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The same TLS (and mTLS: a certificate is required) for the Live API WebSocket listener (service/ws/), or
    None for plaintext ``ws://``."""
    files = _files(settings)
    if files is None:
        return None
    cert, key, ca = files
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    if ca:
        ctx.load_verify_locations(ca)
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def bind(server: grpc.aio.Server, settings: Settings) -> int:
    """Bind ``settings.front_listen`` with the configured transport security; the bound port (0: failed)."""
    creds = server_credentials(settings)
    if creds is None:
        return int(server.add_insecure_port(settings.front_listen))
    return int(server.add_secure_port(settings.front_listen, creds))


def describe(settings: Settings) -> str:
    """For the startup log line: h2c, tls or mtls."""
    if not settings.front_tls_cert_file:
        return "h2c"
    return "mtls" if settings.front_client_ca_file else "tls"

"""Throw-away X.509 material for the auth tests, made with cryptography: a CA, a server certificate for
127.0.0.1/localhost, client certificates, and an RSA key pair with its JWKS for ID tokens."""

from __future__ import annotations

import base64
import dataclasses
import datetime
import ipaddress
import json
import time
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _pem_key(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


@dataclasses.dataclass
class Issued:
    cert: Path
    key: Path

    @property
    def cert_pem(self) -> bytes:
        return self.cert.read_bytes()

    @property
    def key_pem(self) -> bytes:
        return self.key.read_bytes()


class CA:
    """A self-signed CA in ``directory`` that issues server and client certificates."""

    def __init__(self, directory: Path, name: str = "livegate test CA") -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.key = _key()
        self.name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.datetime.now(datetime.timezone.utc)
        self.cert = (x509.CertificateBuilder().subject_name(self.name).issuer_name(self.name)
                     .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                     .not_valid_before(now - datetime.timedelta(minutes=5))
                     .not_valid_after(now + datetime.timedelta(days=1))
                     .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                     .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                                  content_commitment=False, key_encipherment=False,
                                                  data_encipherment=False, key_agreement=False,
                                                  encipher_only=False, decipher_only=False), critical=True)
                     .sign(self.key, hashes.SHA256()))
        self.path = self.dir / f"{name.replace(' ', '-')}.crt"
        self.path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    @property
    def pem(self) -> bytes:
        return self.path.read_bytes()

    def issue(self, stem: str, *, cn: str, sans: list[x509.GeneralName] | None = None,
              server: bool = False) -> Issued:
        key = _key()
        now = datetime.datetime.now(datetime.timezone.utc)
        b = (x509.CertificateBuilder()
             .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
             .issuer_name(self.name).public_key(key.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
             .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
             .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server
                                                   else ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False))
        if sans:
            b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = b.sign(self.key, hashes.SHA256())
        issued = Issued(self.dir / f"{stem}.crt", self.dir / f"{stem}.key")
        issued.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        issued.key.write_bytes(_pem_key(key))
        return issued

    def server(self) -> Issued:
        return self.issue("server", cn="localhost", server=True,
                          sans=[x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])

    def client(self, stem: str, cn: str, sans: list[str] | None = None) -> Issued:
        return self.issue(stem, cn=cn, sans=[x509.DNSName(s) for s in sans] if sans else None)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64int(n: int) -> str:
    return _b64(n.to_bytes((n.bit_length() + 7) // 8, "big"))


class TokenIssuer:
    """An RSA key pair that signs RS256 ID tokens, published as a JWKS file (what Google's
    https://www.googleapis.com/oauth2/v3/certs serves)."""

    def __init__(self, kid: str = "test-kid-1") -> None:
        self.kid = kid
        self.key = _key()

    @property
    def private_pem(self) -> bytes:
        return _pem_key(self.key)

    def jwk(self) -> dict[str, Any]:
        pub = self.key.public_key().public_numbers()
        return {"kty": "RSA", "alg": "RS256", "use": "sig", "kid": self.kid, "n": _b64int(pub.n), "e": _b64int(pub.e)}

    def write_jwks(self, path: Path, *others: TokenIssuer) -> Path:
        path.write_text(json.dumps({"keys": [self.jwk(), *(o.jwk() for o in others)]}))
        return path

    def token(self, *, aud: str, iss: str = "https://accounts.google.com", email: str | None = "acme@example.com",
              lifetime_s: int = 3600, iat: int | None = None, kid: str | None = None, **extra: Any) -> str:
        now = int(time.time()) if iat is None else iat
        claims: dict[str, Any] = {"iss": iss, "aud": aud, "sub": "1234567890", "iat": now, "exp": now + lifetime_s,
                                  **extra}
        if email is not None:
            claims["email"] = email
            claims.setdefault("email_verified", True)
        header = {"alg": "RS256", "typ": "JWT", "kid": kid or self.kid}
        signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
        sig = self.key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{_b64(sig)}"

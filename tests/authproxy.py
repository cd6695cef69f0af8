"""An authenticating reverse proxy in front of a real Prometheus, and a throwaway PKI.

What stands between the analyzer and Prometheus in a real cluster (kube-rbac-proxy, an
ingress with basic auth, Mimir's tenant check, mutual TLS), reduced to what the client sees:
a 401 for a missing or wrong credential or tenant, otherwise the upstream's answer unchanged.
Every request's path and headers are kept in ``seen`` so tests can check what was sent.
"""

from __future__ import annotations

import base64
import datetime as dt
import hmac
import ipaddress
import ssl
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

TENANT_HEADER = "X-Scope-OrgID"


@dataclass(frozen=True)
class Pki:
    """PEM files: a CA, a server certificate for 127.0.0.1 and a client certificate."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def make_pki(directory: Path) -> Pki:
    """A fresh CA and two leaf certificates signed by it (valid for one day)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.UTC)

    def name(common: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])

    def write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> Path:
        path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
        return path

    def write_cert(cert: x509.Certificate, path: Path) -> Path:
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return path

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (x509.CertificateBuilder().subject_name(name("test CA")).issuer_name(name("test CA"))
               .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(minutes=5))
               .not_valid_after(now + dt.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True,
                                            crl_sign=True, content_commitment=False,
                                            key_encipherment=False, data_encipherment=False,
                                            key_agreement=False, encipher_only=False,
                                            decipher_only=False), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                              critical=False)
               .sign(ca_key, hashes.SHA256()))

    def leaf(common: str, usage: x509.ObjectIdentifier, san: list[x509.GeneralName]
             ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (x509.CertificateBuilder().subject_name(name(common))
                   .issuer_name(ca_cert.subject).public_key(key.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(now - dt.timedelta(minutes=5))
                   .not_valid_after(now + dt.timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None),
                                  critical=True)
                   .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                       ca_key.public_key()), critical=False))
        if san:
            builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
        return builder.sign(ca_key, hashes.SHA256()), key

    server, server_key = leaf("127.0.0.1", ExtendedKeyUsageOID.SERVER_AUTH,
                              [x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                               x509.DNSName("localhost")])
    client, client_key = leaf("canary-analyzer", ExtendedKeyUsageOID.CLIENT_AUTH, [])
    directory.mkdir(parents=True, exist_ok=True)
    return Pki(ca=write_cert(ca_cert, directory / "ca.pem"),
               server_cert=write_cert(server, directory / "server.pem"),
               server_key=write_key(server_key, directory / "server-key.pem"),
               client_cert=write_cert(client, directory / "client.pem"),
               client_key=write_key(client_key, directory / "client-key.pem"))


class AuthProxy:
    """Forwards GETs to ``upstream`` when the request carries every configured credential:
    a bearer token, basic auth, a tenant header; with ``pki`` it speaks TLS, and with
    ``client_certs`` also requires a client certificate signed by the PKI's CA. Credentials
    can be changed while it runs (a rotation)."""

    def __init__(self, upstream: str, *, bearer: str | None = None,
                 basic: tuple[str, str] | None = None, tenant: str | None = None,
                 pki: Pki | None = None, client_certs: bool = False) -> None:
        self.upstream = upstream.rstrip("/")
        self.bearer = bearer
        self.basic = basic
        self.tenant = tenant
        self.seen: list[tuple[str, dict[str, str]]] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                proxy._handle(self)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        scheme = "http"
        if pki is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(pki.server_cert, pki.server_key)
            if client_certs:
                context.verify_mode = ssl.CERT_REQUIRED
                context.load_verify_locations(pki.ca)
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> AuthProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def _refusal(self, headers: dict[str, str]) -> str | None:
        given = headers.get("authorization", "")
        if self.bearer is not None and not hmac.compare_digest(
                given.encode(), f"Bearer {self.bearer}".encode()):
            return "Unauthorized: bearer token missing or invalid"
        if self.basic is not None:
            expected = "Basic " + base64.b64encode(":".join(self.basic).encode()).decode()
            if not hmac.compare_digest(given.encode(), expected.encode()):
                return "Unauthorized: basic auth missing or invalid"
        if self.tenant is not None and headers.get(TENANT_HEADER.lower()) != self.tenant:
            return "no org id"
        return None

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        headers = {k.lower(): v for k, v in handler.headers.items()}
        self.seen.append((handler.path, headers))
        refusal = self._refusal(headers)
        if refusal is not None:
            self._answer(handler, 401, refusal.encode() + b"\n", "text/plain")
            return
        try:
            with urllib.request.urlopen(self.upstream + handler.path, timeout=10) as answer:
                status, body = answer.status, answer.read()
                content_type = answer.headers.get("Content-Type", "application/json")
        except urllib.error.HTTPError as exc:
            status, body = exc.code, exc.read()
            content_type = exc.headers.get("Content-Type", "text/plain")
        self._answer(handler, status, body, content_type)

    @staticmethod
    def _answer(handler: BaseHTTPRequestHandler, status: int, body: bytes,
                content_type: str) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

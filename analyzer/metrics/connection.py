"""How to reach Prometheus as it is usually deployed: behind auth, TLS and a path prefix.

In a real cluster the query API is rarely a bare ``http://prometheus:9090``: Thanos Querier
and Mimir sit behind an authenticating proxy (a bearer token, often a rotating projected
ServiceAccount token, or basic auth), speak TLS with a private CA or want a client
certificate, need a tenant header (Mimir/Cortex ``X-Scope-OrgID``), and serve the API under a
path (Mimir ``/prometheus``, ``--web.route-prefix``). The path prefix is simply the path of
the URL: the client appends ``/api/v1/...`` to it.

Secrets come from files, never from arguments (argv is readable by every user of the node),
and the files are read again for every client, i.e. every analysis, so a rotated token works
without a restart. Everything is checked once at startup (``validate``) so a typo exits with
a message naming the flag instead of turning every judge call into a 503.
"""

from __future__ import annotations

import argparse
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from urllib.parse import urlsplit

import requests

from analyzer.errors import InputError
from analyzer.metrics.prometheus import PrometheusUnavailable

_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
"""An HTTP header name (RFC 9110 token)."""
_RESERVED = {"authorization", "host", "content-length", "content-type", "transfer-encoding"}


class ConnectionSettingsError(InputError):
    """A connection setting that can never work; the message names the flag."""


@dataclass(frozen=True)
class PrometheusConnection:
    """The URL (its path is the API's prefix) and how to authenticate to it."""

    url: str
    bearer_token_file: str | None = None
    basic_auth_file: str | None = None
    """One line ``user:password``, as ``curl -u`` takes it."""
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    headers: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    def validate(self) -> None:
        """Raises ``ConnectionSettingsError`` naming the flag of the first setting that can
        never work: a malformed URL, unreadable or empty secret files, a CA bundle or a
        certificate/key pair that does not load, a malformed or reserved header."""
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConnectionSettingsError(f"--prometheus: {self.url!r} is not an http(s) URL")
        if parts.username is not None or parts.password is not None:
            raise ConnectionSettingsError("--prometheus: credentials in the URL would be "
                                          "visible in the process list; use "
                                          "--prometheus-basic-auth-file")
        if parts.query or parts.fragment:
            raise ConnectionSettingsError("--prometheus: the URL may have a path prefix but "
                                          "no query or fragment")
        if self.bearer_token_file and self.basic_auth_file:
            raise ConnectionSettingsError("--prometheus-bearer-token-file and "
                                          "--prometheus-basic-auth-file: choose one")
        try:
            self.credentials()
        except PrometheusUnavailable as exc:
            raise ConnectionSettingsError(exc.reason) from None
        tls = [name for name, value in (("--prometheus-ca-file", self.ca_file),
                                        ("--prometheus-cert-file", self.cert_file),
                                        ("--prometheus-key-file", self.key_file)) if value]
        if tls and parts.scheme != "https":
            raise ConnectionSettingsError(f"{tls[0]}: needs an https:// --prometheus URL")
        if self.key_file and not self.cert_file:
            raise ConnectionSettingsError("--prometheus-key-file: needs --prometheus-cert-file")
        _check_tls_files(self.ca_file, self.cert_file, self.key_file)
        for name, value in self.headers.items():
            _check_header(name, value)

    def credentials(self) -> tuple[dict[str, str], tuple[str, str] | None]:
        """The headers (with ``Authorization: Bearer`` when a token file is set) and the basic
        auth pair, read from the files now. An unreadable or empty file is
        ``PrometheusUnavailable`` naming the flag: a 503 for the judge call, not a verdict."""
        headers = dict(self.headers)
        if self.bearer_token_file:
            token = _read_secret(self.bearer_token_file, "--prometheus-bearer-token-file")
            headers["Authorization"] = f"Bearer {token}"
        auth = None
        if self.basic_auth_file:
            text = _read_secret(self.basic_auth_file, "--prometheus-basic-auth-file")
            user, colon, password = text.partition(":")
            if not colon or not user:
                raise PrometheusUnavailable(f"--prometheus-basic-auth-file "
                                            f"{self.basic_auth_file}: expected one line "
                                            f"'user:password'")
            auth = (user, password)
        return headers, auth

    def configure(self, session: requests.Session) -> None:
        """Sets headers, auth and TLS on ``session`` (requests' own settings, so every
        request of the session, readiness checks included, carries them)."""
        headers, auth = self.credentials()
        session.headers.update(headers)
        session.auth = auth
        if self.ca_file:
            session.verify = self.ca_file
        if self.cert_file:
            session.cert = (self.cert_file, self.key_file) if self.key_file else self.cert_file


def _read_secret(path: str, flag: str) -> str:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise PrometheusUnavailable(f"{flag} {path}: cannot read: {reason}") from None
    value = text.strip()  # a Secret made with --from-file keeps the editor's newline
    if not value:
        raise PrometheusUnavailable(f"{flag} {path}: empty")
    if "\n" in value or "\r" in value:
        raise PrometheusUnavailable(f"{flag} {path}: more than one line")
    return value


def _check_tls_files(ca_file: str | None, cert_file: str | None, key_file: str | None) -> None:
    """Loads the files as requests will, so a wrong path or a PEM mix-up fails at startup."""
    context = ssl.create_default_context()
    if ca_file:
        try:
            context.load_verify_locations(cafile=ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConnectionSettingsError(f"--prometheus-ca-file {ca_file}: cannot load: "
                                          f"{exc}") from None
    if cert_file:
        try:
            context.load_cert_chain(cert_file, key_file)
        except (OSError, ssl.SSLError) as exc:
            flags = "--prometheus-cert-file" + (" / --prometheus-key-file" if key_file else "")
            raise ConnectionSettingsError(f"{flags}: cannot load the certificate and key: "
                                          f"{exc}") from None


def _check_header(name: str, value: str) -> None:
    if not _TOKEN.match(name):
        raise ConnectionSettingsError(f"--prometheus-header: {name!r} is not a header name")
    if name.lower() in _RESERVED:
        hint = (" (secrets do not belong in arguments; use --prometheus-bearer-token-file)"
                if name.lower() == "authorization" else "")
        raise ConnectionSettingsError(f"--prometheus-header: {name} cannot be set{hint}")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise ConnectionSettingsError(f"--prometheus-header: {name}: control characters in "
                                      f"the value")


def parse_header(text: str) -> tuple[str, str]:
    """``NAME=VALUE`` (also ``NAME: VALUE``) from the command line."""
    for separator in ("=", ":"):
        name, sep, value = text.partition(separator)
        if sep and name.strip():
            return name.strip(), value.strip()
    raise ConnectionSettingsError(f"--prometheus-header: {text!r} is not NAME=VALUE")


def add_connection_flags(parser: argparse.ArgumentParser) -> None:
    """The flags beside ``--prometheus`` shared by ``serve``, ``judge`` and ``export``."""
    group = parser.add_argument_group(
        "Prometheus connection",
        "The path of --prometheus is the API prefix (Thanos Querier, Mimir's "
        "https://mimir/prometheus, --web.route-prefix). Secret files are re-read for every "
        "analysis, so rotated tokens need no restart.")
    group.add_argument("--prometheus-bearer-token-file", metavar="PATH",
                       help="send 'Authorization: Bearer <content of PATH>'")
    group.add_argument("--prometheus-basic-auth-file", metavar="PATH",
                       help="basic auth from PATH, one line 'user:password'")
    group.add_argument("--prometheus-ca-file", metavar="PATH",
                       help="CA bundle (PEM) to verify the https:// server with")
    group.add_argument("--prometheus-cert-file", metavar="PATH",
                       help="client certificate (PEM) for mutual TLS")
    group.add_argument("--prometheus-key-file", metavar="PATH",
                       help="the client certificate's key (PEM), if not in the cert file")
    group.add_argument("--prometheus-header", action="append", default=[],
                       metavar="NAME=VALUE", help="extra header on every query, e.g. "
                                                  "X-Scope-OrgID=tenant (repeatable)")


def connection_from_args(args: argparse.Namespace) -> PrometheusConnection:
    """The validated connection of a command's flags (``ConnectionSettingsError`` names the
    flag of the first problem)."""
    headers: dict[str, str] = {}
    for text in args.prometheus_header:
        name, value = parse_header(text)
        if name.lower() in {h.lower() for h in headers}:
            raise ConnectionSettingsError(f"--prometheus-header: {name} given twice")
        headers[name] = value
    connection = PrometheusConnection(
        url=args.prometheus, bearer_token_file=args.prometheus_bearer_token_file,
        basic_auth_file=args.prometheus_basic_auth_file, ca_file=args.prometheus_ca_file,
        cert_file=args.prometheus_cert_file, key_file=args.prometheus_key_file,
        headers=MappingProxyType(headers))
    connection.validate()
    return connection

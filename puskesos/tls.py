"""HTTPS for the box's and the hub's web UI: the certificate, the server's TLS context,
and the plain-HTTP port that only redirects (docs/security.md, "TLS").

A box or hub with ``tls = true`` answers HTTPS on ``tls_port``. Its plain ``listen_port``
still answers ``/healthz`` and ``/metrics`` (no personal data: probes, Prometheus and old
bookmarks keep working) and sends every other request to the same path over HTTPS with a
308, which keeps a POST a POST. The certificate is the one provisioning placed (signed by
the district CA) or, when there is none, a self-signed one made here, whose SHA-256
fingerprint staff compare with what the browser shows before they trust it.
"""

from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from puskesos.durable import replace_file
from puskesos.webpages import Handler

__all__ = [
    "PLAIN_PATHS",
    "Settings",
    "certificate_note",
    "ensure_certificate",
    "fingerprint",
    "https_redirect",
    "listener",
    "names_of",
    "server_context",
    "tls_keys",
]

#: What the plain-HTTP port still answers itself: nothing personal is on these.
PLAIN_PATHS = frozenset({"/healthz", "/metrics"})

#: A self-signed certificate is checked by a person once, then kept: ten years.
_VALID_DAYS = 3650


def tls_keys(section: str) -> dict[tuple[str, str], str]:
    """The documentation of the TLS keys of ``[section]`` (``edge`` or ``hub``)."""
    return {
        (section, "tls"): (
            "serve the UI over HTTPS on tls_port (`init` turns it on); listen_port then "
            "redirects to it and answers only /healthz and /metrics"
        ),
        (section, "tls_port"): "port of the HTTPS UI and API",
        (section, "tls_cert"): (
            "certificate (PEM, relative to data_dir); a self-signed one is made when missing"
        ),
        (section, "tls_key"): "its private key (PEM, 0600)",
        (section, "tls_names"): (
            "more host names or addresses for a self-signed certificate, comma-separated "
            "(the machine's host name, localhost and loopback are always in it)"
        ),
    }


def names_of(setting: str) -> list[str]:
    """The names of a ``tls_names`` setting: comma-separated, blanks ignored."""
    return [name.strip() for name in setting.split(",") if name.strip()]


def _default_names() -> list[str]:
    host = socket.gethostname()
    return [host, f"{host}.local", "localhost", "127.0.0.1", "::1"]


def _alt_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def ensure_certificate(cert: Path, key: Path, names: Iterable[str] = ()) -> x509.Certificate:
    """The certificate at ``cert``; when it or its ``key`` is missing, a new self-signed pair
    (EC P-256) valid for the machine's host name, ``localhost``, the loopback addresses and
    ``names`` (the addresses staff type, e.g. the box's LAN address). The key is 0600 and
    both files are on disk before this returns."""
    if cert.exists() and key.exists():
        return x509.load_pem_x509_certificate(cert.read_bytes())
    cert.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    private = ec.generate_private_key(ec.SECP256R1())
    alt = list(dict.fromkeys([*names, *_default_names()]))
    subject = x509.Name([
        x509.NameAttribute(NameOID.COMMON_NAME, alt[0]),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Puskesos"),
    ])  # fmt: skip
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=_VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName([_alt_name(n) for n in alt]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .sign(private, hashes.SHA256())
    )
    pem_key = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    for path, data, mode in (
        (key, pem_key, 0o600),
        (cert, certificate.public_bytes(serialization.Encoding.PEM), 0o644),
    ):
        replace_file(path, data, mode=mode)
    return certificate


def fingerprint(certificate: x509.Certificate) -> str:
    """SHA-256 of the certificate as browsers show it: 32 hex pairs joined by colons."""
    return certificate.fingerprint(hashes.SHA256()).hex(":").upper()


class Settings(Protocol):
    """The TLS keys of ``[edge]`` and ``[hub]`` (:func:`tls_keys`)."""

    @property
    def tls(self) -> bool: ...
    @property
    def tls_port(self) -> int: ...
    @property
    def tls_cert(self) -> str: ...
    @property
    def tls_key(self) -> str: ...
    @property
    def tls_names(self) -> str: ...
    def path(self, setting: str) -> Path: ...


def _certificate(config: Settings) -> tuple[Path, x509.Certificate]:
    cert = config.path(config.tls_cert)
    key = config.path(config.tls_key)
    return cert, ensure_certificate(cert, key, names_of(config.tls_names))


def listener(config: Settings) -> tuple[tuple[int, ssl.SSLContext] | None, dict[str, Any]]:
    """What ``serve`` needs for HTTPS (``None`` without ``tls``; the certificate made when
    missing) and the facts its ``serving`` log line adds."""
    if not config.tls:
        return None, {}
    cert, certificate = _certificate(config)
    context = server_context(cert, config.path(config.tls_key))
    facts = {"tls_port": config.tls_port, "tls_fingerprint": fingerprint(certificate)}
    return (config.tls_port, context), facts


def certificate_note(config: Settings) -> str:
    """What ``init`` tells (empty without ``tls``): where HTTPS answers and the fingerprint
    of the certificate (made when missing) that staff compare with their browser's."""
    if not config.tls:
        return ""
    cert, certificate = _certificate(config)
    return (
        f"HTTPS on port {config.tls_port}, certificate {cert}\n"
        f"  SHA-256 fingerprint (compare it with the browser's): {fingerprint(certificate)}"
    )


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    """A server context for ``cert`` and ``key``: TLS 1.2 or newer."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    return context


def https_redirect(
    tls_port: int,
) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    """Middleware: a request that did not come over TLS goes to the same host, path and
    query on ``tls_port`` with HTTPS (308); :data:`PLAIN_PATHS` are answered as they are."""

    @web.middleware
    async def redirect(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.secure or request.path in PLAIN_PATHS:
            return await handler(request)
        try:
            target = request.url.with_scheme("https").with_port(tls_port)
        except ValueError:  # a Host header no URL can carry
            raise web.HTTPBadRequest(text="Alamat tidak dikenali.") from None
        raise web.HTTPPermanentRedirect(target)

    return redirect

"""A throwaway certificate authority for https on loopback, in the tests and the bench.

Its key lives only in memory; certificates it issues, and their keys, are written where the caller
says (a temporary directory) and are valid for an hour. Nothing made here is ever committed or
trusted outside the run that made it: a webhook sender trusts it only through a bundle it is
pointed at (``BRIDGE_WEBHOOK_CA_BUNDLE``).
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from collections.abc import Sequence
from pathlib import Path
from typing import Final, NamedTuple

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

LOOPBACK_NAMES: Final = ("localhost", "127.0.0.1")
"""What a server certificate names unless told otherwise."""
VALIDITY: Final = datetime.timedelta(hours=1)
CLOCK_SKEW: Final = datetime.timedelta(minutes=5)
"""Certificates are valid from a little before they are made."""
CA_NAME: Final = "mpc-import-bridge throwaway test CA"
PRIVATE_FILE_MODE: Final = 0o600


class ServerFiles(NamedTuple):
    """A server's certificate and key, PEM files."""

    cert: Path
    key: Path


def _subject_names(names: Sequence[str]) -> list[x509.GeneralName]:
    found: list[x509.GeneralName] = []
    for name in names:
        try:
            found.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            found.append(x509.DNSName(name))
    return found


def _key_usage(*, signs_certificates: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not signs_certificates,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=signs_certificates,
        crl_sign=signs_certificates,
        encipher_only=False,
        decipher_only=False,
    )


class ThrowawayCa:
    """A certificate authority made for one run: :meth:`write_bundle` is what a client trusts,
    :meth:`issue` makes a server's certificate."""

    def __init__(self, name: str = CA_NAME) -> None:
        self._key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.datetime.now(datetime.UTC)
        public = self._key.public_key()
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - CLOCK_SKEW)
            .not_valid_after(now + VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_key_usage(signs_certificates=True), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .sign(self._key, hashes.SHA256())
        )

    def bundle_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def write_bundle(self, path: Path) -> Path:
        """The CA's certificate as a PEM bundle (what ``BRIDGE_WEBHOOK_CA_BUNDLE`` names)."""
        path.write_bytes(self.bundle_pem())
        return path

    def issue(
        self, directory: Path, names: Sequence[str] = LOOPBACK_NAMES, stem: str = "server"
    ) -> ServerFiles:
        """A server certificate for ``names`` (host names or IP addresses), signed by this CA:
        ``{stem}.crt`` and ``{stem}.key`` in ``directory`` (the key readable by its owner only)."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        ca_public = self._key.public_key()
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - CLOCK_SKEW)
            .not_valid_after(now + VALIDITY)
            .add_extension(x509.SubjectAlternativeName(_subject_names(names)), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(signs_certificates=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_public),
                critical=False,
            )
            .sign(self._key, hashes.SHA256())
        )
        files = ServerFiles(directory / f"{stem}.crt", directory / f"{stem}.key")
        files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        files.key.touch(mode=PRIVATE_FILE_MODE)
        files.key.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        return files


def server_context(files: ServerFiles) -> ssl.SSLContext:
    """TLS settings of a server presenting ``files``."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(files.cert, files.key)
    return context

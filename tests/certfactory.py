"""Certificates made exactly with ``cryptography``, shaped like mkcert's, for the tests.

A CA as mkcert makes its rootCA.pem (:func:`authority`) and leaves like mkcert's
(:func:`issue`), so each case -- a foreign CA, a missing name, an expired leaf, an encrypted
key -- is built exactly, with no mkcert and no waiting for a date. Used by test_certs.py
(the certificate checks) and test_verify.py (a real TLS server for the HTTPS client).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)  # the clock of the checking tests
DAY = timedelta(days=1)


@dataclass(frozen=True)
class Authority:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())  # P-256: instant, unlike RSA


def name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "readiness tests"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def authority(common_name: str = "test CA", *, issuer: Authority | None = None,
               not_before: datetime = NOW - 365 * DAY, not_after: datetime = NOW + 3650 * DAY) -> Authority:
    """A CA as mkcert makes its rootCA.pem (self-signed), or an intermediate under ``issuer``."""
    key = new_key()
    signer = issuer.key if issuer else key
    builder = (
        x509.CertificateBuilder()
        .subject_name(name(common_name))
        .issuer_name(issuer.cert.subject if issuer else name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None if issuer is None else 0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                     crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if issuer:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()), critical=False)
    return Authority(builder.sign(signer, hashes.SHA256()), key)


def issue(ca: Authority, names: list[str], *, key: ec.EllipticCurvePrivateKey | None = None,
           not_before: datetime = NOW - 30 * DAY, not_after: datetime = NOW + 800 * DAY,
           usage: x509.ObjectIdentifier = ExtendedKeyUsageOID.SERVER_AUTH,
           ip_as_dns: bool = False) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A leaf like mkcert's: SANs, serverAuth, an Authority Key Identifier, no Subject Key Identifier."""
    key = key or new_key()
    san: list[x509.GeneralName] = []
    for name in names:
        try:
            ip = ipaddress.ip_address(name)
        except ValueError:
            san.append(x509.DNSName(name))
        else:
            san.append(x509.DNSName(name) if ip_as_dns else x509.IPAddress(ip))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "readiness tests leaf")]))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=True,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False)
        .add_extension(x509.SubjectAlternativeName(san), critical=False)
        .sign(ca.key, hashes.SHA256())
    )
    return cert, key


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def key_pem(key: ec.EllipticCurvePrivateKey, *, fmt: serialization.PrivateFormat = serialization.PrivateFormat.PKCS8,
             password: bytes | None = None) -> bytes:
    encryption = (serialization.BestAvailableEncryption(password) if password
                  else serialization.NoEncryption())
    return key.private_bytes(serialization.Encoding.PEM, fmt, encryption)

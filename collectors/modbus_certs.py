"""Test and demo certificates for Modbus/TCP Security: a CA, a device (server) and a facwatch (client) certificate.

Not for production PKI: keys are written unencrypted unless a password is given, and the CA key
sits next to the certificates. Real sites issue device certificates from their own CA.

The client certificate carries the Modbus/TCP Security role extension (MB-TCP-Security-v21 §6.2:
OID 1.3.6.1.4.1.50316.802.1, a UTF8String) once, which role-based servers require.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

MODBUS_ROLE_OID = x509.ObjectIdentifier("1.3.6.1.4.1.50316.802.1")
DEFAULT_ROLE = "facwatch-reader"
VALID_DAYS = 825  # the longest life browsers accept for a leaf; plenty for a demo


@dataclass(frozen=True, slots=True)
class Issuer:
    """A CA: its certificate and key, able to issue leaves."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey


@dataclass(frozen=True, slots=True)
class PkiFiles:
    """Where ``write_modbus_pki`` put everything."""

    ca_file: Path
    ca_key_file: Path
    server_cert_file: Path
    server_key_file: Path
    client_cert_file: Path
    client_key_file: Path


def make_ca(common_name: str = "facwatch test CA", *, days: int = VALID_DAYS) -> Issuer:
    """A self-signed CA certificate (EC P-256) that may only sign leaves."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = _now()
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False),
                           critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    return Issuer(cert, key)


def issue(ca: Issuer, common_name: str, *, hosts: tuple[str, ...] = (), client: bool = False,
          role: str | None = None, days: int = VALID_DAYS, expired: bool = False) -> Issuer:
    """A leaf certificate signed by ``ca``: a server one with SAN = hosts, or a client one (with a role)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    start, end = (now - dt.timedelta(days=30), now - dt.timedelta(days=1)) if expired else \
        (now - dt.timedelta(minutes=5), now + dt.timedelta(days=days))
    usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
               .issuer_name(ca.cert.subject).public_key(key.public_key())
               .serial_number(x509.random_serial_number()).not_valid_before(start).not_valid_after(end)
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
                              critical=False))
    if hosts:
        builder = builder.add_extension(x509.SubjectAlternativeName([_san(h) for h in hosts]), critical=False)
    if role is not None:
        builder = builder.add_extension(x509.UnrecognizedExtension(MODBUS_ROLE_OID, _utf8_der(role)),
                                        critical=False)
    return Issuer(builder.sign(ca.key, hashes.SHA256()), key)


def write_pair(leaf: Issuer, cert_path: Path, key_path: Path, *, password: str | None = None) -> None:
    """Write a certificate and its key as PEM (the key readable by the owner only)."""
    cert_path.write_bytes(leaf.cert.public_bytes(serialization.Encoding.PEM))
    encryption = (serialization.BestAvailableEncryption(password.encode()) if password
                  else serialization.NoEncryption())
    key_bytes = leaf.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    key_path.touch(mode=0o600)
    key_path.chmod(0o600)
    key_path.write_bytes(key_bytes)


def write_modbus_pki(folder: Path, *, host: str = "127.0.0.1", client_key_password: str | None = None,
                     ca_name: str = "facwatch test CA") -> PkiFiles:
    """A CA, a device certificate for ``host`` and a facwatch client certificate, written to ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    ca = make_ca(ca_name)
    files = PkiFiles(folder / "ca.pem", folder / "ca.key", folder / "device.pem", folder / "device.key",
                     folder / "facwatch.pem", folder / "facwatch.key")
    write_pair(ca, files.ca_file, files.ca_key_file)
    write_pair(issue(ca, host, hosts=(host,)), files.server_cert_file, files.server_key_file)
    write_pair(issue(ca, "facwatch", client=True, role=DEFAULT_ROLE), files.client_cert_file, files.client_key_file,
               password=client_key_password)
    return files


def _san(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _utf8_der(text: str) -> bytes:
    """DER of a short UTF8String (tag 12); roles are names, far below the 128-byte short form limit."""
    data = text.encode("utf-8")
    if len(data) > 127:
        raise ValueError("a role name longer than 127 bytes")
    return bytes([0x0C, len(data)]) + data


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def add_parser(sub) -> None:
    """``facwatch certs modbus DIR [--host H]``: test/demo certificates for Modbus/TCP Security."""
    certs = sub.add_parser("certs", help="make test/demo certificates (not for production PKI)")
    kinds = certs.add_subparsers(required=True, metavar="KIND")
    modbus = kinds.add_parser("modbus", help="a CA, a device certificate for --host and a facwatch client certificate")
    modbus.add_argument("folder", type=Path)
    modbus.add_argument("--host", default="127.0.0.1", help="the device's address or name (its certificate SAN)")
    modbus.add_argument("--key-password-env", metavar="VARIABLE",
                        help="encrypt facwatch's key with the password in this environment variable")
    modbus.set_defaults(handler=_cmd_modbus)


def _cmd_modbus(args) -> int:
    import os

    password = os.environ.get(args.key_password_env) if args.key_password_env else None
    if args.key_password_env and not password:
        print(f"environment variable {args.key_password_env} is not set or empty")
        return 2
    files = write_modbus_pki(args.folder, host=args.host, client_key_password=password)
    print(f"ca_file: {files.ca_file}\ncert_file: {files.client_cert_file}\nkey_file: {files.client_key_file}\n"
          f"simulator: {{cert_file: {files.server_cert_file}, key_file: {files.server_key_file}}}")
    return 0

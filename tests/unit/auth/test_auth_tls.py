from __future__ import annotations

import datetime as dt
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from auth.tls import TlsConfigError, server_context


def write_pair(folder: Path, password: bytes | None = None) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "facwatch.test")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    encryption = (serialization.BestAvailableEncryption(password) if password
                  else serialization.NoEncryption())
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption))
    return cert_file, key_file


def test_context_is_tls12_or_later_with_the_pair_loaded(tmp_path: Path) -> None:
    context = server_context(*write_pair(tmp_path))
    assert context.minimum_version is ssl.TLSVersion.TLSv1_2
    assert context.options & ssl.OP_NO_COMPRESSION


def test_mismatched_pair_is_refused_at_start(tmp_path: Path) -> None:
    cert, _ = write_pair(tmp_path)
    (tmp_path / "other").mkdir()
    _, other_key = write_pair(tmp_path / "other")
    with pytest.raises(TlsConfigError, match="cannot use TLS certificate"):
        server_context(cert, other_key)


def test_encrypted_key_fails_instead_of_prompting(tmp_path: Path) -> None:
    with pytest.raises(TlsConfigError) as caught:
        server_context(*write_pair(tmp_path, password=b"canary-key-pass"))
    assert "canary-key-pass" not in str(caught.value)


def test_missing_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(TlsConfigError, match=r"certificate file .* does not exist"):
        server_context(tmp_path / "nope.pem", tmp_path / "key.pem")

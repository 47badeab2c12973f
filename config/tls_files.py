"""The dashboard's certificate and key (``dashboard.tls``): read, matched and loaded at ``facwatch check``.

A wrong file stops facwatch at start with the file named, instead of failing every browser's handshake
later. Messages never contain key material or the key password.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from config.schema import DashboardTls
from config.secret import Secret

MAX_PEM_BYTES = 1_000_000  # a certificate chain or key bigger than this is the wrong file
Located = tuple[tuple[str, ...], str]  # (path below dashboard.tls, message)


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """``dashboard.tls`` with absolute paths and the key password read: what the HTTPS server needs."""

    cert_file: Path
    key_file: Path
    key_password: Secret | None = None

    def context(self) -> ssl.SSLContext:
        """A fresh server context (TLS 1.2+, no compression); re-reads the files, so a restart renews."""
        from auth.tls import server_context

        return server_context(self.cert_file, self.key_file, self.key_password)


def resolve_dashboard_tls(config: DashboardTls, source: Path) -> tuple[TlsFiles, list[Located]]:
    """Resolve paths relative to the config file ``source``, read the password, check the pair; and the problems."""
    base = source.parent
    password, problems = read_key_password(config.key_password, source)
    files = TlsFiles(relative_path(base, config.cert_file), relative_path(base, config.key_file), password)
    if not problems:
        problems += _pair_problems(config, files)
    return files, problems


def relative_path(base: Path, name: str) -> Path:
    """A file named in the config: absolute as written, else relative to the config file's folder ``base``."""
    path = Path(name).expanduser()
    return path if path.is_absolute() else base / path


def read_key_password(reference, source: Path) -> tuple[Secret | None, list[Located]]:
    """A ``key_password: {env: ...} | {file: ...}`` read into a Secret (None when not configured); and the problem."""
    if reference is None:
        return None, []
    from config.load import read_secret  # here: config.load imports this module

    value, message = read_secret(reference, source, 1)
    return Secret(value), [(("key_password",), message)] if message else []


def _pair_problems(config: DashboardTls, files: TlsFiles) -> list[Located]:
    """Why the certificate and key cannot serve HTTPS (each file on its own first, then the pair)."""
    certificate, cert_problem = _certificate(config.cert_file, files.cert_file)
    key, key_problem = _private_key(config, files)
    problems = [problem for problem in (cert_problem, key_problem) if problem is not None]
    if problems or certificate is None or key is None:
        return problems
    if _public_der(certificate.public_key()) != _public_der(key.public_key()):
        return [(("key_file",), f"{config.key_file} is not the key of the certificate in {config.cert_file}")]
    try:
        files.context()
    except ValueError as exc:  # TlsConfigError: what OpenSSL still refuses (e.g. an unsupported key type)
        return [((), str(exc))]
    return []


def _read_pem(name: str, path: Path, field: str) -> tuple[bytes | None, Located | None]:
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_PEM_BYTES + 1)
    except OSError as exc:
        return None, ((field,), f"cannot read {name}: {exc.strerror} ({path})")
    except (ValueError, RuntimeError) as exc:  # a NUL in the path; "~nobody" with no such user
        return None, ((field,), f"cannot read {name}: {exc}")
    if len(data) > MAX_PEM_BYTES:
        return None, ((field,), f"{name} is larger than {MAX_PEM_BYTES} bytes; is it the right file?")
    return data, None


def _certificate(name: str, path: Path) -> tuple[x509.Certificate | None, Located | None]:
    """The server certificate (the first of the chain in the file)."""
    data, problem = _read_pem(name, path, "cert_file")
    if data is None:
        return None, problem
    try:
        return x509.load_pem_x509_certificates(data)[0], None
    except ValueError:
        return None, (("cert_file",), f"{name} holds no PEM certificate (-----BEGIN CERTIFICATE-----)")


def _private_key(config: DashboardTls, files: TlsFiles) -> tuple[object | None, Located | None]:
    data, problem = _read_pem(config.key_file, files.key_file, "key_file")
    if data is None:
        return None, problem
    password = files.key_password.reveal().encode() if files.key_password is not None else None
    try:
        return serialization.load_pem_private_key(data, password), None
    except TypeError:  # cryptography: a password for a clear key, or none for an encrypted one
        if password is None:
            return None, (("key_file",), f"{config.key_file} is encrypted; give key_password: {{env: VARIABLE}} "
                                         "or {file: PATH}")
        return None, (("key_password",), f"{config.key_file} is not encrypted; remove key_password")
    except (ValueError, UnsupportedAlgorithm):  # the library's message is not shown: it may quote key bytes
        if password is not None:
            return None, (("key_file",), f"{config.key_file}: wrong key_password, or no PEM private key in the file")
        return None, (("key_file",), f"{config.key_file} holds no PEM private key (-----BEGIN PRIVATE KEY-----)")


def _public_der(public_key) -> bytes:
    return public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)

"""Modbus/TCP Security (TLS 1.2+ on TCP 802, mutual X.509 authentication): the SSL contexts, nothing else.

Standard library only, so ``config.load`` can try the files at ``facwatch check`` time and the
simulator can serve with the same rules. Verification cannot be turned off: there is no code path
that builds a context with ``CERT_NONE`` or without a host-name check (RELIABILITY.md S8: pymodbus's
own ``generate_ssl()`` sets ``CERT_NONE``).

pymodbus 3.16 hands the context to ``loop.create_connection(host, port, ssl=ctx)``, which checks the
certificate against the address dialled. ``VerifyingClientContext`` checks it against
``server_name`` instead (a device reached by IP usually has a DNS name in its certificate) and
remembers why a handshake or a record failed, because pymodbus only logs that and returns False.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from config.secret import Secret

MODBUS_SECURITY_PORT = 802  # Modbus/TCP Security Protocol Specification (MB-TCP-Security-v21), §5


@dataclass(frozen=True, slots=True)
class ModbusTlsFiles:
    """A device's ``modbus.tls`` with paths made absolute and the key password read.

    Example::

        ModbusTlsFiles(ca_file=Path("/etc/facwatch/pki/ca.pem"), server_name="ats-a.dc1.example",
                       cert_file=Path("/etc/facwatch/pki/facwatch.pem"),
                       key_file=Path("/etc/facwatch/pki/facwatch.key"), key_password=Secret("..."))
    """

    ca_file: Path
    server_name: str  # the name the device's certificate must carry (configured, else the device host)
    cert_file: Path | None = None
    key_file: Path | None = None
    key_password: Secret | None = None
    # the simulator's side (demo and tests): the device certificate and key, issued by ca_file's CA
    server_cert_file: Path | None = None
    server_key_file: Path | None = None


class _RecordingSSLObject(ssl.SSLObject):
    """An SSLObject that tells its context why the handshake or a record failed."""

    def do_handshake(self) -> None:
        """Handshake; a real failure (not want-read/write) is kept on the context."""
        try:
            super().do_handshake()
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            raise
        except ssl.SSLError as exc:
            _note(self.context, exc)
            raise

    def read(self, *args: Any, **kwargs: Any) -> Any:
        """Read a record; an alert from the peer (e.g. "certificate required") is kept on the context."""
        try:
            data = super().read(*args, **kwargs)
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError, ssl.SSLZeroReturnError):
            raise
        except ssl.SSLError as exc:
            _note(self.context, exc)
            raise
        if data and isinstance(self.context, VerifyingClientContext):
            self.context.answered = True
        return data


def _note(context: ssl.SSLContext, exc: ssl.SSLError) -> None:
    if isinstance(context, VerifyingClientContext):
        context.last_failure = describe_tls_error(exc)


class VerifyingClientContext(ssl.SSLContext):
    """A client context that verifies the server against ``server_name`` and keeps the last TLS failure."""

    sslobject_class = _RecordingSSLObject
    server_name: str = ""
    last_failure: str | None = None  # "certificate verify failed: ...", cleared before each connect
    handshakes: int = 0  # TCP connections that reached the TLS handshake
    answered: bool = False  # the device has sent application data since the last connect

    def wrap_bio(self, incoming: ssl.MemoryBIO, outgoing: ssl.MemoryBIO, server_side: bool = False,
                 server_hostname: str | bytes | None = None, session: ssl.SSLSession | None = None) -> ssl.SSLObject:
        """Start a TLS session that checks the certificate against ``server_name``, whatever was dialled."""
        self.handshakes += 1
        return super().wrap_bio(incoming, outgoing, server_side, self.server_name, session)

    def reset(self) -> None:
        """Forget the previous attempt (called before each connect)."""
        self.last_failure = None
        self.handshakes = 0
        self.answered = False


def client_context(files: ModbusTlsFiles) -> VerifyingClientContext:
    """TLS ≥ 1.2, the device verified against ``ca_file`` and ``server_name``, our certificate presented."""
    context = VerifyingClientContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED and check_hostname by default
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    context.server_name = files.server_name
    context.load_verify_locations(cafile=str(files.ca_file))
    if files.cert_file is not None and files.key_file is not None:
        _load_identity(context, files.cert_file, files.key_file, files.key_password)
    return context


def server_context(files: ModbusTlsFiles) -> ssl.SSLContext:
    """The simulated device's side: TLS ≥ 1.2, its own certificate, a client certificate from ``ca_file`` required."""
    if files.server_cert_file is None or files.server_key_file is None:
        raise ValueError("a simulated Modbus/TCP Security device needs modbus.tls.simulator "
                         "{cert_file, key_file} (the device's certificate, issued by ca_file)")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.verify_mode = ssl.CERT_REQUIRED  # mutual authentication: no client certificate, no session
    context.load_verify_locations(cafile=str(files.ca_file))
    _load_identity(context, files.server_cert_file, files.server_key_file, None)
    return context


def _load_identity(context: ssl.SSLContext, cert: Path, key: Path, password: Secret | None) -> None:
    """Load a certificate chain; the password goes to OpenSSL through a callable and nowhere else."""
    # A callable (not the string) so the value is never an argument in a traceback's repr.
    reveal = password.reveal if password is not None else None
    context.load_cert_chain(certfile=str(cert), keyfile=str(key), password=reveal)


def describe_tls_error(exc: BaseException) -> str:
    """One line saying why TLS failed: ``certificate verify failed: self-signed certificate in chain``."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        detail = exc.verify_message or exc.reason or "unknown reason"
        return f"certificate verify failed: {detail}"
    if isinstance(exc, ssl.SSLError):
        reason = (exc.reason or exc.strerror or str(exc)).replace("_", " ").lower()
        return reason
    return str(exc) or type(exc).__name__


def identity_problems(files: ModbusTlsFiles) -> list[tuple[str, str]]:
    """(field, why) for a CA, certificate, key or password that cannot be used; never quotes the password."""
    context = VerifyingClientContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        context.load_verify_locations(cafile=str(files.ca_file))
    except (ssl.SSLError, OSError) as exc:
        return [("ca_file", f"holds no usable PEM CA certificate ({describe_tls_error(exc)})")]
    if files.cert_file is None or files.key_file is None:
        return []
    try:
        _load_identity(context, files.cert_file, files.key_file, files.key_password)
    except (ssl.SSLError, OSError) as exc:
        return [_identity_trouble(files, exc)]
    return []


def _identity_trouble(files: ModbusTlsFiles, exc: BaseException) -> tuple[str, str]:
    """Which of certificate, key and password OpenSSL refused, in words (its PEM_LIB says nothing)."""
    reason = getattr(exc, "reason", None) or ""
    if reason == "KEY_VALUES_MISMATCH":
        return "key_file", "is not the key of the certificate in cert_file"
    encrypted = b"ENCRYPTED" in _head(files.key_file)
    if encrypted and files.key_password is None:
        return "key_file", "is encrypted; give key_password: {env: VARIABLE} or {file: PATH}"
    if encrypted:
        return "key_password", "does not decrypt key_file (wrong password?)"
    if b"-----BEGIN CERTIFICATE-----" not in _head(files.cert_file):
        return "cert_file", "holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
    return "key_file", f"holds no usable PEM private key ({describe_tls_error(exc)})"


def _head(path: Path | None) -> bytes:
    try:
        with open(path or "", "rb") as handle:
            return handle.read(65536)
    except OSError:
        return b""

"""The server-side TLS context for serving the dashboard over HTTPS directly (TLS 1.2 or later).

waitress has no TLS. Two ways to serve HTTPS, in order of preference:

1. a reverse proxy on the same host (nginx, Caddy, HAProxy) terminates TLS and forwards to waitress on
   127.0.0.1; pass ``trusted_proxies=("127.0.0.1",)`` to ``auth.web.install`` and let the proxy
   overwrite ``X-Forwarded-For`` / ``X-Forwarded-User`` (never pass a client's through);
2. facwatch itself with ``dashboard.tls`` in the site file: cheroot with this context
   (``dashboard/serve.py``; the files are checked by ``config/tls_files.py`` at ``facwatch check``).

Either way the certificate and key are checked at start, so a wrong file stops facwatch at once
instead of failing every handshake later.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from config.secret import Secret


class TlsConfigError(ValueError):
    """The certificate or key cannot be used (the message never contains key material)."""


def server_context(cert_file: str | Path, key_file: str | Path, password: Secret | None = None) -> ssl.SSLContext:
    """A server context with the certificate chain and key loaded; TLS 1.2 minimum, no compression.

    ``password`` decrypts an encrypted key; Python's default server ciphers are kept.
    """
    for label, path in (("certificate", cert_file), ("key", key_file)):
        if not Path(path).is_file():
            raise TlsConfigError(f"TLS {label} file {path} does not exist")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    try:
        # password=b"" makes an encrypted key fail here instead of prompting on the terminal
        secret = password.reveal().encode() if password is not None else b""
        context.load_cert_chain(str(cert_file), str(key_file), password=secret)
    except (ssl.SSLError, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc.__class__.__name__
        raise TlsConfigError(f"cannot use TLS certificate {cert_file} with key {key_file}: {reason}") from None
    return context

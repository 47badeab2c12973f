"""Test certificates: a throw-away CA and a server certificate it signed, written to a test's tmp_path.

Built with collectors/modbus_certs.py, the same code behind ``facwatch certs modbus``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from collectors.modbus_certs import issue, make_ca, write_pair


@dataclass(frozen=True)
class Pki:
    """Where the files are: the CA certificate a client trusts, and the server's certificate and key."""

    ca_file: Path
    cert_file: Path
    key_file: Path


def make_pki(folder: Path, password: bytes | None = None, name: str = "server") -> Pki:
    """A CA and a server certificate for 127.0.0.1 and localhost (its key encrypted with ``password`` if given)."""
    folder.mkdir(parents=True, exist_ok=True)
    ca = make_ca(days=2)
    pki = Pki(folder / "ca.pem", folder / f"{name}.pem", folder / f"{name}-key.pem")
    write_pair(ca, pki.ca_file, folder / "ca-key.pem")
    write_pair(issue(ca, "localhost", hosts=("localhost", "127.0.0.1"), days=1), pki.cert_file, pki.key_file,
               password=password.decode() if password else None)
    return pki

"""The Ed25519 key that signs audit checkpoints and pack manifests: load, or generate once, never print.

Where the key comes from, first match wins:
1. an explicit key file (the caller's configuration);
2. ``FACWATCH_AUDIT_KEY``: PEM (PKCS#8) text or the base64 of the 32-byte Ed25519 seed;
3. ``FACWATCH_AUDIT_KEY_FILE``: a key file path;
4. ``<data dir>/audit-signing-key.pem``, generated there on first use with mode 0600.

Key material only ever travels as ``config.secret.Secret``; a ``SigningKey`` prints its key id, never the key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import stat
from collections.abc import Mapping
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from config.secret import Secret

KEY_FILE_NAME = "audit-signing-key.pem"
ENV_KEY = "FACWATCH_AUDIT_KEY"
ENV_KEY_FILE = "FACWATCH_AUDIT_KEY_FILE"


class SigningKeyError(ValueError):
    """A signing key that cannot be loaded or is stored unsafely (the message never contains key material)."""


class SigningKey:
    """An Ed25519 private key with its public half and key id; ``repr`` shows only the id."""

    __slots__ = ("_private", "key_id", "public_raw")

    def __init__(self, private: Ed25519PrivateKey):
        self._private = private
        self.public_raw = private.public_key().public_bytes(serialization.Encoding.Raw,
                                                           serialization.PublicFormat.Raw)
        self.key_id = key_id(self.public_raw)

    def sign(self, data: bytes) -> str:
        """Base64 Ed25519 signature over ``data``."""
        return base64.b64encode(self._private.sign(data)).decode("ascii")

    def public_pem(self) -> bytes:
        """The public key as SubjectPublicKeyInfo PEM (what a pack ships)."""
        return self._private.public_key().public_bytes(serialization.Encoding.PEM,
                                                       serialization.PublicFormat.SubjectPublicKeyInfo)

    def public_key(self) -> Ed25519PublicKey:
        """The public half."""
        return self._private.public_key()

    def __repr__(self) -> str:
        return f"SigningKey(key_id={self.key_id!r}, private=<redacted>)"

    __str__ = __repr__

    def __reduce__(self) -> tuple:
        raise TypeError("signing keys are not picklable")


def key_id(public_raw: bytes) -> str:
    """A short fingerprint of a raw public key: the first 16 hex digits of its SHA-256."""
    return hashlib.sha256(public_raw).hexdigest()[:16]


def load_signing_key(data_dir: str | Path, *, key_file: str | Path | None = None,
                     env: Mapping[str, str] | None = None) -> SigningKey:
    """The configured signing key, or the one in the data dir, generated there (0600) on first use."""
    env = os.environ if env is None else env
    if key_file is not None:
        return read_key_file(Path(key_file))
    if env.get(ENV_KEY):
        return key_from_secret(Secret(env[ENV_KEY]))
    if env.get(ENV_KEY_FILE):
        return read_key_file(Path(env[ENV_KEY_FILE]))
    path = Path(data_dir) / KEY_FILE_NAME
    return read_key_file(path) if path.exists() else generate_key_file(path)


def key_from_secret(secret: Secret) -> SigningKey:
    """A key from PEM text or a base64 32-byte seed held in a Secret."""
    text = secret.reveal().strip()
    try:
        if text.startswith("-----BEGIN"):
            private = serialization.load_pem_private_key(text.encode("ascii"), password=None)
        else:
            private = Ed25519PrivateKey.from_private_bytes(base64.b64decode(text, validate=True))
    except (ValueError, TypeError, binascii.Error, UnicodeEncodeError):
        raise SigningKeyError("the audit signing key is neither Ed25519 PEM nor a base64 32-byte seed") from None
    if not isinstance(private, Ed25519PrivateKey):
        raise SigningKeyError("the audit signing key must be an Ed25519 key")
    return SigningKey(private)


def read_key_file(path: str | Path) -> SigningKey:
    """Load a PEM key file; refuse one that group or others can read (like ssh does)."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise SigningKeyError(f"cannot read the audit signing key {path}: {type(exc).__name__}") from None
    if os.name == "posix" and mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SigningKeyError(f"the audit signing key {path} is readable by others; run: chmod 600 {path}")
    try:
        return key_from_secret(Secret(text))
    except SigningKeyError as exc:
        raise SigningKeyError(f"{path}: {exc}") from None


def generate_key_file(path: Path) -> SigningKey:
    """Create a new key at ``path`` (mode 0600); if another process won the race, load its key instead."""
    path.parent.mkdir(parents=True, exist_ok=True)
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)  # the umask cannot widen it, but be explicit
        os.write(fd, pem)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(temp, path)  # atomic and refuses to overwrite: two processes never end up with two keys
    except FileExistsError:
        return read_key_file(path)
    finally:
        temp.unlink()
    return SigningKey(private)


def public_key_from_pem(pem: bytes) -> Ed25519PublicKey:
    """An Ed25519 public key from SubjectPublicKeyInfo PEM; ValueError otherwise."""
    key = serialization.load_pem_public_key(pem)
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("not an Ed25519 public key")
    return key


def public_key_id(public: Ed25519PublicKey) -> str:
    """The key id of a public key."""
    return key_id(public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))


def signature_valid(public: Ed25519PublicKey, signature_b64: str, data: bytes) -> bool:
    """True when ``signature_b64`` is a valid Ed25519 signature of ``data`` by ``public``."""
    try:
        public.verify(base64.b64decode(signature_b64, validate=True), data)
    except (InvalidSignature, ValueError, TypeError, binascii.Error):
        return False
    return True

"""Password hashing with Argon2id (argon2-cffi) and the password policy."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

MIN_LENGTH = 12
MAX_LENGTH = 1024  # hashing a megabyte "password" is a cheap denial of service


def policy_problem(password: str) -> str | None:
    """Why ``password`` is not acceptable, or None (the message never contains it)."""
    if len(password) < MIN_LENGTH:
        return f"a password needs at least {MIN_LENGTH} characters"
    if len(password) > MAX_LENGTH:
        return f"a password has at most {MAX_LENGTH} characters"
    if not password.strip():
        return "a password cannot be blank"
    return None


class Hasher:
    """Argon2id hashes in PHC string form (salt and parameters included in the string).

    The defaults are RFC 9106's second recommended option (t=3, 64 MiB, p=4), written out so that a
    library upgrade does not change them silently; ``needs_rehash`` upgrades old hashes at login.
    Tests pass cheaper parameters.
    """

    def __init__(self, *, time_cost: int = 3, memory_cost: int = 65536, parallelism: int = 4):
        self._hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_cost, parallelism=parallelism,
                                      hash_len=32, salt_len=16)
        # Verified against when the user does not exist, so a wrong name takes as long as a wrong
        # password and names cannot be probed by timing.
        self._dummy = self._hasher.hash("facwatch-dummy-password-for-timing")

    def hash(self, password: str) -> str:
        """A new salted hash of ``password``."""
        return self._hasher.hash(password)

    def verify(self, stored_hash: str | None, password: str) -> bool:
        """True if ``password`` matches; with no stored hash, spends the same time and returns False."""
        if len(password) > MAX_LENGTH:
            return False
        try:
            return self._hasher.verify(stored_hash or self._dummy, password) and stored_hash is not None
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, stored_hash: str) -> bool:
        """True if the hash was made with other parameters than today's."""
        try:
            return self._hasher.check_needs_rehash(stored_hash)
        except InvalidHashError:
            return True

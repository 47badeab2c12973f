from __future__ import annotations

from auth.passwords import MAX_LENGTH, Hasher, policy_problem

CHEAP = Hasher(time_cost=1, memory_cost=1024, parallelism=1)


def test_hash_is_argon2id_salted_and_verifies() -> None:
    first, second = CHEAP.hash("a long enough password"), CHEAP.hash("a long enough password")
    assert first.startswith("$argon2id$")
    assert first != second  # salted
    assert CHEAP.verify(first, "a long enough password")
    assert not CHEAP.verify(first, "a long enough passworD")


def test_no_stored_hash_never_verifies() -> None:
    assert not CHEAP.verify(None, "facwatch-dummy-password-for-timing")


def test_garbage_hash_and_huge_password_are_refused_not_raised() -> None:
    assert not CHEAP.verify("not-a-hash", "whatever password")
    assert not CHEAP.verify(CHEAP.hash("x" * 20), "x" * (MAX_LENGTH + 1))


def test_hash_with_weaker_parameters_needs_rehash() -> None:
    assert Hasher().needs_rehash(CHEAP.hash("a long enough password"))
    assert not CHEAP.needs_rehash(CHEAP.hash("a long enough password"))


def test_default_parameters_are_rfc9106_second_option() -> None:
    assert "m=65536,t=3,p=4" in Hasher().hash("a long enough password")


def test_policy_refuses_short_blank_and_huge_passwords_without_echoing_them() -> None:
    assert policy_problem("short") == "a password needs at least 12 characters"
    assert policy_problem(" " * 20) == "a password cannot be blank"
    assert "1024" in (policy_problem("y" * 2000) or "")
    assert policy_problem("twelve chars!") is None

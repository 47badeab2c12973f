from __future__ import annotations

import pytest

from auth.model import IdentityKind, LoginRefused, Role
from auth.service import THROTTLED, WRONG_CREDENTIALS, AuthService
from tests.unit.auth.conftest import PASSWORD, FakeClock, RecordingSink


def test_login_opens_a_session_found_by_its_token(users: AuthService) -> None:
    new = users.login("otto", PASSWORD, "10.0.0.5")
    active = users.session(new.token, "10.0.0.5")
    assert active is not None
    assert active.identity.name == "otto"
    assert active.identity.role is Role.OPERATOR
    assert active.identity.kind is IdentityKind.SESSION
    assert active.csrf == new.csrf


def test_session_ids_are_random_and_stored_hashed(users: AuthService) -> None:
    one, two = users.login("otto", PASSWORD, "a"), users.login("otto", PASSWORD, "a")
    assert one.token != two.token and one.csrf != two.csrf and len(one.token) >= 43
    with users.db.read() as conn:
        stored = [row[0] for row in conn.execute("SELECT id_hash FROM auth_session")]
    assert one.token not in stored and len(stored) == 2


def test_login_names_are_case_insensitive_but_passwords_are_not(users: AuthService) -> None:
    assert users.login("OTTO", PASSWORD, "a").identity.name == "otto"
    with pytest.raises(LoginRefused):
        users.login("otto", PASSWORD.upper(), "a")


@pytest.mark.parametrize("name", ["otto", "nobody"])
def test_wrong_password_and_unknown_user_get_the_same_answer(users: AuthService, name: str) -> None:
    with pytest.raises(LoginRefused) as caught:
        users.login(name, "wrong password!!", "a")
    assert str(caught.value) == WRONG_CREDENTIALS


def test_idle_timeout_ends_a_session(users: AuthService, clock: FakeClock) -> None:
    token = users.login("otto", PASSWORD, "a").token
    clock.advance(users.policy.idle_s - 1)
    assert users.session(token, "a") is not None  # activity: extends it
    clock.advance(users.policy.idle_s - 1)
    assert users.session(token, "a") is not None
    clock.advance(users.policy.idle_s)
    assert users.session(token, "a") is None
    clock.advance(-users.policy.idle_s)  # a deleted session does not come back
    assert users.session(token, "a") is None


def test_timer_refreshes_do_not_keep_a_session_alive(users: AuthService, clock: FakeClock) -> None:
    token = users.login("otto", PASSWORD, "a").token
    for _ in range(int(users.policy.idle_s // 2) + 1):
        assert users.session(token, "a", activity=False) is not None or clock.now
        clock.advance(2)
    assert users.session(token, "a", activity=False) is None


def test_absolute_timeout_ends_even_an_active_session(users: AuthService, clock: FakeClock) -> None:
    token = users.login("otto", PASSWORD, "a").token
    steps = int(users.policy.absolute_s // 600)
    for _ in range(steps - 1):
        clock.advance(600)
        assert users.session(token, "a") is not None
    clock.advance(600)
    assert users.session(token, "a") is None


def test_logout_ends_the_session_and_is_audited(users: AuthService, sink: RecordingSink) -> None:
    token = users.login("otto", PASSWORD, "10.1.1.1").token
    users.logout(token, "10.1.1.1")
    assert users.session(token, "10.1.1.1") is None
    assert sink.events[-1] == {"actor": "otto", "action": "logout", "subject": "session", "details": {},
                               "source": "10.1.1.1"}


def test_password_change_ends_every_session_of_the_user_only(users: AuthService) -> None:
    mine = [users.login("otto", PASSWORD, "a").token for _ in range(2)]
    theirs = users.login("vera", PASSWORD, "a").token
    users.set_password("otto", "a brand new passphrase", actor="ada", source="cli")
    assert all(users.session(t, "a") is None for t in mine)
    assert users.session(theirs, "a") is not None
    with pytest.raises(LoginRefused):
        users.login("otto", PASSWORD, "a")
    assert users.login("otto", "a brand new passphrase", "a")


def test_disable_ends_sessions_and_refuses_login(users: AuthService, sink: RecordingSink) -> None:
    token = users.login("otto", PASSWORD, "a").token
    users.disable("otto", actor="ada", source="cli")
    assert users.session(token, "a") is None
    with pytest.raises(LoginRefused) as caught:
        users.login("otto", PASSWORD, "a")
    assert str(caught.value) == WRONG_CREDENTIALS
    assert sink.events[-1]["details"]["reason"] == "disabled"


def test_user_admin_refusals(users: AuthService) -> None:
    with pytest.raises(ValueError, match="exists"):
        users.add_user("Otto", "viewer", PASSWORD, actor="t", source="t")
    with pytest.raises(ValueError, match="role must be one of"):
        users.add_user("kim", "kiosk", PASSWORD, actor="t", source="t")
    with pytest.raises(ValueError, match="at least 12"):
        users.add_user("kim", "viewer", "short", actor="t", source="t")
    with pytest.raises(ValueError, match="user name"):
        users.add_user("kim smith", "viewer", PASSWORD, actor="t", source="t")
    with pytest.raises(ValueError, match="no user"):
        users.disable("nobody", actor="t", source="t")


def test_privileged_actions_are_audited_with_who_what_where(users: AuthService, sink: RecordingSink) -> None:
    users.login("otto", PASSWORD, "10.0.0.9")
    with pytest.raises(LoginRefused):
        users.login("otto", "wrong password!!", "10.0.0.9")
    users.disable("vera", actor="ada", source="cli ada@host")
    assert sink.actions()[:4] == ["user.add"] * 4
    assert sink.actions()[4:] == ["login", "login.failed", "user.disable"]
    login, failed, disabled = sink.events[4:]
    assert (login["actor"], login["source"], login["details"]["role"]) == ("otto", "10.0.0.9", "operator")
    assert (failed["actor"], failed["details"]["reason"]) == ("otto", "wrong password")
    assert (disabled["actor"], disabled["subject"], disabled["details"]["after"]) == ("ada", "vera", "disabled")


def test_failed_login_for_an_unknown_name_does_not_record_the_name(users: AuthService, sink: RecordingSink) -> None:
    typed = "my-secret-password-typed-in-the-name-field"
    with pytest.raises(LoginRefused):
        users.login(typed, "x" * 12, "a")
    assert typed not in repr(sink.events)
    assert sink.events[-1]["actor"] == "(unknown user)"
    assert len(sink.events[-1]["details"]["name_sha256"]) == 12


def test_audit_failure_stops_the_action(users: AuthService) -> None:
    class BrokenSink:
        def record(self, *args) -> None:
            raise OSError("disk full")

    users.audit = BrokenSink()
    with pytest.raises(OSError):
        users.disable("vera", actor="ada", source="cli")
    assert users.user("vera").enabled


def test_proxy_session_needs_an_enabled_account(users: AuthService) -> None:
    assert users.proxy_session("vera", "10.0.0.1").identity.kind is IdentityKind.PROXY
    with pytest.raises(LoginRefused):
        users.proxy_session("mallory", "10.0.0.1")


# --- rate limiting --------------------------------------------------------------------------------------
def test_five_failures_lock_the_name_until_the_window_passes(users: AuthService, clock: FakeClock) -> None:
    for _ in range(users.throttle.policy.per_user):
        with pytest.raises(LoginRefused):
            users.login("otto", "wrong password!!", "10.0.0.1")
    with pytest.raises(LoginRefused) as caught:
        users.login("otto", PASSWORD, "10.0.0.2")  # right password, other address: still locked
    assert str(caught.value) == THROTTLED
    clock.advance(users.throttle.policy.window_s + 1)
    assert users.login("otto", PASSWORD, "10.0.0.2")


def test_success_clears_the_names_failures(users: AuthService) -> None:
    for _ in range(users.throttle.policy.per_user - 1):
        with pytest.raises(LoginRefused):
            users.login("otto", "wrong password!!", "a")
    users.login("otto", PASSWORD, "a")
    for _ in range(users.throttle.policy.per_user - 1):
        with pytest.raises(LoginRefused):
            users.login("otto", "wrong password!!", "a")
    assert users.login("otto", PASSWORD, "a")


def test_one_address_spraying_many_names_is_locked_out(users: AuthService) -> None:
    for index in range(users.throttle.policy.per_source):
        with pytest.raises(LoginRefused):
            users.login(f"guess{index}", "wrong password!!", "203.0.113.7")
    with pytest.raises(LoginRefused, match="too many"):
        users.login("vera", PASSWORD, "203.0.113.7")
    assert users.login("vera", PASSWORD, "10.0.0.1")  # other addresses are not punished


def test_unknown_names_are_throttled_like_real_ones(users: AuthService) -> None:
    for _ in range(users.throttle.policy.per_user):
        with pytest.raises(LoginRefused, match="wrong"):
            users.login("nobody", "wrong password!!", "a")
    with pytest.raises(LoginRefused, match="too many"):
        users.login("nobody", "wrong password!!", "b")


def test_failures_survive_a_restart(users: AuthService, clock: FakeClock, sink: RecordingSink) -> None:
    for _ in range(users.throttle.policy.per_user):
        with pytest.raises(LoginRefused):
            users.login("otto", "wrong password!!", "a")
    again = AuthService(users.db, sink, clock=clock, hasher=users.hasher)
    with pytest.raises(LoginRefused, match="too many"):
        again.login("otto", PASSWORD, "a")

from __future__ import annotations

import pytest

from auth.db import Database
from auth.model import IdentityKind, Role
from auth.service import AuthService
from auth.tokens import PREFIX
from tests.unit.auth.conftest import FakeClock, RecordingSink


def test_kiosk_token_gives_a_read_only_wall_identity(service: AuthService) -> None:
    token = service.create_kiosk_token("NOC-1", actor="ada", source="cli")
    identity, _ = service.kiosk_identity(token, "10.0.9.3")
    assert identity is not None
    assert (identity.name, identity.role, identity.kind) == ("kiosk:NOC-1", Role.KIOSK, IdentityKind.KIOSK)
    assert not identity.has_role("viewer")
    assert not any(identity.may(p) for p in ("acknowledge", "silence", "maintenance", "export", "manage_users"))


def test_token_is_stored_hashed_and_survives_a_restart(service: AuthService, db_path, clock: FakeClock) -> None:
    token = service.create_kiosk_token("NOC-1", actor="ada", source="cli")
    assert token.startswith(PREFIX)
    assert token.encode() not in db_path.read_bytes()
    restarted = AuthService(Database(db_path), RecordingSink(), clock=clock)
    assert restarted.kiosk_identity(token, "a")[0] is not None


def test_revoked_token_stops_working_at_once(service: AuthService, sink: RecordingSink) -> None:
    token = service.create_kiosk_token("NOC-1", actor="ada", source="cli")
    assert service.kiosk_identity(token, "a")[0] is not None
    assert service.revoke_kiosk_token("noc-1", actor="ada", source="cli")
    identity, checked = service.kiosk_identity(token, "a")
    assert identity is None and checked.problem == "revoked"
    assert sink.actions() == ["token.create", "token.revoke", "kiosk.refused"]
    assert not service.revoke_kiosk_token("NOC-1", actor="ada", source="cli")


def test_a_name_can_be_reused_after_revocation_only(service: AuthService) -> None:
    service.create_kiosk_token("NOC-1", actor="ada", source="cli")
    with pytest.raises(ValueError, match="exists"):
        service.create_kiosk_token("NOC-1", actor="ada", source="cli")
    service.revoke_kiosk_token("NOC-1", actor="ada", source="cli")
    assert service.create_kiosk_token("NOC-1", actor="ada", source="cli")
    assert [t.active for t in service.kiosk_tokens()] == [True, False]


def test_expiry_and_network_binding(service: AuthService, clock: FakeClock) -> None:
    token = service.create_kiosk_token("NOC-2", actor="ada", source="cli", expires_at=clock.now + 60,
                                       network="10.0.9.0/24")
    assert service.kiosk_identity(token, "10.0.9.200")[0] is not None
    assert service.kiosk_identity(token, "10.0.8.1")[1].problem == "used outside its network"
    clock.advance(61)
    assert service.kiosk_identity(token, "10.0.9.200")[1].problem == "expired"


@pytest.mark.parametrize("token", ["", "fwk_", "fwk_not-a-real-token", "sess-id", "fwk_" + "x" * 500])
def test_unknown_tokens_are_refused(service: AuthService, token: str) -> None:
    assert service.kiosk_identity(token, "a")[0] is None


def test_a_revoked_screen_polling_is_audited_once_per_ten_minutes(service: AuthService, sink: RecordingSink,
                                                                  clock: FakeClock) -> None:
    token = service.create_kiosk_token("NOC-1", actor="ada", source="cli")
    service.revoke_kiosk_token("NOC-1", actor="ada", source="cli")
    for _ in range(300):  # a wall page refreshing every 2 s
        service.kiosk_identity(token, "a")
        clock.advance(2)
    assert sink.actions().count("kiosk.refused") == 1
    clock.advance(600)
    service.kiosk_identity(token, "a")
    assert sink.actions().count("kiosk.refused") == 2


def test_last_use_is_recorded_for_the_admin_list(service: AuthService, clock: FakeClock) -> None:
    token = service.create_kiosk_token("NOC-1", actor="ada", source="cli")
    service.kiosk_identity(token, "10.0.9.3")
    listed = service.kiosk_tokens()[0]
    assert (listed.last_used, listed.last_source, listed.created_by) == (clock.now, "10.0.9.3", "ada")


def test_invalid_names_and_networks_are_refused(service: AuthService) -> None:
    with pytest.raises(ValueError, match="token name"):
        service.create_kiosk_token("NOC 1", actor="ada", source="cli")
    with pytest.raises(ValueError):
        service.create_kiosk_token("NOC-3", actor="ada", source="cli", network="10.0.0.0/99")

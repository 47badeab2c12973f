"""Thresholds in force: rule versions recorded at start-up with who/why, audited, queryable, in the pack."""

from __future__ import annotations

import json

import pytest

from alerts.rules import load_rules
from evidence.auditlog import AuditLog, AuditWriteError
from evidence.compliance import rule_hash
from evidence.keys import generate_key_file
from evidence.providers import pack_providers
from evidence.thresholds import NOT_GIVEN, RuleVersionStore, change_author, in_force, rule_versions

T0 = 1_800_000_000.0


class Clock:
    def __init__(self):
        self.t = T0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def db(tmp_path):
    return tmp_path / "facwatch.db"


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def audit(db, clock):
    with AuditLog(db, generate_key_file(db.parent / "audit.key"), clock=clock) as log:
        yield log


def changed_inlet(rules):
    """The same rules with the inlet temperature envelope moved (a threshold change)."""
    out = []
    for rule in rules:
        if rule.name == "inlet_temperature_out_of_envelope":
            rule = rule.model_copy(update={"summary": rule.summary + " (CHG-42)"})
        out.append(rule)
    return out


def test_first_start_records_every_rule_as_added_with_its_hash_and_definition(db, clock, audit):
    rules = load_rules()
    versions = RuleVersionStore(db, clock)
    changes = versions.record(rules, audit, "j.smith", "initial commissioning")
    assert {c.change for c in changes} == {"added"} and len(changes) == len(rules)
    history = versions.history("ups_on_battery")
    [row] = history
    ups = next(r for r in rules if r.name == "ups_on_battery")
    assert (row["hash"], row["changed_by"], row["reason"], row["valid_from"], row["valid_to"]) == (
        rule_hash(ups), "j.smith", "initial commissioning", T0, None)
    assert json.loads(row["definition"])["name"] == "ups_on_battery"
    entries = audit.entries()
    assert len(entries) == len(rules) and {e.action for e in entries} == {"config.change"}
    assert json.loads(entries[0].details)["reason"] == "initial commissioning"


def test_an_unchanged_restart_records_nothing(db, clock, audit):
    versions = RuleVersionStore(db, clock)
    versions.record(load_rules(), audit, "j.smith", "initial")
    before = audit.head()
    assert versions.record(load_rules(), audit) == []
    assert audit.head() == before


def test_a_changed_rule_closes_its_version_and_opens_a_new_one(db, clock, audit):
    versions = RuleVersionStore(db, clock)
    versions.record(load_rules(), audit, "j.smith", "initial")
    clock.t += 86_400
    [change] = versions.record(changed_inlet(load_rules()), audit, "k.lee", "CHG-42 new summary")
    assert change.change == "changed" and change.old_hash != change.new_hash
    old, new = versions.history("inlet_temperature_out_of_envelope")
    assert (old["valid_to"], old["closed_by"]) == (T0 + 86_400, "k.lee")
    assert (new["valid_from"], new["changed_by"], new["reason"]) == (T0 + 86_400, "k.lee", "CHG-42 new summary")
    last = audit.entries()[-1]
    details = json.loads(last.details)
    assert (last.actor, last.subject, details["before"]["hash"], details["after"]["hash"]) == (
        "k.lee", "rule inlet_temperature_out_of_envelope", change.old_hash, change.new_hash)
    assert new["audit_seq"] == last.seq
    # which thresholds applied when: before the change the old hash, after it the new one
    at = {r["rule"]: r["hash"] for r in in_force(db, T0 + 10)}
    assert at["inlet_temperature_out_of_envelope"] == change.old_hash
    assert {r["rule"]: r["hash"] for r in in_force(db, T0 + 86_401)}["inlet_temperature_out_of_envelope"] == \
        change.new_hash


def test_a_removed_rule_is_closed(db, clock, audit):
    versions = RuleVersionStore(db, clock)
    versions.record(load_rules(), audit, "a", "b")
    clock.t += 60
    changes = versions.record([r for r in load_rules() if r.name != "crac_alarm"], audit, "a", "retired")
    assert [(c.rule, c.change) for c in changes] == [("crac_alarm", "removed")]
    assert versions.history("crac_alarm")[0]["valid_to"] == T0 + 60


def test_who_and_why_come_from_arguments_then_environment_then_unknown():
    env = {"FACWATCH_CHANGE_BY": "ops-bot", "FACWATCH_CHANGE_REASON": "CHG-7"}
    assert change_author("j.smith", "CHG-1", env) == ("j.smith", "CHG-1")
    assert change_author(None, None, env) == ("ops-bot", "CHG-7")
    assert change_author(None, " ", {}) == (NOT_GIVEN, NOT_GIVEN)


def test_nothing_is_recorded_when_the_audit_log_cannot_take_the_change(db, clock):
    class Broken:
        def append(self, *args, **kwargs):
            raise AuditWriteError("disk full")

    versions = RuleVersionStore(db, clock)
    with pytest.raises(AuditWriteError):
        versions.record(load_rules(), Broken(), "a", "b")
    assert versions.history() == []


def test_rule_versions_are_a_pack_record_set(db, clock, audit):
    RuleVersionStore(db, clock).record(load_rules(), audit, "j.smith", "initial")
    assert pack_providers()["rule_versions"] is rule_versions
    rows = rule_versions(db, T0 - 10, T0 + 10)
    assert rows and rows[0]["valid_from"] == "2027-01-15T08:00:00Z" and rows[0]["changed_by"] == "j.smith"
    assert rule_versions(db, T0 - 100, T0 - 10) == []


def test_cli_lists_the_versions_in_force_at_a_time(db, clock, audit, capsys):
    import argparse

    from evidence.cli import add_parser

    RuleVersionStore(db, clock).record(load_rules(), audit, "j.smith", "initial")
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    args = parser.parse_args(["evidence", "thresholds", "--db", str(db), "--rule", "ups_on_battery",
                              "--at", "2027-01-15T09:00:00Z"])
    assert args.handler(args) == 0
    [line] = capsys.readouterr().out.splitlines()
    assert line.startswith("ups_on_battery") and "2027-01-15T08:00:00Z .. now" in line
    assert line.endswith("by j.smith: initial")


def test_the_runtime_records_rule_versions_at_start_up_once(db, monkeypatch):
    from config.load import load_site
    from facwatch.runtime import Alerting
    from tests.conftest import SKELETON_CONFIG

    monkeypatch.setenv("FACWATCH_CHANGE_REASON", "CHG-9 commissioning")
    first = Alerting(load_site(SKELETON_CONFIG), db, change_by="j.smith")
    changes = [e for e in first.audit.entries() if e.action == "config.change"]
    first.close()
    assert changes and {e.actor for e in changes} == {"j.smith"}
    assert json.loads(changes[0].details)["reason"] == "CHG-9 commissioning"
    again = Alerting(load_site(SKELETON_CONFIG), db)
    assert len([e for e in again.audit.entries() if e.action == "config.change"]) == len(changes)
    again.close()

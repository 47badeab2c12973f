"""The alert state and operator actions of a sharded site, read and written as if it were one file.

Each ``facwatch collect --shard i/n`` keeps its alerts, commands, silences and heartbeats in a SQLite file
of its own (collectors/sharding.py). One dashboard reads them all through ``ShardedAlertState`` and
``ShardedActions``, which offer the calls the dashboard makes on ``AlertStateStore`` and ``ActionStore``:

- alerts are the union of every shard's (fingerprints include the device, so they do not collide);
- heartbeats are named per shard (``collector@2-of-2``) so the banner says which shard is down;
- an ack goes to the shard whose engine holds the alert (the shard that polls its device); a silence goes
  to EVERY shard (its matchers may match devices of any shard) under one ``group`` id, so it is listed
  once and expired everywhere.

A shard file that is missing or cannot be read makes that shard *unavailable* (``unavailable_shards``):
the others are still shown, and a read fails only when no shard at all can be read — never a silent
"no alerts". Missing files are not created: a dashboard must not invent an empty shard.
"""

from __future__ import annotations

import json
import logging
import re
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TypeVar

from alerts.commands import ActionStore, Command, Heartbeat, SilenceKind, SilenceRecord
from alerts.model import Alert, AlertState
from alerts.state import AlertStateStore
from collectors.sharding import Shard, shard_data_dir, shard_path

log = logging.getLogger(__name__)
T = TypeVar("T")

SHARD_DIR = re.compile(r"^shard-(\d+)-of-(\d+)$")
_ACTIVE = (AlertState.PENDING, AlertState.FIRING)
LOCAL_SILENCE_BASE = 1_000_000  # a silence made on one shard's file alone is shown as shard × this + its id


class ShardUnavailable(Exception):
    """A shard's SQLite file is missing or cannot be read."""


class ShardCountAmbiguous(ValueError):
    """Shard files of more than one shard count lie side by side: the operator must say which."""


# --- finding the shard files ---------------------------------------------------------------------------

def shard_files(storage_path: Path, data_dir: Path | None, count: int) -> dict[Shard, Path]:
    """Where ``collect --shard i/count`` keeps its file, for every i (as cmd_run places them)."""
    shards = [Shard(index, count) for index in range(1, count + 1)]
    if data_dir is not None:
        return {shard: shard_data_dir(data_dir, shard) / "facwatch.db" for shard in shards}
    return {shard: shard_path(storage_path, shard) for shard in shards}


def discover_shard_count(storage_path: Path, data_dir: Path | None) -> int | None:
    """The shard count whose files exist (None: no shard files); ShardCountAmbiguous when several do."""
    counts = {shard.count for shard in _existing_shards(storage_path, data_dir)}
    if len(counts) > 1:
        found = ", ".join(str(n) for n in sorted(counts))
        raise ShardCountAmbiguous(f"shard files for {found} shards lie side by side; say which with --shards N")
    return counts.pop() if counts else None


def _existing_shards(storage_path: Path, data_dir: Path | None) -> Iterable[Shard]:
    if data_dir is not None:
        candidates = [(p.name, p / "facwatch.db") for p in data_dir.glob("shard-*-of-*")]
        pattern = SHARD_DIR
    else:
        candidates = [(p.name, p) for p in storage_path.parent.glob(f"{storage_path.stem}.shard-*-of-*"
                                                                     f"{storage_path.suffix}")]
        pattern = re.compile(rf"^{re.escape(storage_path.stem)}\.shard-(\d+)-of-(\d+){re.escape(storage_path.suffix)}$")
    for name, path in candidates:
        match = pattern.match(name)
        if match and path.is_file():
            try:
                yield Shard(int(match[1]), int(match[2]))
            except ValueError:
                continue  # shard-3-of-2: not a file any collector writes


# --- one shard's file ----------------------------------------------------------------------------------

@dataclass(eq=False)
class ShardFile:
    """One shard's SQLite file, opened on first use and reopened after a failure; never created here."""

    shard: Shard
    path: Path
    clock: Callable[[], float] = time.time
    _alerts: AlertStateStore | None = field(default=None, repr=False)
    _actions: ActionStore | None = field(default=None, repr=False)
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    @property
    def name(self) -> str:
        """``2/2``: how the banner names the shard."""
        return f"{self.shard.index}/{self.shard.count}"

    def read_alerts(self, read: Callable[[AlertStateStore], T]) -> T:
        """Run ``read`` on the shard's alert state; ShardUnavailable when the file cannot be read."""
        with self._lock:
            if self._alerts is None:
                self._alerts = self._open(AlertStateStore)
            return self._run(self._alerts, read)

    def use_actions(self, use: Callable[[ActionStore], T]) -> T:
        """Run ``use`` on the shard's action store; ShardUnavailable when the file cannot be used."""
        with self._lock:
            if self._actions is None:
                self._actions = self._open(lambda path: ActionStore(path, clock=self.clock))
            return self._run(self._actions, use)

    def close(self) -> None:
        """Close both connections."""
        with self._lock:
            for store in (self._alerts, self._actions):
                if store is not None:
                    store.close()
            self._alerts = self._actions = None

    def _open(self, make: Callable[[Path], T]) -> T:
        if not self.path.is_file():
            raise ShardUnavailable(f"shard {self.name}: {self.path} does not exist (has the shard ever run?)")
        try:
            return make(self.path)
        except (sqlite3.Error, OSError) as exc:
            raise ShardUnavailable(f"shard {self.name}: cannot open {self.path}: {exc}") from exc

    def _run(self, store: T, use: Callable[[T], object]):
        try:
            return use(store)
        except (sqlite3.Error, OSError) as exc:
            self.close()  # reopened on the next call: the file may have been replaced or repaired
            raise ShardUnavailable(f"shard {self.name}: cannot read {self.path}: {exc}") from exc


class ShardSet:
    """Every shard file of one site, and which of them could not be read on the last attempt.

    Example: ``ShardSet.open(shard_files(Path("var/facwatch.db"), None, 2))`` then hand it to
    ``ShardedAlertState`` and ``ShardedActions``.
    """

    def __init__(self, files: Iterable[ShardFile]):
        self.files = sorted(files, key=lambda f: f.shard.index)
        if not self.files:
            raise ValueError("a sharded site needs at least one shard file")
        self.count = self.files[0].shard.count
        self._failed: dict[str, str] = {}
        self._lock = threading.Lock()

    @classmethod
    def open(cls, paths: Mapping[Shard, Path], clock: Callable[[], float] = time.time) -> ShardSet:
        """A set over ``{shard: path}`` (nothing is opened until first use)."""
        return cls(ShardFile(shard, path, clock) for shard, path in paths.items())

    def unavailable_shards(self) -> tuple[str, ...]:
        """``("2/2",)``: the shards whose file failed on its last use."""
        with self._lock:
            return tuple(sorted(self._failed, key=lambda name: int(name.split("/")[0])))

    def each(self, use: Callable[[ShardFile], T]) -> list[tuple[ShardFile, T]]:
        """Run ``use`` on every readable shard; raise ShardUnavailable only when none could be read."""
        results, errors = [], []
        for file in self.files:
            try:
                results.append((file, use(file)))
            except ShardUnavailable as exc:
                errors.append(str(exc))
                self._mark(file, str(exc))
            else:
                self._mark(file, None)
        if errors and not results:
            raise ShardUnavailable("; ".join(errors))
        return results

    def one(self, file: ShardFile, use: Callable[[ShardFile], T]) -> T:
        """Run ``use`` on one shard, recording whether it answered."""
        try:
            value = use(file)
        except ShardUnavailable as exc:
            self._mark(file, str(exc))
            raise
        self._mark(file, None)
        return value

    def shard(self, index: int) -> ShardFile:
        """The file of shard ``index`` (1-based)."""
        return self.files[index - 1]

    def close(self) -> None:
        """Close every shard's connections."""
        for file in self.files:
            file.close()

    def _mark(self, file: ShardFile, error: str | None) -> None:
        with self._lock:
            was = file.name in self._failed
            if error is None:
                self._failed.pop(file.name, None)
                if was:
                    log.warning("shard %s is readable again (%s)", file.name, file.path)
            else:
                self._failed[file.name] = error
                if not was:
                    log.error("%s; its alerts and heartbeats are shown as unavailable", error)


# --- the read side the dashboard uses -----------------------------------------------------------------

class ShardedAlertState:
    """``AlertStateStore``'s read calls over every shard: load, get, transitions, recent_transitions."""

    def __init__(self, shards: ShardSet):
        self.shards = shards

    def load(self) -> dict[str, Alert]:
        """Every shard's stored alerts by fingerprint (a fingerprint held by several: the newest state)."""
        return {fp: alert for fp, (alert, _) in self.located().items()}

    def located(self) -> dict[str, tuple[Alert, ShardFile]]:
        """``load()`` with the shard each alert was read from (``facwatch alerts list`` names it)."""
        merged: dict[str, tuple[Alert, ShardFile]] = {}
        for file, alerts in self.shards.each(lambda f: f.read_alerts(lambda s: s.load())):
            for fp, alert in alerts.items():
                if fp not in merged or (alert.updated_at or 0.0) > (merged[fp][0].updated_at or 0.0):
                    merged[fp] = (alert, file)
        return merged

    def get(self, fingerprint: str) -> Alert | None:
        """One alert from whichever shard holds it, or None."""
        found = [a for _, a in self.shards.each(lambda f: f.read_alerts(lambda s: s.get(fingerprint))) if a]
        return max(found, key=lambda a: a.updated_at or 0.0, default=None)

    def holders(self, fingerprint: str) -> list[ShardFile]:
        """The shards that store an alert with this fingerprint."""
        return [f for f, a in self.shards.each(lambda f: f.read_alerts(lambda s: s.get(fingerprint))) if a]

    def transitions(self, fingerprint: str | None = None) -> list[tuple[str | None, str, float | None]]:
        """(from, to, at) of the logged transitions of every shard, oldest first."""
        rows = [row for _, part in self.shards.each(lambda f: f.read_alerts(lambda s: s.transitions(fingerprint)))
                for row in part]
        return sorted(rows, key=lambda row: row[2] or 0.0)

    def recent_transitions(self, limit: int) -> list[tuple]:
        """The newest ``limit`` transitions of all shards, newest first, as the alerts page lists them."""
        def newest(store: AlertStateStore) -> list[tuple]:
            return store.conn.execute(
                "SELECT rule, labels, from_state, to_state, severity, at, scenario FROM alert_transition "
                "ORDER BY id DESC LIMIT ?", (limit,)).fetchall()

        rows = [row for _, part in self.shards.each(lambda f: f.read_alerts(newest)) for row in part]
        return sorted(rows, key=lambda row: row[5] or 0.0, reverse=True)[:limit]

    def unavailable_shards(self) -> tuple[str, ...]:
        """The shards whose file could not be read last time."""
        return self.shards.unavailable_shards()

    def close(self) -> None:
        """Close every shard's connections."""
        self.shards.close()


class ShardedActions:
    """``ActionStore``'s dashboard calls over every shard: requests routed or fanned out, reads merged.

    Example: ``ShardedActions(shards, state).request_ack(fp, "j.smith", "on it")`` queues the ack in the
    file of the shard that holds the alert; that shard's alerting loop applies it.
    """

    def __init__(self, shards: ShardSet, alerts: ShardedAlertState):
        self.shards, self.alerts = shards, alerts
        self._listed: dict[int, tuple[str, int] | None] = {}  # shown id → (group, shard); None: ambiguous
        self._listed_lock = threading.Lock()
        self._sent = threading.local()  # per thread: the dashboard serves several requests at once

    def last_sent(self) -> tuple[tuple[ShardFile, int], ...]:
        """(shard, command id in its file) of every command this thread's last request queued."""
        return getattr(self._sent, "commands", ())

    # -- requests ------------------------------------------------------------------------------------------

    def request_ack(self, fingerprint: str, author: str, note: str = "", source: str = "cli") -> int:
        """Queue the ack in the shard that holds the alert (polls its device); ValueError when none does."""
        self._sent.commands = ()
        target = self._owner(fingerprint)
        command_id = self.shards.one(target, lambda f: f.use_actions(
            lambda a: a.request_ack(fingerprint, author, note, source=source)))
        self._sent.commands = ((target, command_id),)
        return command_id

    def request_silence(self, matchers: Mapping[str, str], ends_at: float, reason: str, author: str, *,
                        kind: SilenceKind = "silence", starts_at: float | None = None,
                        severities: tuple[str, ...] | None = None, source: str = "cli") -> int:
        """Queue the silence in EVERY shard under one group id; refused unless every shard can take it."""
        self._sent.commands = ()
        self._require_every_shard("the silence")
        group = uuid.uuid4().hex
        ids = self._fan_out("the silence", lambda a: _grouped_silence(
            a, group, matchers, ends_at, reason, author, kind, starts_at, severities, source))
        return ids[0]

    def request_expire(self, silence_id: int, author: str, source: str = "cli") -> int:
        """Expire the silence listed as ``silence_id`` in every shard that holds it."""
        self._sent.commands = ()
        silence_id = int(silence_id)
        if silence_id >= LOCAL_SILENCE_BASE:
            index, local = divmod(silence_id, LOCAL_SILENCE_BASE)
            if not 1 <= index <= self.shards.count:
                raise ValueError(f"unknown silence #{silence_id}")
            target = self.shards.shard(index)
            command_id = self.shards.one(target, lambda f: f.use_actions(
                lambda a: a.request_expire(local, author, source)))
            self._sent.commands = ((target, command_id),)
            return command_id
        group = self._group(silence_id)
        ids = self._fan_out("the expiry", lambda a: _grouped_expire(a, group, author, source))
        present = [i for i in ids if i is not None]
        if not present:
            raise ValueError(f"silence #{silence_id} is in no shard any more")
        return present[0]

    # -- reads ---------------------------------------------------------------------------------------------

    def heartbeats(self) -> dict[str, Heartbeat]:
        """Every shard's heartbeats, named ``collector@2-of-2``."""
        return {f"{name}@{file.shard.label}": replace(beat, component=f"{name}@{file.shard.label}")
                for file, beats in self.shards.each(lambda f: f.use_actions(lambda a: a.heartbeats()))
                for name, beat in beats.items()}

    def silences(self, include_ended: bool = False, now: float | None = None) -> list[SilenceRecord]:
        """Every shard's silences, newest first: a fanned-out one once, numbered as the lowest shard numbers it.

        A silence made on one shard's file alone (the CLI pointed at it) is shown as shard × 1 000 000 + its
        own number (``#2000005``: shard 2's #5), so it can never be taken for another shard's.
        """
        parts = self.shards.each(lambda f: f.use_actions(lambda a: (a.silences(include_ended, now), _groups(a))))
        listed: dict[int, tuple[str, int] | None] = {}
        seen: set[str] = set()
        merged = []
        for file, (records, groups) in parts:
            for record in records:
                group = groups.get(record.id)
                if group is None:
                    merged.append(replace(record, id=file.shard.index * LOCAL_SILENCE_BASE + record.id))
                    continue
                if group in seen:
                    continue  # the same silence, fanned out to a higher shard
                seen.add(group)
                # two fanned-out silences under one number (a shard missed one): both listed, neither
                # expired from here rather than a guess
                listed[record.id] = None if record.id in listed else (group, file.shard.index)
                merged.append(record)
        with self._listed_lock:
            self._listed.update(listed)
        return sorted(merged, key=lambda r: r.created_at, reverse=True)

    def history(self, limit: int = 200) -> list[Command]:
        """Every shard's latest commands, newest first; a fanned-out silence or expiry once."""
        seen: set[str] = set()
        merged = []
        commands = [c for _, part in self.shards.each(lambda f: f.use_actions(lambda a: a.history(limit)))
                    for c in part]
        for command in sorted(commands, key=lambda c: c.requested_at, reverse=True):
            group = command.payload.get("group")
            if isinstance(group, str):
                key = f"{command.kind}:{group}"
                if key in seen:
                    continue
                seen.add(key)
            merged.append(command)
        return merged[:limit]

    def unavailable_shards(self) -> tuple[str, ...]:
        """The shards whose file could not be read last time."""
        return self.shards.unavailable_shards()

    def close(self) -> None:
        """Close every shard's connections."""
        self.shards.close()

    # -- helpers -------------------------------------------------------------------------------------------

    def _owner(self, fingerprint: str) -> ShardFile:
        """The shard whose engine holds the alert (its device's shard; rule groups may move devices)."""
        holders = self.alerts.holders(fingerprint)
        if not holders:
            raise ValueError(f"no shard holds an alert with fingerprint {fingerprint}")
        active = [f for f in holders if f.read_alerts(lambda s: s.get(fingerprint)).state in _ACTIVE]
        return (active or holders)[0]

    def _require_every_shard(self, what: str) -> None:
        for file in self.shards.files:
            try:
                self.shards.one(file, lambda f: f.use_actions(lambda a: a.heartbeats()))
            except ShardUnavailable as exc:
                raise ValueError(f"{what} cannot reach every shard, nothing was sent ({exc})") from exc

    def _fan_out(self, what: str, use: Callable[[ActionStore], T]) -> list[T]:
        done, failed = [], []
        for file in self.shards.files:
            try:
                done.append((file, self.shards.one(file, lambda f: f.use_actions(use))))
            except ShardUnavailable as exc:
                failed.append(f"{file.name}: {exc}")
        self._sent.commands = tuple((file, value) for file, value in done if isinstance(value, int))
        if failed:
            sent = len(self.shards.files) - len(failed)
            raise ValueError(f"{what} reached {sent} of {len(self.shards.files)} shards; not: {'; '.join(failed)}")
        return [value for _, value in done]

    def _group(self, silence_id: int) -> str:
        """The group of the fanned-out silence the dashboard listed as ``silence_id``."""
        with self._listed_lock:
            listed = silence_id in self._listed
        if not listed:
            self.silences(include_ended=True)
        with self._listed_lock:
            if silence_id not in self._listed:
                raise ValueError(f"unknown silence #{silence_id}")
            known = self._listed[silence_id]
        if known is None:
            raise ValueError(f"silence #{silence_id} is ambiguous (the shards number different silences so); "
                             "expire it with the CLI on each shard's file")
        return known[0]


def shard_set_of(source: object) -> ShardSet | None:
    """The shard files behind a dashboard source (ShardedAlertState/ShardedActions); None for one file's store."""
    shards = getattr(source, "shards", None)
    return shards if isinstance(shards, ShardSet) else None


def _groups(actions: ActionStore) -> dict[int, str]:
    """Silence id → the group id its command carried (silences requested through ShardedActions)."""
    rows = actions.conn.execute("SELECT s.id, c.payload FROM silence s JOIN operator_command c "
                                "ON c.id = s.command_id").fetchall()
    groups = {}
    for silence_id, payload in rows:
        group = json.loads(payload).get("group")
        if isinstance(group, str):
            groups[int(silence_id)] = group
    return groups


def _grouped_silence(actions: ActionStore, group: str, matchers: Mapping[str, str], ends_at: float, reason: str,
                     author: str, kind: SilenceKind, starts_at: float | None, severities: tuple[str, ...] | None,
                     source: str) -> int:
    command_id = actions.request_silence(matchers, ends_at, reason, author, kind=kind, starts_at=starts_at,
                                         severities=severities, source=source)
    _tag(actions, command_id, group)
    return command_id


def _grouped_expire(actions: ActionStore, group: str, author: str, source: str) -> int | None:
    local = next((sid for sid, g in _groups(actions).items() if g == group), None)
    if local is None:
        return None  # this shard never got the silence
    command_id = actions.request_expire(local, author, source)
    _tag(actions, command_id, group)
    return command_id


def _tag(actions: ActionStore, command_id: int, group: str) -> None:
    """Add the group id to a just-queued command's payload (the applier ignores keys it does not know)."""
    actions.conn.execute("UPDATE operator_command SET payload = json_set(payload, '$.group', ?) WHERE id = ?",
                         (group, command_id))

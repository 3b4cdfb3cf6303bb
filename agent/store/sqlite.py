"""SQLite store: the embedded default. WAL mode, so the CLI, the API and workers can share it."""

from __future__ import annotations

import fcntl
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import orjson

from agent.errors import ConfigError, Transient
from agent.models import (
    ActionProposal,
    Alert,
    AuditEvent,
    DeadLetter,
    Disposition,
    Incident,
    IncidentStatus,
    ProposalState,
    Reopening,
    Tuning,
)
from agent.store import (
    WINDOW_HISTORY_SECONDS,
    RuleHistory,
    RunHistory,
    disposed,
    entity_lookups,
    entity_values,
    reopened,
    run_records,
    watched_from,
)
from agent.store.audit import chain_hash, first_broken

_SCHEMA = """
CREATE TABLE IF NOT EXISTS incidents (
  incident_id TEXT PRIMARY KEY, priority REAL NOT NULL, last_seen TEXT NOT NULL, doc BLOB NOT NULL,
  status TEXT NOT NULL DEFAULT 'open');
CREATE INDEX IF NOT EXISTS incidents_open ON incidents(status, last_seen);
CREATE INDEX IF NOT EXISTS incidents_priority ON incidents(priority DESC);
-- A list of one status, highest first: a walk of this index, not a sort of that status.
CREATE INDEX IF NOT EXISTS incidents_status_priority
  ON incidents(status, priority DESC, incident_id);
-- What each incident can be found by: its hosts, users and addresses (`entity_values`).
CREATE TABLE IF NOT EXISTS incident_entities (
  value TEXT NOT NULL, incident_id TEXT NOT NULL, PRIMARY KEY (value, incident_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS alerts (
  alert_id TEXT PRIMARY KEY, incident_id TEXT NOT NULL, doc BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS alerts_incident ON alerts(incident_id);
CREATE TABLE IF NOT EXISTS proposals (
  proposal_id TEXT PRIMARY KEY, incident_id TEXT NOT NULL, state TEXT NOT NULL,
  version INTEGER NOT NULL, doc BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS proposals_state ON proposals(state);
CREATE TABLE IF NOT EXISTS audit (
  seq INTEGER PRIMARY KEY, at TEXT NOT NULL, actor TEXT NOT NULL, kind TEXT NOT NULL,
  subject TEXT NOT NULL, data BLOB NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS audit_subject ON audit(subject);
CREATE TABLE IF NOT EXISTS alert_index (
  alert_id TEXT PRIMARY KEY, incident_id TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS checkpoints (name TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS sessions (
  key TEXT PRIMARY KEY, data BLOB NOT NULL, expires REAL NOT NULL);
CREATE TABLE IF NOT EXISTS rule_days (
  day TEXT NOT NULL, rule_id TEXT NOT NULL, n INTEGER NOT NULL, PRIMARY KEY (day, rule_id));
CREATE TABLE IF NOT EXISTS rule_hosts (
  rule_id TEXT NOT NULL, host TEXT NOT NULL, last_day TEXT NOT NULL, PRIMARY KEY (rule_id, host));
CREATE TABLE IF NOT EXISTS rule_first_seen (day TEXT PRIMARY KEY, first REAL NOT NULL);
CREATE TABLE IF NOT EXISTS rule_windows (
  start INTEGER NOT NULL, rule_id TEXT NOT NULL, host TEXT NOT NULL, n INTEGER NOT NULL DEFAULT 1,
  PRIMARY KEY (start, rule_id, host)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS intake (
  batch_id TEXT PRIMARY KEY, source TEXT NOT NULL, at REAL NOT NULL, status TEXT NOT NULL,
  claimed_at REAL, docs BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS intake_status ON intake(status, at);
CREATE TABLE IF NOT EXISTS seen_keys (key TEXT PRIMARY KEY, expires REAL NOT NULL);
CREATE INDEX IF NOT EXISTS seen_keys_expires ON seen_keys(expires);
CREATE TABLE IF NOT EXISTS tunings (
  rule_id TEXT NOT NULL, host TEXT NOT NULL, expires REAL NOT NULL, doc BLOB NOT NULL,
  PRIMARY KEY (rule_id, host));
CREATE TABLE IF NOT EXISTS dead_letters (
  id INTEGER PRIMARY KEY, source TEXT NOT NULL, line INTEGER, reason TEXT NOT NULL,
  excerpt TEXT NOT NULL, at TEXT NOT NULL);
"""


# SQLite's codes for "try again later": a full disk, a busy database, an I/O error.
_TRANSIENT = ("disk is full", "database is locked", "disk I/O error", "unable to open")


def _translate(exc: sqlite3.OperationalError) -> Exception:
    if any(t in str(exc) for t in _TRANSIENT):
        return Transient(f"store unavailable: {exc}")
    return exc


def _dump(model: Any) -> bytes:
    return orjson.dumps(model.model_dump(mode="json"))


# A run that extends an incident a person closed meanwhile: its alerts join the incident, which
# stays closed with the person's disposition (read in the same transaction as the write).
_DISPOSED = "json_extract(CAST(incidents.doc AS TEXT), '$.disposition')"
_KEEP_DISPOSITION = (
    f"CASE WHEN {_DISPOSED} IS NULL THEN excluded.doc ELSE CAST(json_set(CAST(excluded.doc AS "
    f"TEXT), '$.status', 'closed', '$.disposition', json({_DISPOSED})) AS BLOB) END"
)
_KEEP_CLOSED = f"CASE WHEN {_DISPOSED} IS NULL THEN excluded.status ELSE 'closed' END"


def _migrate(db: sqlite3.Connection, earlier: set[str]) -> None:
    """Bring a store made by an earlier version (whose tables were `earlier`) up to this
    schema: windows before counts were kept count one alert per rule-host pair; incidents
    stored before the entity index are indexed once."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(rule_windows)")}
    if "n" not in columns:
        db.execute("ALTER TABLE rule_windows ADD COLUMN n INTEGER NOT NULL DEFAULT 1")
    if "incidents" in earlier and "incident_entities" not in earlier:
        docs = db.execute("SELECT doc FROM incidents").fetchall()
        _index_entities(db, (Incident.model_validate_json(r[0]) for r in docs))


def _index_entities(db: sqlite3.Connection, incidents: Iterable[Incident]) -> None:
    """Record what each incident can be found by; an incident only ever gains entities."""
    db.executemany(
        "INSERT OR IGNORE INTO incident_entities VALUES (?,?)",
        [(v, inc.incident_id) for inc in incidents for v in entity_values(inc)],
    )


#: How long a triage run waits for another on the same file (`SqliteStore.one_run_at_a_time`).
RUN_LOCK_WAIT_SECONDS = 600.0


class SqliteStore:
    def __init__(self, path: str | Path) -> None:
        p = Path(path)
        self._run_lock: Path | None = None
        try:
            if str(p) != ":memory:":
                p.parent.mkdir(parents=True, exist_ok=True)
                self._run_lock = p.with_name(f"{p.name}.run-lock")
            self._db = sqlite3.connect(
                str(p), timeout=30, isolation_level=None, check_same_thread=False
            )
            self._db.execute("PRAGMA journal_mode=WAL")
        except (OSError, sqlite3.Error) as exc:  # a path that cannot hold a database
            raise ConfigError(f"cannot open the SQLite store at {p}: {exc}") from exc
        self._lock = threading.RLock()
        self._db.execute("PRAGMA synchronous=NORMAL")
        earlier = {r[0] for r in self._db.execute("SELECT name FROM sqlite_master")}
        self._db.executescript(_SCHEMA)
        _migrate(self._db, earlier)

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; BEGIN IMMEDIATE serialises writers across processes."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield self._db
                    self._db.execute("COMMIT")
                except BaseException:
                    if self._db.in_transaction:  # SQLite may have rolled back already
                        self._db.execute("ROLLBACK")
                    raise
            except sqlite3.OperationalError as exc:
                raise _translate(exc) from exc

    def _one(self, sql: str, args: Any = ()) -> Any:
        """A read's first row, taken while no write transaction is open (see `_all`)."""
        with self._lock:
            return self._db.execute(sql, args).fetchone()

    def _all(self, sql: str, args: Any = ()) -> list[Any]:
        """A read's rows, taken while no write transaction is open: the store's one connection
        is shared by its threads (the API's, the embedded triage's), and a read between a
        transaction's statements saw them uncommitted: an incident before its proposals."""
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    # --- triage results -----------------------------------------------------------------------

    @contextmanager
    def one_run_at_a_time(self) -> Iterator[None]:
        """Held by a triage run from reading the open incidents it may extend to storing them.
        Two processes on one file (a scheduled `vigie triage` and an analyst's, or the embedded
        server's intake) each wrote back an incident the other had extended, and the first
        one's alerts left it. A lock on a file beside the store's: the kernel releases it if
        the process dies. Waits up to RUN_LOCK_WAIT_SECONDS, then raises `Transient`."""
        if self._run_lock is None:  # in memory: no other process can open it
            yield
            return
        try:
            fh = self._run_lock.open("a+b")
        except OSError as exc:  # a full or read-only disk: the run cannot store its results
            raise Transient(f"cannot open {self._run_lock}: {exc.strerror or exc}") from exc
        with fh:
            deadline = time.monotonic() + RUN_LOCK_WAIT_SECONDS
            while True:
                try:
                    fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise Transient(
                            f"another triage run has held {self._run_lock} for "
                            f"{RUN_LOCK_WAIT_SECONDS:g} s"
                        ) from None
                    time.sleep(0.05)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def save_triage(
        self,
        incidents: Sequence[Incident],
        alerts: Sequence[Alert],
        proposals: Sequence[ActionProposal],
        dead_letters: Sequence[DeadLetter],
        actor: str,
        placed: Mapping[str, str] | None = None,
        history: RunHistory | None = None,
    ) -> None:
        owner = (  # read only: a day's placements are not worth copying
            placed
            if placed is not None
            else {aid: inc.incident_id for inc in incidents for aid in inc.alert_ids}
        )
        now = datetime.now(UTC).isoformat()
        with self._tx() as db:
            db.executemany(
                "INSERT INTO incidents VALUES (?,?,?,?,?) ON CONFLICT(incident_id) DO UPDATE SET "
                "priority=excluded.priority, last_seen=excluded.last_seen, "
                f"doc={_KEEP_DISPOSITION}, status={_KEEP_CLOSED}",
                [
                    (i.incident_id, i.priority, i.last_seen.isoformat(), _dump(i), i.status)
                    for i in incidents
                ],
            )
            _index_entities(db, incidents)
            # One JSON object, its keys in order: SQLite reads it in C and appends to its index
            # instead of splitting pages all over it (634,000 placements: 3.7 s one row at a
            # time in placement order, 2.2 s sorted, 1.0 to 1.1 s with SQLite sorting the JSON
            # object's keys, 0.8 s with orjson sorting them; json_each reads them in the order
            # they are written, UTF-8 byte order, which is SQLite's for text keys).
            db.execute(
                "INSERT OR REPLACE INTO alert_index SELECT key, value FROM json_each(?)",
                (
                    orjson.dumps(
                        owner if isinstance(owner, dict) else dict(owner),
                        option=orjson.OPT_SORT_KEYS,
                    ),
                ),
            )
            if history is not None:
                _add_rule_history(db, history)
            db.executemany(  # one alert's JSON at a time: every alert of a run may be a sample
                "INSERT OR REPLACE INTO alerts VALUES (?,?,?)",
                ((a.id, owner.get(a.id, ""), _dump(a)) for a in alerts),
            )
            new = []
            for p in proposals:
                cur = db.execute(
                    "INSERT OR IGNORE INTO proposals VALUES (?,?,?,?,?)",
                    (p.proposal_id, p.incident_id, p.state.value, p.version, _dump(p)),
                )
                if cur.rowcount:
                    new.append(p)
            db.executemany(
                "INSERT INTO dead_letters (source, line, reason, excerpt, at) VALUES (?,?,?,?,?)",
                [(d.source, d.line, d.reason, d.excerpt, now) for d in dead_letters],
            )
            for record in run_records(actor, new, incidents, dead_letters):
                self._append(db, *record)

    def get_incident(self, incident_id: str) -> Incident | None:
        row = self._one("SELECT doc FROM incidents WHERE incident_id=?", (incident_id,))
        return Incident.model_validate_json(row[0]) if row else None

    def list_incidents(
        self,
        *,
        limit: int = 100,
        offset: int = 0,
        status: IncidentStatus | None = None,
        min_priority: float = 0.0,
        involving: str | None = None,
    ) -> list[Incident]:
        where, args = _incident_filter(status, min_priority, involving)
        rows = self._all(
            f"SELECT doc FROM incidents {where} ORDER BY priority DESC, incident_id "
            "LIMIT ? OFFSET ?",
            (*args, limit, offset),
        )
        return [Incident.model_validate_json(r[0]) for r in rows]

    def incident_of_alerts(self, alert_ids: Sequence[str]) -> dict[str, str]:
        # One JSON array, walked by SQLite in C: a file's 634,000 ids in 0.15 s on an empty
        # index, against 0.4 s as batches of 500 bound parameters.
        rows = self._all(
            "SELECT a.alert_id, a.incident_id FROM json_each(?) AS j "
            "JOIN alert_index AS a ON a.alert_id = j.value",
            (orjson.dumps(list(alert_ids)),),
        )
        return dict(rows)

    def open_incidents(self, since: datetime) -> list[Incident]:
        rows = self._all(
            "SELECT json_set(CAST(doc AS TEXT), '$.alert_ids', json('[]')) FROM incidents "
            "WHERE status='open' AND last_seen >= ?",
            (since.isoformat(),),
        )
        return [Incident.model_validate_json(r[0]) for r in rows]

    def close_quiet(self, before: datetime) -> int:
        """The status is set in the stored JSON by SQLite (the same bytes orjson would write),
        not by parsing and dumping every incident: a day's file closes most of its 2,000
        incidents at once (0.57 s in Python, 0.18 s in SQL)."""
        with self._tx() as db:
            cur = db.execute(
                "UPDATE incidents SET status='closed', "
                "doc=CAST(json_set(CAST(doc AS TEXT), '$.status', 'closed') AS BLOB) "
                "WHERE status='open' AND last_seen < ? "
                "AND json_extract(CAST(doc AS TEXT), '$.reopened') IS NULL",
                (before.isoformat(),),
            )
        return cur.rowcount

    def dispose(self, incident_id: str, disposition: Disposition) -> bool:
        """Only the status and the disposition are written into the stored incident: a run
        extending it meanwhile keeps its alerts."""
        d = disposition
        with self._tx() as db:
            cur = db.execute(
                "UPDATE incidents SET status='closed', doc=CAST(json_set(CAST(doc AS TEXT), "
                "'$.status', 'closed', '$.disposition', json(?)) AS BLOB) "
                "WHERE incident_id=? AND json_extract(CAST(doc AS TEXT), '$.disposition') IS NULL",
                (_dump(d), incident_id),
            )
            if not cur.rowcount:
                return False
            # Lapsed tunings go as new ones come: the table stays the size of the live set.
            db.execute("DELETE FROM tunings WHERE expires <= ?", (d.at.timestamp(),))
            db.executemany(
                "INSERT OR REPLACE INTO tunings VALUES (?,?,?,?)",
                [(t.rule_id, t.host, t.expires_at.timestamp(), _dump(t)) for t in d.tuned],
            )
            self._append(db, d.actor, "incident.disposed", incident_id, disposed(d))
        return True

    def reopen(self, incident_id: str, actor: str, reason: str, at: datetime) -> bool:
        with self._tx() as db:
            row = db.execute(
                "SELECT json_extract(CAST(doc AS TEXT), '$.disposition.verdict') FROM incidents "
                "WHERE incident_id=?",
                (incident_id,),
            ).fetchone()
            if row is None or row[0] is None:
                return False
            reopening = Reopening(actor=actor, reason=reason, at=at, was=row[0])
            db.execute(
                "UPDATE incidents SET status='open', doc=CAST(json_set(CAST(doc AS TEXT), "
                "'$.status', 'open', '$.disposition', json('null'), '$.reopened', json(?)) "
                "AS BLOB) WHERE incident_id=?",
                (_dump(reopening), incident_id),
            )
            self._append(db, actor, "incident.reopened", incident_id, reopened(reopening))
        return True

    def revoke_tuning(self, rule_id: str, host: str, actor: str, reason: str) -> bool:
        with self._tx() as db:
            cur = db.execute("DELETE FROM tunings WHERE rule_id=? AND host=?", (rule_id, host))
            if not cur.rowcount:
                return False
            self._append(
                db,
                actor,
                "tuning.revoked",
                f"{rule_id}@{host}",
                {"rule_id": rule_id, "host": host, "reason": reason},
            )
        return True

    def tunings(self, now: datetime) -> list[Tuning]:
        rows = self._all(
            "SELECT doc FROM tunings WHERE expires > ? ORDER BY rule_id, host", (now.timestamp(),)
        )
        return [Tuning.model_validate_json(r[0]) for r in rows]

    def save_intake(
        self,
        batch_id: str,
        source: str,
        docs: list[dict[str, Any]],
        dead_letters: Sequence[DeadLetter],
        replay_key: str | None = None,
        replay_ttl: float = 300.0,
    ) -> bool:
        now = time.time()
        with self._tx() as db:
            if replay_key is not None:
                db.execute("DELETE FROM seen_keys WHERE expires < ?", (now,))
                cur = db.execute(
                    "INSERT OR IGNORE INTO seen_keys VALUES (?,?)", (replay_key, now + replay_ttl)
                )
                if cur.rowcount != 1:
                    return False  # nothing written: the transaction commits no change
            db.execute(
                "INSERT OR IGNORE INTO intake VALUES (?,?,?,?,?,?)",
                (batch_id, source, now, "pending", None, orjson.dumps(docs)),
            )
            db.executemany(
                "INSERT INTO dead_letters (source, line, reason, excerpt, at) VALUES (?,?,?,?,?)",
                [
                    (d.source, d.line, d.reason, d.excerpt, datetime.now(UTC).isoformat())
                    for d in dead_letters
                ],
            )
        return True

    def claim_intake(
        self, limit: int = 100, stale_after: float = 600.0
    ) -> list[tuple[str, list[dict[str, Any]]]]:
        now = time.time()
        with self._tx() as db:
            rows = db.execute(
                "SELECT batch_id, docs FROM intake WHERE status='pending' "
                "OR (status='processing' AND claimed_at < ?) ORDER BY at LIMIT ?",
                (now - stale_after, limit),
            ).fetchall()
            db.executemany(
                "UPDATE intake SET status='processing', claimed_at=? WHERE batch_id=?",
                [(now, r[0]) for r in rows],
            )
        return [(r[0], orjson.loads(r[1])) for r in rows]

    def finish_intake(self, batch_ids: Sequence[str]) -> None:
        with self._tx() as db:
            db.executemany("DELETE FROM intake WHERE batch_id=?", [(b,) for b in batch_ids])

    def rule_history(self, since: date, windows_from: int | None = None) -> RuleHistory:
        day = since.isoformat()
        counts = self._all(
            "SELECT rule_id, SUM(n) FROM rule_days WHERE day >= ? GROUP BY rule_id", (day,)
        )
        pairs = self._all("SELECT rule_id, host FROM rule_hosts WHERE last_day >= ?", (day,))
        (first_day,) = self._one("SELECT MIN(day) FROM rule_days WHERE day >= ?", (day,))
        first = self._one("SELECT first FROM rule_first_seen WHERE day = ?", (first_day,))
        windows: dict[int, dict[tuple[str, str], int]] = {}
        if windows_from is not None:
            for start, rule, host, n in self._all(
                "SELECT start, rule_id, host, n FROM rule_windows WHERE start >= ?",
                (windows_from,),
            ):
                windows.setdefault(start, {})[rule, host] = n
        return RuleHistory(
            dict(counts),
            {(r, h) for r, h in pairs},
            windows,
            watched_from(first_day, first[0] if first else None),
        )

    def get_checkpoint(self, name: str) -> Any:
        row = self._one("SELECT value FROM checkpoints WHERE name=?", (name,))
        return orjson.loads(row[0]) if row else None

    def set_checkpoint(self, name: str, value: Any) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO checkpoints VALUES (?,?)", (name, orjson.dumps(value))
            )

    def save_session(self, key: str, data: dict[str, Any], expires: datetime) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM sessions WHERE expires < ?", (time.time(),))  # logins end
            db.execute(
                "INSERT OR REPLACE INTO sessions VALUES (?,?,?)",
                (key, orjson.dumps(data), expires.timestamp()),
            )

    def get_session(self, key: str, now: datetime) -> dict[str, Any] | None:
        row = self._one(
            "SELECT data FROM sessions WHERE key=? AND expires > ?", (key, now.timestamp())
        )
        return orjson.loads(row[0]) if row else None

    def drop_session(self, key: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM sessions WHERE key=?", (key,))

    def count_incidents(
        self,
        *,
        status: IncidentStatus | None = None,
        min_priority: float = 0.0,
        involving: str | None = None,
    ) -> int:
        where, args = _incident_filter(status, min_priority, involving)
        return int(self._one(f"SELECT COUNT(*) FROM incidents {where}", args)[0])

    def alerts_of(self, incident_id: str) -> list[Alert]:
        rows = self._all("SELECT doc FROM alerts WHERE incident_id=?", (incident_id,))
        return sorted((Alert.model_validate_json(r[0]) for r in rows), key=lambda a: a.timestamp)

    def dead_letters(self) -> list[DeadLetter]:
        rows = self._all("SELECT source, line, reason, excerpt FROM dead_letters ORDER BY id")
        return [DeadLetter(source=s, line=n, reason=r, excerpt=e) for s, n, r, e in rows]

    def recent_dead_letters(self, limit: int, offset: int = 0) -> tuple[int, list[DeadLetter]]:
        (total,) = self._one("SELECT COUNT(*) FROM dead_letters")
        rows = self._all(
            "SELECT source, line, reason, excerpt, at FROM dead_letters ORDER BY id DESC "
            "LIMIT ? OFFSET ?",
            (limit, offset),
        )
        page = [
            DeadLetter(source=s, line=n, reason=r, excerpt=e, at=datetime.fromisoformat(at))
            for s, n, r, e, at in rows
        ]
        return total, page

    # --- proposals ----------------------------------------------------------------------------

    def get_proposal(self, proposal_id: str) -> ActionProposal | None:
        row = self._one("SELECT doc FROM proposals WHERE proposal_id=?", (proposal_id,))
        return ActionProposal.model_validate_json(row[0]) if row else None

    def list_proposals(
        self, *, states: Sequence[ProposalState] | None = None, incident_id: str | None = None
    ) -> list[ActionProposal]:
        sql, args = "SELECT doc FROM proposals WHERE 1=1", []
        if states:
            sql += f" AND state IN ({','.join('?' * len(states))})"
            args += [s.value for s in states]
        if incident_id:
            sql += " AND incident_id=?"
            args.append(incident_id)
        rows = self._all(sql + " ORDER BY proposal_id", args)
        return [ActionProposal.model_validate_json(r[0]) for r in rows]

    def transition(
        self,
        old: ActionProposal,
        new: ActionProposal,
        *,
        actor: str,
        data: dict[str, Any] | None = None,
        insert: ActionProposal | None = None,
    ) -> bool:
        with self._tx() as db:
            cur = db.execute(
                "UPDATE proposals SET state=?, version=?, doc=? WHERE proposal_id=? AND version=?",
                (new.state.value, new.version, _dump(new), old.proposal_id, old.version),
            )
            if cur.rowcount != 1:
                return False
            if insert is not None:
                db.execute(
                    "INSERT INTO proposals VALUES (?,?,?,?,?)",
                    (
                        insert.proposal_id,
                        insert.incident_id,
                        insert.state.value,
                        insert.version,
                        _dump(insert),
                    ),
                )
            self._append(
                db,
                actor,
                f"proposal.{new.state.value}",
                new.proposal_id,
                {"from": old.state.value, "version": new.version, **(data or {})},
            )
        return True

    # --- audit --------------------------------------------------------------------------------

    def _append(
        self, db: sqlite3.Connection, actor: str, kind: str, subject: str, data: dict[str, Any]
    ) -> AuditEvent:
        row = db.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        seq, prev = (row[0] + 1, row[1]) if row else (1, "")
        at = datetime.now(UTC)
        clean = orjson.loads(orjson.dumps(data, default=str))
        digest = chain_hash(prev, seq, at.isoformat(), actor, kind, subject, clean)
        db.execute(
            "INSERT INTO audit VALUES (?,?,?,?,?,?,?,?)",
            (seq, at.isoformat(), actor, kind, subject, orjson.dumps(clean), prev, digest),
        )
        return AuditEvent(
            seq=seq,
            at=at,
            actor=actor,
            kind=kind,
            subject=subject,
            data=clean,
            prev_hash=prev,
            hash=digest,
        )

    def append_audit(self, actor: str, kind: str, subject: str, data: dict[str, Any]) -> AuditEvent:
        with self._tx() as db:
            return self._append(db, actor, kind, subject, data)

    def audit(
        self, subject: str | None = None, *, after: int = 0, limit: int | None = None
    ) -> list[AuditEvent]:
        sql = "SELECT seq, at, actor, kind, subject, data, prev_hash, hash FROM audit WHERE seq > ?"
        params: tuple[Any, ...] = (after,)
        if subject:
            sql, params = sql + " AND subject=?", (after, subject)
        sql, params = sql + " ORDER BY seq LIMIT ?", (*params, -1 if limit is None else limit)
        rows = self._all(sql, params)
        return [
            AuditEvent(
                seq=s,
                at=datetime.fromisoformat(at),
                actor=ac,
                kind=k,
                subject=sub,
                data=orjson.loads(d),
                prev_hash=ph,
                hash=h,
            )
            for s, at, ac, k, sub, d, ph, h in rows
        ]

    def verify_audit(self) -> tuple[bool, int | None]:
        bad = first_broken(self.audit())
        return bad is None, bad

    def close(self) -> None:
        self._db.close()


def _add_rule_history(db: sqlite3.Connection, history: RunHistory) -> None:
    db.executemany(
        "INSERT INTO rule_days VALUES (?,?,?) "
        "ON CONFLICT(day, rule_id) DO UPDATE SET n = n + excluded.n",
        [(d.isoformat(), rule, n) for (d, rule), n in history.counts.items()],
    )
    db.executemany(
        "INSERT INTO rule_first_seen VALUES (?,?) "
        "ON CONFLICT(day) DO UPDATE SET first = MIN(first, excluded.first)",
        [(d.isoformat(), t) for d, t in history.first_seen.items()],
    )
    db.executemany(
        "INSERT INTO rule_hosts VALUES (?,?,?) ON CONFLICT(rule_id, host) "
        "DO UPDATE SET last_day = MAX(last_day, excluded.last_day)",
        [(rule, host, d.isoformat()) for (rule, host), d in history.pairs.items()],
    )
    if history.windows:
        db.executemany(
            "INSERT INTO rule_windows VALUES (?,?,?,?) "
            "ON CONFLICT(start, rule_id, host) DO UPDATE SET n = n + excluded.n",
            [
                (start, r, h, n)
                for start, pairs in history.windows.items()
                for (r, h), n in pairs.items()
            ],
        )
        newest = max(history.windows)
        db.execute("DELETE FROM rule_windows WHERE start < ?", (newest - WINDOW_HISTORY_SECONDS,))


def _incident_filter(
    status: IncidentStatus | None, min_priority: float, involving: str | None = None
) -> tuple[str, tuple[Any, ...]]:
    """The WHERE clause of an incident list (its values bound, never formatted in)."""
    where: list[str] = ["priority >= ?"]
    args: list[Any] = [min_priority]
    if status is not None:
        where.append("status = ?")
        args.append(status)
    if involving is not None:
        values = entity_lookups(involving)
        marks = ", ".join("?" * len(values))
        where.append(
            f"incident_id IN (SELECT incident_id FROM incident_entities WHERE value IN ({marks}))"
        )
        args.extend(values)
    return "WHERE " + " AND ".join(where), tuple(args)

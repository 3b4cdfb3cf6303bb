"""Redis store: production. Transitions are optimistic transactions (WATCH/MULTI/EXEC).

A transition watches the proposal and the audit chain's head, checks the expected version,
computes the audit event's hash in Python (Lua has no SHA-256), and commits proposal and audit
together. A concurrent writer makes EXEC fail: if the proposal itself moved, the CAS has lost;
if only the audit head moved, the transaction is retried.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from datetime import UTC, date, datetime
from typing import Any, TypeVar
from uuid import uuid4

import orjson
import redis
from redis.client import Pipeline

from agent.errors import Transient
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
    AuditRecord,
    RuleHistory,
    RunHistory,
    disposed,
    entity_lookups,
    entity_value,
    entity_values,
    reopened,
    run_records,
    watched_from,
)
from agent.store.audit import chain_hash, first_broken

T = TypeVar("T")
_HEAD = "vigie:audit:head"
_AUDIT = "vigie:audit"


def _k_proposal(pid: str) -> str:
    return f"vigie:proposal:{pid}"


# Replies meaning "not now": out of memory, a failed disk write (MISCONF), a read-only replica,
# or a transaction aborted by one of these.
_REFUSING = ("OOM", "MISCONF", "READONLY", "EXECABORT", "LOADING")
#: The same replies as redis-py raises them: it strips the codes it knows (OOM, READONLY,
#: EXECABORT) off the message and raises these instead; MISCONF keeps its code in the text.
_REFUSING_ERRORS = (
    redis.exceptions.OutOfMemoryError,
    redis.exceptions.ReadOnlyError,
    redis.exceptions.ExecAbortError,
)


def _refusing(exc: redis.ResponseError) -> bool:
    """Pipelines prefix the server's reply with "Command # n (...) caused error: "."""
    if isinstance(exc, _REFUSING_ERRORS):
        return True
    reply = str(exc).rpartition("caused error: ")[2]
    return reply.startswith(_REFUSING)


# One round trip, all or nothing (a script that writes is refused whole when Redis cannot
# write): the replay key (when signed), the batch, its place in the queue, its rejects.
_SAVE_INTAKE = """
if ARGV[1] == '1' and not redis.call('SET', KEYS[1], 1, 'NX', 'PX', ARGV[2]) then
  return 0
end
redis.call('HSET', KEYS[2], 'source', ARGV[3], 'docs', ARGV[4])
redis.call('RPUSH', KEYS[3], ARGV[5])
for i = 6, #ARGV do
  redis.call('RPUSH', KEYS[4], ARGV[i])
end
return 1
"""

RULE_HISTORY_DAYS = 35  # kept in Redis; a baseline reads the last week of it
_RULE_DAY = "vigie:rule-day:"
_RULE_DAYS = "vigie:rule-days"
_RULE_HOSTS = "vigie:rule-hosts"
_RULE_FIRST_SEEN = "vigie:rule-first-seen"  # day -> its earliest alert time
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
#: Per time window, a hash of rule-host pairs to their alert counts. (Earlier versions kept a
#: set under "vigie:rule-window:", which expires on its own within two days.)
_RULE_WINDOW = "vigie:rule-window-n:"
_RULE_WINDOWS = "vigie:rule-windows"  # the windows' starts, by start
_SEP = "\x1f"
_TUNINGS = "vigie:tunings"  # "rule<US>host" -> the latest tuning of that pair
_OPEN = "vigie:incidents:open"  # open incidents by their last alert's time
#: Closed incidents by priority, beside the priority set of all: a deep page of them is a range.
_CLOSED = "vigie:incidents:closed"
_CLOSED_INDEXED = "vigie:incidents:closed-indexed"  # set once incidents stored before are in it
_DISPOSITIONS = "vigie:dispositions"  # incident id -> its disposition, for runs saving it
# Set each field to the later of its current and given day (ISO dates compare as strings).
_LATEST_DAY = """
for i = 1, #ARGV, 2 do
  local cur = redis.call('HGET', KEYS[1], ARGV[i])
  if (not cur) or cur < ARGV[i + 1] then redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
end
return 1
"""


def _k_involving(value: str) -> str:
    """The ids of the incidents with this host, user or address (`entity_values`)."""
    return f"vigie:incidents:involving:{entity_value(value)}"


#: Set once every stored incident is in the entity index.
_ENTITIES_INDEXED = "vigie:incidents:involving-indexed"


def _index_entities(pipe: Pipeline, inc: Incident) -> None:
    """Record what the incident can be found by; an incident only ever gains entities."""
    for value in entity_values(inc):
        pipe.sadd(_k_involving(value), inc.incident_id)


def _file_by_status(pipe: Pipeline, inc: Incident) -> None:
    """Where the incident's status puts it, in every write that sets a status: the open set
    (by its last alert) with its head, which runs read to extend it, or the closed set (by
    priority), which pages of closed incidents read."""
    if inc.status == "open":
        pipe.zadd(_OPEN, {inc.incident_id: inc.last_seen.timestamp()})
        pipe.zrem(_CLOSED, inc.incident_id)
        pipe.set(_k_head(inc.incident_id), _dump(_head(inc)))
    else:
        pipe.zrem(_OPEN, inc.incident_id)
        pipe.zadd(_CLOSED, {inc.incident_id: inc.priority})
        pipe.delete(_k_head(inc.incident_id))


def _k_head(incident_id: str) -> str:
    """An open incident without its alert ids: what each run reads to find what it extends."""
    return f"vigie:incident-head:{incident_id}"


def _head(inc: Incident) -> Incident:
    return inc.model_copy(update={"alert_ids": []})


def _dump(model: Any) -> bytes:
    return orjson.dumps(model.model_dump(mode="json"))


def _disposed(pipe: Pipeline, incidents: Sequence[Incident]) -> list[Incident]:
    """The incidents as a run saves them, but those a person closed meanwhile: their alerts
    join the incident, which stays closed with the person's disposition."""
    if not incidents:
        return []
    found = pipe.hmget(_DISPOSITIONS, [i.incident_id for i in incidents])
    return [
        inc
        if raw is None
        else inc.model_copy(
            update={"status": "closed", "disposition": Disposition.model_validate_json(raw)}
        )
        for inc, raw in zip(incidents, found, strict=True)
    ]


def _pair(member: bytes) -> tuple[str, str]:
    rule, _, host = member.decode().partition(_SEP)
    return rule, host


#: The triage run lock (`RedisStore.one_run_at_a_time`), how long it holds without release,
#: and how long a run waits for it.
RUN_LOCK_KEY = "vigie:triage-lock"
RUN_LOCK_SECONDS = 600.0
RUN_LOCK_WAIT_SECONDS = 600.0


@contextmanager
def renewed(lock: Any, lifetime: float) -> Iterator[None]:
    """Renews a held lock (made with `thread_local=False`) every third of its `lifetime`
    while the block runs, then releases it: work longer than the lifetime (a model slow to
    answer, a sweep through a backlog) lost its lock, and a second run could do the same
    work meanwhile. A process that dies stops renewing, so the lock still expires."""
    done = threading.Event()

    def keep() -> None:
        while not done.wait(lifetime / 3):
            with suppress(redis.RedisError):  # a store away a moment: the next renewal may do
                lock.extend(lifetime, replace_ttl=True)

    keeper = threading.Thread(target=keep, daemon=True)
    keeper.start()
    try:
        yield
    finally:
        done.set()
        keeper.join(timeout=5)  # a renewal stuck on a store that hangs must not hold the run
        with suppress(redis.RedisError):  # expired meanwhile, or the store went away
            lock.release()


class RedisStore:
    def __init__(self, url: str) -> None:
        self._r = redis.Redis.from_url(url)
        self._save_intake = self._r.register_script(_SAVE_INTAKE)
        self._latest_day = self._r.register_script(_LATEST_DAY)

    def _guard(self, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise Transient(f"store unavailable: {exc}") from exc
        except redis.ResponseError as exc:
            if _refusing(exc):
                raise Transient(f"store refusing writes: {exc}") from exc
            raise

    @contextmanager
    def one_run_at_a_time(self) -> Iterator[None]:
        """Held by a triage run from reading the open incidents it may extend to storing them:
        two runs extending one incident at once (two workers, or an analyst's `vigie triage`
        beside them) each wrote it back, and the first one's alerts left it. A lock in the
        store's own database, which every process using the store reaches; it expires after
        RUN_LOCK_SECONDS, so a process that dies holding it blocks the others that long at
        most. Waiting RUN_LOCK_WAIT_SECONDS raises `Transient` (a worker's task is retried)."""
        lock = self._r.lock(
            RUN_LOCK_KEY,
            timeout=RUN_LOCK_SECONDS,
            blocking_timeout=RUN_LOCK_WAIT_SECONDS,
            thread_local=False,  # renewed from another thread (see `renewed`)
        )
        if not self._guard(lock.acquire):
            raise Transient(
                f"another triage run has held the store for {RUN_LOCK_WAIT_SECONDS:g} s"
            )
        with renewed(lock, RUN_LOCK_SECONDS):
            yield

    def _optimistic(self, body: Callable[[Pipeline], T], *watched: str) -> T:
        """An optimistic transaction: `body` reads under WATCH of `watched`, then either returns
        before `pipe.multi()` (nothing written) or queues its writes after it, which run as one.
        When a watched key moved meanwhile (a concurrent writer, or only the audit chain's head),
        `body` runs again on what is there now: its own checks (a proposal's version, a closing
        already made) decide whether it lost."""
        while True:
            with self._r.pipeline() as pipe:
                try:
                    pipe.watch(*watched)
                    result = body(pipe)
                    if pipe.explicit_transaction:
                        pipe.execute()
                    return result
                except redis.WatchError:
                    continue

    # --- audit helpers -------------------------------------------------------------------------

    def _audit_event(
        self, pipe: Pipeline, actor: str, kind: str, subject: str, data: dict[str, Any]
    ) -> AuditEvent:
        """Read the chain head (the caller WATCHes it) and build the next event."""
        head = pipe.get(_HEAD)
        seq, prev = (0, "")
        if head:
            text = head.decode() if isinstance(head, bytes) else str(head)
            s, _, h = text.partition("|")
            seq, prev = int(s), h
        at = datetime.now(UTC)
        clean = orjson.loads(orjson.dumps(data, default=str))
        digest = chain_hash(prev, seq + 1, at.isoformat(), actor, kind, subject, clean)
        return AuditEvent(
            seq=seq + 1,
            at=at,
            actor=actor,
            kind=kind,
            subject=subject,
            data=clean,
            prev_hash=prev,
            hash=digest,
        )

    @staticmethod
    def _write_audit(pipe: Pipeline, events: list[AuditEvent]) -> None:
        for e in events:
            pipe.rpush(_AUDIT, orjson.dumps(e.model_dump(mode="json")))
            pipe.rpush(f"vigie:audit:subject:{e.subject}", e.seq)
        if events:
            pipe.set(_HEAD, f"{events[-1].seq}|{events[-1].hash}")

    @staticmethod
    def _chain(first: AuditEvent, more: list[AuditRecord]) -> list[AuditEvent]:
        events = [first]
        for actor, kind, subject, data in more:
            prev = events[-1]
            clean = orjson.loads(orjson.dumps(data, default=str))
            at = datetime.now(UTC)
            digest = chain_hash(
                prev.hash, prev.seq + 1, at.isoformat(), actor, kind, subject, clean
            )
            events.append(
                AuditEvent(
                    seq=prev.seq + 1,
                    at=at,
                    actor=actor,
                    kind=kind,
                    subject=subject,
                    data=clean,
                    prev_hash=prev.hash,
                    hash=digest,
                )
            )
        return events

    # --- triage results -----------------------------------------------------------------------

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
        self._guard(
            self._save_triage, incidents, alerts, proposals, dead_letters, actor, placed, history
        )

    def _save_triage(
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
        keys = [_k_proposal(p.proposal_id) for p in proposals]

        def body(pipe: Pipeline) -> None:
            exists = [bool(pipe.exists(k)) for k in keys]
            new = [p for p, e in zip(proposals, exists, strict=True) if not e]
            records = run_records(actor, new, incidents, dead_letters)
            events = (
                self._chain(self._audit_event(pipe, *records[0]), records[1:]) if records else []
            )
            kept = _disposed(pipe, incidents)  # a disposal moves _HEAD: read again
            pipe.multi()
            for inc in kept:
                pipe.set(f"vigie:incident:{inc.incident_id}", _dump(inc))
                pipe.zadd("vigie:incidents", {inc.incident_id: inc.priority})
                _index_entities(pipe, inc)
                _file_by_status(pipe, inc)
            placements = list(owner.items())
            for start in range(0, len(placements), 10_000):
                chunk = dict(placements[start : start + 10_000])
                pipe.hset("vigie:alert_index", mapping=chunk)  # type: ignore[arg-type]
            if history is not None:
                self._add_rule_history(pipe, history)
            for a in alerts:
                pipe.hset(f"vigie:alerts:{owner.get(a.id, '')}", a.id, _dump(a))
            for p in new:
                self._put_proposal(pipe, p)
            now = datetime.now(UTC).isoformat()
            for d in dead_letters:
                pipe.rpush("vigie:dead_letters", orjson.dumps({**d.model_dump(), "at": now}))
            self._write_audit(pipe, events)

        self._optimistic(body, _HEAD, *keys)

    @staticmethod
    def _put_proposal(pipe: Pipeline, p: ActionProposal) -> None:
        pipe.hset(_k_proposal(p.proposal_id), "doc", _dump(p))
        pipe.hset(_k_proposal(p.proposal_id), "version", p.version)
        pipe.hset(_k_proposal(p.proposal_id), "state", p.state.value)
        pipe.sadd("vigie:proposals", p.proposal_id)
        pipe.sadd(f"vigie:proposals:state:{p.state.value}", p.proposal_id)

    def get_incident(self, incident_id: str) -> Incident | None:
        raw = self._guard(self._r.get, f"vigie:incident:{incident_id}")
        return Incident.model_validate_json(raw) if raw else None

    def list_incidents(
        self,
        *,
        limit: int = 100,
        offset: int = 0,
        status: IncidentStatus | None = None,
        min_priority: float = 0.0,
        involving: str | None = None,
    ) -> list[Incident]:
        if involving is not None:
            ids, _ = self._involving(involving, status, min_priority, offset, limit)
        elif status is None:
            ids = self._guard(
                lambda: self._r.zrevrangebyscore(
                    "vigie:incidents", "+inf", min_priority, start=offset, num=limit
                )
            )
        else:
            ids, _ = self._with_status(status, min_priority, offset, limit)
        docs = self._r.mget([f"vigie:incident:{i.decode()}" for i in ids]) if ids else []
        return [Incident.model_validate_json(d) for d in docs if d]

    def count_incidents(
        self,
        *,
        status: IncidentStatus | None = None,
        min_priority: float = 0.0,
        involving: str | None = None,
    ) -> int:
        if involving is not None:
            return self._involving(involving, status, min_priority, 0, 0)[1]
        if status is None:
            return int(self._guard(self._r.zcount, "vigie:incidents", min_priority, "+inf"))
        return self._with_status(status, min_priority, 0, 0)[1]

    def _with_status(
        self, status: IncidentStatus, min_priority: float, offset: int, limit: int
    ) -> tuple[list[bytes], int]:
        """One page of the ids of one status at `min_priority` or more, highest first (as the
        unfiltered list orders them), and how many there are. Open incidents are the few a
        quiet period has not closed: their ids cross with the priority set; closed ones have
        a set of their own, by priority, so any page of them is one range. Never every
        incident's id."""
        if status == "open":
            opened = self._open_at(min_priority)
            return opened[offset : offset + limit], len(opened)
        self._index_closed_once()

        def read() -> tuple[list[bytes], int]:
            with self._r.pipeline(transaction=False) as pipe:
                pipe.zrevrangebyscore(_CLOSED, "+inf", min_priority, start=offset, num=limit)
                pipe.zcount(_CLOSED, min_priority, "+inf")
                ids, total = pipe.execute()
            return (ids if limit else []), int(total)

        result: tuple[list[bytes], int] = self._guard(read)
        return result

    def _index_closed_once(self) -> None:
        """Incidents closed by a version that kept no set of closed ones are put in it at the
        first read of them, in one transaction with the marker: the priority set less the
        open set (saves keep it since)."""
        self._guard(self._index_closed_stored)

    def _index_closed_stored(self) -> None:
        if self._r.exists(_CLOSED_INDEXED):
            return
        with self._r.pipeline() as pipe:
            pipe.zdiffstore(_CLOSED, ["vigie:incidents", _OPEN])
            pipe.set(_CLOSED_INDEXED, 1)
            pipe.execute()

    def _open_at(self, min_priority: float) -> list[bytes]:
        """The open incidents' ids at `min_priority` or more, highest first. Redis crosses the
        open set with the priority set (walking the smaller) into a key of this call's own, in
        one transaction."""
        scratch = f"vigie:incidents:open-by-priority:{uuid4().hex}"

        def read() -> list[bytes]:
            with self._r.pipeline() as pipe:  # the priority, as the open set's score is a time
                pipe.zinterstore(scratch, {"vigie:incidents": 1, _OPEN: 0})
                pipe.zrevrangebyscore(scratch, "+inf", min_priority)
                pipe.delete(scratch)
                _, ids, _ = pipe.execute()
            return list(ids)

        result: list[bytes] = self._guard(read)
        return result

    def _involving(
        self,
        value: str,
        status: IncidentStatus | None,
        min_priority: float,
        offset: int,
        limit: int,
    ) -> tuple[list[bytes], int]:
        """One page of the incidents with this entity, highest first, and how many there are.
        An entity's incidents are few: Redis crosses their set with the priority set (and the
        open set) into keys of this call's own, in one transaction."""
        self._index_entities_once()
        if status == "closed":
            self._index_closed_once()
        tag = uuid4().hex
        found, kept = f"vigie:incidents:found:{tag}", f"vigie:incidents:kept:{tag}"
        either = f"vigie:incidents:either:{tag}"

        def read() -> tuple[list[bytes], int]:
            with self._r.pipeline() as pipe:
                pipe.zunionstore(either, [_k_involving(v) for v in entity_lookups(value)])
                pipe.zinterstore(found, {"vigie:incidents": 1, either: 0})
                if status is not None:
                    of_status = _OPEN if status == "open" else _CLOSED
                    pipe.zinterstore(kept, {found: 1, of_status: 0})
                key = found if status is None else kept
                pipe.zrevrangebyscore(key, "+inf", min_priority, start=offset, num=limit)
                pipe.zcount(key, min_priority, "+inf")
                pipe.delete(found, kept, either)
                *_, ids, total, _ = pipe.execute()
            return ids, int(total)

        result: tuple[list[bytes], int] = self._guard(read)
        return result

    def _index_entities_once(self) -> None:
        """Incidents stored by a version that kept no entity index are indexed at the first
        look-up (saves keep it since)."""
        self._guard(self._index_entities_stored)

    def _index_entities_stored(self) -> None:
        if self._r.exists(_ENTITIES_INDEXED):
            return
        members: list[bytes] = self._r.zrange("vigie:incidents", 0, -1)  # type: ignore[assignment]
        ids = [i.decode() for i in members]
        for start in range(0, len(ids), 1000):
            docs = self._r.mget([f"vigie:incident:{i}" for i in ids[start : start + 1000]])
            with self._r.pipeline(transaction=False) as pipe:
                for doc in docs:
                    if doc:
                        _index_entities(pipe, Incident.model_validate_json(doc))
                pipe.execute()
        self._r.set(_ENTITIES_INDEXED, 1)

    def incident_of_alerts(self, alert_ids: Sequence[str]) -> dict[str, str]:
        ids = list(alert_ids)
        if not ids:
            return {}
        values = self._guard(self._r.hmget, "vigie:alert_index", ids)
        return {a: v.decode() for a, v in zip(ids, values, strict=True) if v is not None}

    def open_incidents(self, since: datetime) -> list[Incident]:
        ids = [
            i.decode() for i in self._guard(self._r.zrangebyscore, _OPEN, since.timestamp(), "+inf")
        ]
        heads = self._r.mget([_k_head(i) for i in ids]) if ids else []
        missing = [i for i, h in zip(ids, heads, strict=True) if not h]  # stored before heads
        full = self._r.mget([f"vigie:incident:{i}" for i in missing]) if missing else []
        light = [Incident.model_validate_json(h) for h in heads if h]
        return light + [_head(Incident.model_validate_json(d)) for d in full if d]

    def close_quiet(self, before: datetime) -> int:
        ids = self._guard(self._r.zrangebyscore, _OPEN, "-inf", f"({before.timestamp()}")
        return sum(self._guard(self._close_quiet, raw.decode(), before) for raw in ids)

    def _close_quiet(self, incident_id: str, before: datetime) -> bool:
        """Read again under WATCH: a person closing or reopening it meanwhile (or a run
        extending it) makes this look again, not write back what it read before."""
        key = f"vigie:incident:{incident_id}"

        def body(pipe: Pipeline) -> bool:
            raw = pipe.get(key)
            inc = Incident.model_validate_json(raw) if raw is not None else None
            if (
                inc is None
                or inc.status != "open"
                or inc.reopened is not None
                or inc.last_seen >= before
            ):
                return False
            closed = inc.model_copy(update={"status": "closed"})
            pipe.multi()
            pipe.set(key, _dump(closed))
            _file_by_status(pipe, closed)
            return True

        return self._optimistic(body, key)

    def dispose(self, incident_id: str, disposition: Disposition) -> bool:
        result: bool = self._guard(self._dispose, incident_id, disposition)
        return result

    def _dispose(self, incident_id: str, d: Disposition) -> bool:
        """The stored document is read again under WATCH and only its status and disposition
        changed: a run extending it meanwhile makes this try again, not lose its alerts."""
        key = f"vigie:incident:{incident_id}"

        def body(pipe: Pipeline) -> bool:
            raw = pipe.get(key)
            if raw is None:
                return False
            stored = Incident.model_validate_json(raw)
            if stored.disposition is not None:
                return False
            lapsed = [  # dropped as new ones come: the hash stays the size of the live set
                f
                for f, doc in pipe.hgetall(_TUNINGS).items()
                if Tuning.model_validate_json(doc).expires_at <= d.at
            ]
            closed = stored.model_copy(update={"status": "closed", "disposition": d})
            event = self._audit_event(pipe, d.actor, "incident.disposed", incident_id, disposed(d))
            pipe.multi()
            pipe.set(key, _dump(closed))
            pipe.hset(_DISPOSITIONS, incident_id, _dump(d))
            _file_by_status(pipe, closed)
            if lapsed:
                pipe.hdel(_TUNINGS, *lapsed)
            for t in d.tuned:
                pipe.hset(_TUNINGS, f"{t.rule_id}{_SEP}{t.host}", _dump(t))
            self._write_audit(pipe, [event])
            return True

        return self._optimistic(body, key, _HEAD, _TUNINGS)

    def reopen(self, incident_id: str, actor: str, reason: str, at: datetime) -> bool:
        result: bool = self._guard(self._reopen, incident_id, actor, reason, at)
        return result

    def _reopen(self, incident_id: str, actor: str, reason: str, at: datetime) -> bool:
        key = f"vigie:incident:{incident_id}"

        def body(pipe: Pipeline) -> bool:
            raw = pipe.get(key)
            stored = Incident.model_validate_json(raw) if raw is not None else None
            if stored is None or stored.disposition is None:
                return False
            was = stored.disposition.verdict
            reopening = Reopening(actor=actor, reason=reason, at=at, was=was)
            opened = stored.model_copy(
                update={"status": "open", "disposition": None, "reopened": reopening}
            )
            event = self._audit_event(
                pipe, actor, "incident.reopened", incident_id, reopened(reopening)
            )
            pipe.multi()
            pipe.set(key, _dump(opened))
            pipe.hdel(_DISPOSITIONS, incident_id)
            _file_by_status(pipe, opened)
            self._write_audit(pipe, [event])
            return True

        return self._optimistic(body, key, _HEAD)

    def revoke_tuning(self, rule_id: str, host: str, actor: str, reason: str) -> bool:
        result: bool = self._guard(self._revoke_tuning, rule_id, host, actor, reason)
        return result

    def _revoke_tuning(self, rule_id: str, host: str, actor: str, reason: str) -> bool:
        field_ = f"{rule_id}{_SEP}{host}"

        def body(pipe: Pipeline) -> bool:
            if not pipe.hexists(_TUNINGS, field_):
                return False
            event = self._audit_event(
                pipe,
                actor,
                "tuning.revoked",
                f"{rule_id}@{host}",
                {"rule_id": rule_id, "host": host, "reason": reason},
            )
            pipe.multi()
            pipe.hdel(_TUNINGS, field_)
            self._write_audit(pipe, [event])
            return True

        return self._optimistic(body, _TUNINGS, _HEAD)

    def tunings(self, now: datetime) -> list[Tuning]:
        raw = self._guard(self._r.hgetall, _TUNINGS)
        found = (Tuning.model_validate_json(doc) for _, doc in sorted(raw.items()))
        return [t for t in found if t.expires_at > now]

    def save_intake(
        self,
        batch_id: str,
        source: str,
        docs: list[dict[str, Any]],
        dead_letters: Sequence[DeadLetter],
        replay_key: str | None = None,
        replay_ttl: float = 300.0,
    ) -> bool:
        now = datetime.now(UTC).isoformat()
        rejects = [orjson.dumps({**d.model_dump(), "at": now}) for d in dead_letters]
        stored = self._guard(
            self._save_intake,
            [
                f"vigie:seen:{replay_key}",
                f"vigie:intake:{batch_id}",
                "vigie:intake:pending",
                "vigie:dead_letters",
            ],
            [
                "1" if replay_key is not None else "0",
                int(replay_ttl * 1000),
                source,
                orjson.dumps(docs),
                batch_id,
                *rejects,
            ],
        )
        return bool(stored)

    def claim_intake(
        self, limit: int = 100, stale_after: float = 600.0
    ) -> list[tuple[str, list[dict[str, Any]]]]:
        now = time.time()
        for raw in self._guard(self._r.lrange, "vigie:intake:processing", 0, -1):
            claimed = self._r.hget(f"vigie:intake:{raw.decode()}", "claimed_at")
            if claimed is None or float(claimed) < now - stale_after:  # its worker died
                self._r.lrem("vigie:intake:processing", 1, raw)
                self._r.rpush("vigie:intake:pending", raw)
        out: list[tuple[str, list[dict[str, Any]]]] = []
        for _ in range(limit):
            raw = self._guard(self._r.lmove, "vigie:intake:pending", "vigie:intake:processing")
            if raw is None:
                break
            batch_id = raw.decode()
            self._r.hset(f"vigie:intake:{batch_id}", "claimed_at", now)
            docs = self._r.hget(f"vigie:intake:{batch_id}", "docs")
            out.append((batch_id, orjson.loads(docs) if docs else []))
        return out

    def finish_intake(self, batch_ids: Sequence[str]) -> None:
        with self._r.pipeline() as pipe:
            for b in batch_ids:
                pipe.lrem("vigie:intake:processing", 1, b)
                pipe.delete(f"vigie:intake:{b}")
            self._guard(pipe.execute)

    def rule_history(self, since: date, windows_from: int | None = None) -> RuleHistory:
        days = self._guard(self._r.zrangebyscore, _RULE_DAYS, since.toordinal(), "+inf")
        first_day = days[0].decode() if days else None  # by score: the oldest first
        pipe = self._r.pipeline(transaction=False)  # the week's days in one round trip
        for day in days:
            pipe.hgetall(_RULE_DAY + day.decode())
        if first_day:
            pipe.zscore(_RULE_FIRST_SEEN, first_day)
        results = self._guard(pipe.execute) if days else []
        first = results.pop() if days else None  # the zscore, queued last
        counts: dict[str, int] = {}
        for by_rule in results:
            for raw_rule, n in by_rule.items():
                rule = raw_rule.decode()
                counts[rule] = counts.get(rule, 0) + int(n)
        pairs = set()
        for key, last in self._guard(self._r.hgetall, _RULE_HOSTS).items():
            if last.decode() >= since.isoformat():
                pairs.add(_pair(key))
        windows: dict[int, dict[tuple[str, str], int]] = {}
        if windows_from is not None:
            starts = self._guard(self._r.zrangebyscore, _RULE_WINDOWS, windows_from, "+inf")
            pipe = self._r.pipeline(transaction=False)
            for start in starts:
                pipe.hgetall(_RULE_WINDOW + start.decode())
            for start, members in zip(starts, self._guard(pipe.execute), strict=True):
                if members:  # a window only an earlier version recorded has none
                    windows[int(start)] = {_pair(member): int(n) for member, n in members.items()}
        return RuleHistory(counts, pairs, windows, watched_from(first_day, first))

    def _add_rule_history(self, pipe: Pipeline, history: RunHistory) -> None:
        """Queued on a run's transaction."""
        counts, pairs = history.counts, history.pairs
        for (day, rule), n in counts.items():
            pipe.hincrby(_RULE_DAY + day.isoformat(), rule, n)
            pipe.expire(_RULE_DAY + day.isoformat(), RULE_HISTORY_DAYS * 86400)
            pipe.zadd(_RULE_DAYS, {day.isoformat(): day.toordinal()})
        if history.first_seen:  # LT: a day keeps its earliest time, whichever run came first
            pipe.zadd(
                _RULE_FIRST_SEEN, {d.isoformat(): t for d, t in history.first_seen.items()}, lt=True
            )
        newest = max((d for d, _ in counts), default=None)
        if newest is not None:  # days past retention: their hashes expired, forget them too
            newest = min(newest, datetime.now(UTC).date())  # a sensor's clock a year ahead
            oldest_kept = newest.toordinal() - RULE_HISTORY_DAYS
            pipe.zremrangebyscore(_RULE_DAYS, "-inf", oldest_kept)
            kept_from = (oldest_kept + 1 - _EPOCH_ORDINAL) * 86400  # the first kept day's start
            pipe.zremrangebyscore(_RULE_FIRST_SEEN, "-inf", f"({kept_from}")
        if pairs:
            fields = [f"{rule}{_SEP}{host}" for rule, host in pairs]
            self._latest_day(
                keys=[_RULE_HOSTS],
                args=[
                    x
                    for f, d in zip(fields, pairs.values(), strict=True)
                    for x in (f, d.isoformat())
                ],
                client=pipe,
            )
        for start, in_window in history.windows.items():
            key = _RULE_WINDOW + str(start)
            for (rule, host), n in in_window.items():
                pipe.hincrby(key, f"{rule}{_SEP}{host}", n)
            pipe.expire(key, WINDOW_HISTORY_SECONDS)
            pipe.zadd(_RULE_WINDOWS, {str(start): start})
        if history.windows:
            newest_window = max(history.windows)
            pipe.zremrangebyscore(_RULE_WINDOWS, "-inf", newest_window - WINDOW_HISTORY_SECONDS)

    def get_checkpoint(self, name: str) -> Any:
        raw = self._guard(self._r.get, f"vigie:checkpoint:{name}")
        return orjson.loads(raw) if raw else None

    def set_checkpoint(self, name: str, value: Any) -> None:
        self._guard(self._r.set, f"vigie:checkpoint:{name}", orjson.dumps(value))

    def save_session(self, key: str, data: dict[str, Any], expires: datetime) -> None:
        ttl_ms = max(1, int((expires - datetime.now(UTC)).total_seconds() * 1000))
        self._guard(self._r.psetex, f"vigie:session:{key}", ttl_ms, orjson.dumps(data))

    def get_session(self, key: str, now: datetime) -> dict[str, Any] | None:
        raw = self._guard(self._r.get, f"vigie:session:{key}")  # expired: gone by its TTL
        return orjson.loads(raw) if raw else None

    def drop_session(self, key: str) -> None:
        self._guard(self._r.delete, f"vigie:session:{key}")

    def alerts_of(self, incident_id: str) -> list[Alert]:
        raw = self._guard(self._r.hvals, f"vigie:alerts:{incident_id}")
        return sorted((Alert.model_validate_json(d) for d in raw), key=lambda a: a.timestamp)

    def dead_letters(self) -> list[DeadLetter]:
        rows = self._guard(self._r.lrange, "vigie:dead_letters", 0, -1)
        return [
            DeadLetter.model_validate({k: v for k, v in orjson.loads(r).items() if k != "at"})
            for r in rows
        ]

    def recent_dead_letters(self, limit: int, offset: int = 0) -> tuple[int, list[DeadLetter]]:
        total = self._guard(self._r.llen, "vigie:dead_letters")
        if offset >= total or limit <= 0:
            return total, []
        first, last = -(offset + limit), -(offset + 1)  # the newest are at the list's end
        rows = self._guard(self._r.lrange, "vigie:dead_letters", first, last)
        return total, [DeadLetter.model_validate_json(r) for r in reversed(rows)]

    # --- proposals ----------------------------------------------------------------------------

    def get_proposal(self, proposal_id: str) -> ActionProposal | None:
        raw = self._guard(self._r.hget, _k_proposal(proposal_id), "doc")
        return ActionProposal.model_validate_json(raw) if raw else None

    def list_proposals(
        self, *, states: Sequence[ProposalState] | None = None, incident_id: str | None = None
    ) -> list[ActionProposal]:
        if states:
            ids = self._guard(self._r.sunion, [f"vigie:proposals:state:{s.value}" for s in states])
        else:
            ids = self._guard(self._r.smembers, "vigie:proposals")
        ordered = sorted(i.decode() for i in ids)
        with self._r.pipeline(transaction=False) as pipe:
            for pid in ordered:
                pipe.hget(_k_proposal(pid), "doc")
            docs = pipe.execute()
        out = [ActionProposal.model_validate_json(d) for d in docs if d]
        if states:  # a proposal may have moved between the two reads
            out = [p for p in out if p.state in states]
        return [p for p in out if incident_id is None or p.incident_id == incident_id]

    def transition(
        self,
        old: ActionProposal,
        new: ActionProposal,
        *,
        actor: str,
        data: dict[str, Any] | None = None,
        insert: ActionProposal | None = None,
    ) -> bool:
        result: bool = self._guard(self._transition, old, new, actor, data, insert)
        return result

    def _transition(
        self,
        old: ActionProposal,
        new: ActionProposal,
        actor: str,
        data: dict[str, Any] | None,
        insert: ActionProposal | None,
    ) -> bool:
        key = _k_proposal(old.proposal_id)

        def body(pipe: Pipeline) -> bool:
            version = pipe.hget(key, "version")
            if version is None or int(version) != old.version:
                return False
            event = self._audit_event(
                pipe,
                actor,
                f"proposal.{new.state.value}",
                new.proposal_id,
                {"from": old.state.value, "version": new.version, **(data or {})},
            )
            pipe.multi()
            pipe.hset(
                key,
                mapping={
                    "doc": _dump(new),
                    "version": new.version,
                    "state": new.state.value,
                },
            )
            pipe.srem(f"vigie:proposals:state:{old.state.value}", old.proposal_id)
            pipe.sadd(f"vigie:proposals:state:{new.state.value}", old.proposal_id)
            if insert is not None:
                self._put_proposal(pipe, insert)
            self._write_audit(pipe, [event])
            return True

        return self._optimistic(body, key, _HEAD)

    # --- audit --------------------------------------------------------------------------------

    def append_audit(self, actor: str, kind: str, subject: str, data: dict[str, Any]) -> AuditEvent:
        def body(pipe: Pipeline) -> AuditEvent:
            event = self._audit_event(pipe, actor, kind, subject, data)
            pipe.multi()
            self._write_audit(pipe, [event])
            return event

        event: AuditEvent = self._guard(self._optimistic, body, _HEAD)
        return event

    def audit(
        self, subject: str | None = None, *, after: int = 0, limit: int | None = None
    ) -> list[AuditEvent]:
        if subject is None:  # event seq n sits at index n - 1
            last = -1 if limit is None else after + limit - 1
            rows = self._guard(self._r.lrange, _AUDIT, after, last)
        else:
            seqs = self._guard(self._r.lrange, f"vigie:audit:subject:{subject}", 0, -1)
            wanted = [int(seq) for seq in seqs if int(seq) > after][:limit]
            with self._r.pipeline(transaction=False) as pipe:
                for seq in wanted:
                    pipe.lindex(_AUDIT, seq - 1)
                rows = pipe.execute()
        return [AuditEvent.model_validate_json(r) for r in rows if r]

    def verify_audit(self) -> tuple[bool, int | None]:
        bad = first_broken(self.audit())
        return bad is None, bad

    def close(self) -> None:
        self._r.close()

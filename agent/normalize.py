"""Turn raw alert documents (Elastic Security, Wazuh, generic ECS) into `Alert`s.

The format is detected per document, so one file or one webhook may mix sources. A document that
cannot be normalised raises `NormalizeError` with a reason a human can act on; the caller turns it
into a dead-letter record. Entity values are kept verbatim: they are attacker-controlled data.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import marshal
import re
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from functools import lru_cache, partial
from typing import Any, NamedTuple

import orjson

from agent.attack import is_technique_id, tactic_id
from agent.documents import Fields, excerpt, strings, unwrapped
from agent.errors import BadInput
from agent.models import (
    SEVERITY_RANK,
    SEVERITY_RISK,
    Alert,
    DeadLetter,
    Entities,
    Severity,
    Suppressed,
    all_fields_set,
    raw_json,
    severity_for_risk,
)
from agent.repeats import Getter, MessageOf, Parts, Repeats, TimeOf

MAX_DEPTH = 64


class NormalizeError(BadInput):
    """This document cannot become an alert; the message says why."""


def normalize(doc: Any, *, depth_checked: bool = False, raw: bytes | None = None) -> Alert:
    """Detect the document's format and normalise it, or raise `NormalizeError`.

    `depth_checked`: the caller already knows the document is shallow enough (a reader that
    counted its brackets), so the walk can be skipped on the hot path. `raw`: the document's
    JSON as read (a file line), kept instead of encoding the document again."""
    return alert_from_fields(alert_fields(doc, depth_checked=depth_checked, raw=raw))


def alert_fields(doc: Any, *, depth_checked: bool = False, raw: bytes | None = None) -> AlertFields:
    """What `normalize` makes of a document, before it becomes an `Alert`: every field of the
    model, each already of the model's type (the parallel file reader relies on it, and its
    tests hold it to it)."""
    return _REPEATS.fields(_checked_object(doc, depth_checked), raw)


def alert_parts(doc: Any, *, depth_checked: bool = False, raw: bytes | None = None) -> Parts:
    """`alert_fields`, as what repeats of the document share and what each has of its own
    (`Repeats.parts`): the parallel file reader sends each shared part once per chunk."""
    return _REPEATS.parts(_checked_object(doc, depth_checked), raw)


def _checked_object(doc: Any, depth_checked: bool) -> dict[str, Any]:
    if not isinstance(doc, dict):
        raise NormalizeError(f"expected a JSON object, got {type(doc).__name__}")
    if not depth_checked:
        check_depth(doc)
    return unwrapped(doc)


def normalise_fully(
    doc: dict[str, Any], raw: bytes | None
) -> tuple[AlertFields, TimeOf, Callable[[], MessageOf | None]]:
    """Every document's full path: flattened, its format detected, normalised; with how its
    format reads a repeat's time and message (`agent/repeats.py`; the message's reader is
    made only if the memo keeps the document)."""
    fields = Fields(doc, raw)
    fmt = _detect(fields)
    values = fmt.normalise(doc, fields)
    return values, fmt.time, partial(fmt.message, fields, values["rule_name"])


def alert_from_fields(values: AlertFields) -> Alert:
    """The alert, validated by its model."""
    # Every alert read sets the same fields: one set of their names for all (about 700 bytes,
    # a third of an alert).
    return all_fields_set(Alert.model_validate(values))


def rejected(source: str, line: int | None, doc: Any, exc: NormalizeError) -> DeadLetter:
    """The dead letter of a document that could not become an alert."""
    return DeadLetter(source=source, line=line, reason=str(exc), excerpt=excerpt(doc))


def check_depth(doc: Any, limit: int = MAX_DEPTH) -> None:
    """Refuse absurdly nested documents before any recursive code walks them."""
    stack: list[tuple[Any, int]] = [(doc, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            raise NormalizeError(f"nesting deeper than {limit} levels")
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values() if isinstance(v, dict | list))
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node if isinstance(v, dict | list))


AlertFields = dict[str, Any]


class Format(NamedTuple):
    """How one source's documents become alert fields, where its alerts keep their time, and
    how a repeat's message is read (given the document and its rule's name)."""

    normalise: Callable[[dict[str, Any], Fields], AlertFields]
    time: TimeOf
    message: Callable[[Fields, str], MessageOf | None]


def _detect(f: Fields) -> Format:
    get = f.flat.get  # every alert read passes here: plain lookups, no generators
    if (
        get("kibana.alert.rule.name") is not None
        or get("kibana.alert.uuid") is not None
        or get("kibana.alert") is not None
    ):
        return ELASTIC
    if get("rule.level") is not None and (
        get("@timestamp") is None
        or get("agent.name") is not None
        or get("manager.name") is not None
        or get("decoder.name") is not None
        or get("location") is not None
    ):
        return WAZUH
    if "@timestamp" in f.flat:
        return ECS
    if isinstance(get("hits.hits"), list):
        raise NormalizeError(
            "a search response, not an alert: give its hits one a line (jq -c '.hits.hits[]'), "
            "or let `vigie sweep` read the index"
        )
    if get("_index") is not None and get("_id") is not None:
        raise NormalizeError(
            "a search hit without its _source: the index keeps no source "
            '("_source": {"enabled": false}) or the search left it out'
        )
    raise NormalizeError(
        "unrecognised document: no kibana.alert.* (Elastic), rule.level (Wazuh) or @timestamp (ECS)"
    )


# --- shared helpers -----------------------------------------------------------------------------


#: Alert times outside these are bad input, not alerts: the year 1 or 9999 breaks the time
#: arithmetic of correlation (windows, quiet periods), and no sensor dates an event so.
EARLIEST = datetime(1990, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)
#: The same bounds in epoch seconds and milliseconds: the two ranges do not overlap, so a
#: number's size says which unit it is in.
_SECONDS = (EARLIEST.timestamp(), LATEST.timestamp())
_MILLISECONDS = (EARLIEST.timestamp() * 1000, LATEST.timestamp() * 1000)
_EPOCH_TEXT = re.compile(r"\s*\d{9,13}(\.\d+)?\s*", re.ASCII)


def parse_timestamp(value: Any, field: str) -> datetime:
    """ISO 8601 strings (with Z, +00:00 or +0000), or epoch seconds or milliseconds (numbers, or
    digits as text); naive means UTC. Times before 1990 or from 2200 on are refused."""
    if isinstance(value, bool) or value is None:
        raise NormalizeError(f"no usable timestamp in {field}")
    if isinstance(value, int | float):
        if _SECONDS[0] <= value < _SECONDS[1]:
            return datetime.fromtimestamp(value, tz=UTC)
        if _MILLISECONDS[0] <= value < _MILLISECONDS[1]:
            return datetime.fromtimestamp(value / 1000, tz=UTC)
        raise NormalizeError(f"{field} out of range: {value!r}")
    if not isinstance(value, str):
        raise NormalizeError(f"{field} must be a string or a number, got {type(value).__name__}")
    try:
        ts = datetime.fromisoformat(value.strip())
        if ts.tzinfo is not UTC:  # "Z" and "+00:00" (most alerts) are already as they should be
            ts = ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)
    except ValueError:
        if _EPOCH_TEXT.fullmatch(value):  # epoch seconds or milliseconds, written as text
            return parse_timestamp(float(value), field)
        raise NormalizeError(f"{field} is not an ISO 8601 timestamp: {value[:40]!r}") from None
    except OverflowError:  # the year 1 at +14:00
        raise NormalizeError(f"{field} out of range: {value[:40]!r}") from None
    if not EARLIEST <= ts < LATEST:
        raise NormalizeError(f"{field} out of range: {value[:40]!r}")
    return ts


def alert_id(doc: dict[str, Any], get: Getter) -> str:
    """event.id, else kibana.alert.uuid, else _id, else Wazuh's id, else a stable content hash.
    `get` reads a dotted path (`Fields.get`)."""
    for path in ("event.id", "kibana.alert.uuid", "_id", "id"):
        value = get(path)
        if isinstance(value, str) and value.strip():
            return value.strip()[:256]
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
    try:
        canonical = orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)
    except TypeError:  # integers beyond 64 bits (the stdlib parser accepts them)
        canonical = json.dumps(doc, sort_keys=True, default=str).encode()
    digest = hashlib.sha256(canonical).hexdigest()
    return f"sha256-{digest[:32]}"


#: What Wazuh's PAM decoder keeps after an account's name: pam_unix writes "session opened for
#: user jdoe(uid=1000)", and `data.dstuser` holds "jdoe(uid=1000)" where sshd's says "jdoe".
_UID_SUFFIX = re.compile(r"\(uid=\d+\)$")
#: The domain of a user principal name (`corp.example` of `jdoe@corp.example`, a Kerberos realm
#: `CORP.EXAMPLE` in lower case): DNS labels.
_UPN_DOMAIN = re.compile(r"[a-z0-9-]++(?:\.[a-z0-9-]++)*+")
#: The entity kinds that are names, read in lower case.
_NAMES = frozenset({"hosts", "users"})


def clean_names(values: list[str], accounts: bool) -> list[str]:
    """Host and account names as one entity each however a sensor writes them (linked,
    matched by playbooks, given to actions): in lower case, as names of either kind are
    compared (Windows' agent `WS-FIN-07` is Elastic Agent's `ws-fin-07`, a logon's `JDoe` the
    directory's `jdoe`); a host by its machine name (`machine_name`); an account without the
    uid PAM may add, the Windows domain Sysmon writes before it (`CORP\\jdoe`, where a
    logon's event names `jdoe` and its domain apart, as ECS's `user.name` and `user.domain`
    do) or a principal name's domain after it (`account_name`)."""
    kept = map(read_account if accounts else read_host, values)
    return list(dict.fromkeys(v for v in kept if v and v not in NO_NAME))


def read_host(name: str) -> str:
    """A host's name as alerts are read (`clean_names`): also what a name stored by an earlier
    version (`WS-FIN-07.corp.example`) or typed by a person is compared as."""
    return machine_name(name.lower())


def read_account(name: str) -> str:
    """An account's name as alerts are read (`CORP\\JDoe` is `jdoe`), as `read_host`."""
    return account_name(name.lower())


def machine_name(host: str) -> str:
    """A host by its machine name, the first label of a DNS name: Elastic Agent may name a
    host `ws-fin-07.corp.example` where its Wazuh agent and its syslog say `ws-fin-07`, as
    Windows names its own machine in one form or the other (the Windows domain is dropped from
    an account alike). An address (a host named by its IP) stays whole, and so does a name
    whose last label is a number, which no DNS domain ends in (`ubuntu-22.04`, a lab's
    machine named after its system, is not `ubuntu-22`)."""
    first, dot, rest = host.partition(".")
    if not dot or not first or ":" in host or first.isdigit():  # an IPv4 address's too
        return host
    return host if rest.rpartition(".")[2].isdigit() else first


def account_name(name: str) -> str:
    """An account (in lower case) without the uid PAM adds, the Windows domain before it or
    the DNS domain of a user principal name after it (`jdoe@corp.example`, as Entra ID,
    Office 365 and Kerberos write the account Windows' logons name `jdoe`: Elastic's Azure
    pipeline splits it so, into `user.name` and `user.domain`)."""
    if name.endswith(")"):
        name = _UID_SUFFIX.sub("", name)
    if "\\" in name:
        name = name.rpartition("\\")[2]
    if "@" in name:
        account, _, domain = name.rpartition("@")
        if account and _UPN_DOMAIN.fullmatch(domain):
            return account
    return name


def clean_ips(values: list[str]) -> tuple[str, ...]:
    """Valid, routable-or-private addresses only: loopback and unspecified link nothing."""
    return _clean_ips(tuple(values)) if values else ()


@lru_cache(maxsize=65536)
def _clean_ips(values: tuple[str, ...]) -> tuple[str, ...]:
    out: list[str] = []
    for v in values:
        text = _ipv4_kept(v)
        if text is None:  # not plain IPv4: ipaddress decides
            try:  # no address has one colon and digits after it: a port only
                ip = ipaddress.ip_address(_without_port(v))
            except ValueError:
                continue
            if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
                ip = ip.ipv4_mapped  # Windows' "::ffff:10.0.0.5": the IPv4 host others name
            if ip.is_loopback or ip.is_unspecified or ip.is_link_local:
                continue
            text = str(ip)
        if text and text not in out:
            out.append(text)
    return tuple(out)


#: Sensors that watch a network, not the machine they run on.
NETWORK_SENSORS = frozenset({"suricata", "zeek", "snort"})
_WATCHED: dict[tuple[int, str | None, str | None], tuple[Entities, Entities]] = {}


def watched_host(entities: Entities, source: str | None, destination: str | None) -> Entities:
    """A network sensor's alert is about the machine it saw, not the one it runs on (the
    `host.name` of Elastic's integration and Security Onion, Wazuh's agent): as its only host,
    the sensor made one incident of every alert it raised within an hour, and gave its name to
    a playbook's isolation. That machine (`Entities.watched`) is the connection's inside end,
    the source when both are (what sent the flagged traffic: a client's DNS query to the inside
    resolver, a compromised host's move to the next); none when neither is. The sensor stays
    the host: what is routine there (a policy rule every workstation trips) is judged on it,
    and correlation places the rest on the machine (`correlate.build_runs`). The sensor's own
    addresses are no address of the connection: shared by all its alerts, they linked them."""
    key = (id(entities), source, destination)  # hashing the model costs more than the rest
    known = _WATCHED.get(key)
    if known is not None and known[0] is entities:  # held there, so its id is not reused
        return known[1]
    if len(_WATCHED) >= 65536:
        _WATCHED.clear()
    machine = _inside(source) or _inside(destination)
    connection = {*clean_ips([v for v in (source, destination) if v is not None])}
    ips = tuple(ip for ip in entities.ips if ip not in entities.host_ips or ip in connection)
    seen = {"watched": (machine,) if machine else (), "ips": ips}
    watched = all_fields_set(entities.model_copy(update=seen))  # shared, as entities are
    _WATCHED[key] = (entities, watched)
    return watched


#: An organisation's own addresses: RFC 1918's and IPv6's unique local ones. Not all that
#: `ipaddress` calls private: the documentation and benchmark ranges are nobody's inside.
INSIDE_NETWORKS = tuple(
    ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")
)


def _inside(value: str | None) -> str | None:
    """The address if it is an inside one (`INSIDE_NETWORKS`), else None."""
    found = clean_ips([value]) if value is not None else ()
    return found[0] if found and _is_inside(found[0]) else None


@lru_cache(maxsize=65536)
def _is_inside(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    return any(ip in network for network in INSIDE_NETWORKS)


def _without_port(v: str) -> str:
    """The address of `203.0.113.9:51234` or `[2001:db8::1]:443`, as Office 365's audit log
    writes a client's (`ClientIP`); anything else as it is."""
    if v.startswith("["):
        address, bracket, port = v[1:].partition("]:")
        return address if bracket and port.isdigit() else v
    address, colon, port = v.partition(":")
    return address if colon and port.isdigit() else v


def _ipv4_kept(v: str) -> str | None:
    """For an IPv4 address written as `ipaddress` writes it (four decimal octets, no leading
    zero): itself, or "" when it is loopback, unspecified or link-local. None for anything
    else. Parsing with `ipaddress` costs 8 us an address: a day of alerts from distinct
    sources (a brute force from the internet) holds hundreds of thousands, each new."""
    octets = v.split(".")
    if len(octets) != 4:
        return None
    for octet in octets:
        if not (0 < len(octet) <= 3 and octet.isascii() and octet.isdigit()):
            return None
        if (len(octet) > 1 and octet[0] == "0") or int(octet) > 255:
            return None
    first, second = octets[0], octets[1]
    if first == "127" or v == "0.0.0.0" or (first == "169" and second == "254"):
        return ""
    return v


def risk_number(value: Any, field: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise NormalizeError(f"{field} must be a number, got {type(value).__name__}")
    try:
        risk = float(value)
    except ValueError:
        raise NormalizeError(f"{field} is not a number: {str(value)[:40]!r}") from None
    if not 0 <= risk <= 100:
        raise NormalizeError(f"{field} must be within 0-100, got {risk}")
    return risk


#: Other tools' words for the four severities: Sigma's and Splunk's `informational`, syslog's
#: levels, Defender's `Informational`. An alert saying one was a dead letter.
SEVERITY_WORDS = {
    **{w: Severity.low for w in ("informational", "info", "information", "notice", "debug")},
    **{w: Severity.medium for w in ("moderate", "warning", "warn", "minor")},
    **{w: Severity.high for w in ("severe", "error", "major")},
    **{w: Severity.critical for w in ("emergency", "alert", "fatal")},
}


def severity_name(value: Any, field: str) -> Severity | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise NormalizeError(f"{field} must be a string, got {type(value).__name__}")
    severity = severity_word(value)
    if severity is None:
        raise NormalizeError(f"{field} is not low/medium/high/critical: {value[:40]!r}")
    return severity


def severity_word(word: str) -> Severity | None:
    """The severity a word names, in any case, ours or another tool's; None for no severity."""
    word = word.strip().lower()
    return SEVERITY_WORDS.get(word) or Severity.__members__.get(word)


#: Suricata's classification priorities (its `alert.severity`): 1 is the most severe, 4 and up
#: the least. None is critical: policy classes are priority 1 too (the shared sample's ELF
#: download, "Potential Corporate Privacy Violation", that Emerging Threats rates Informational).
_SURICATA_PRIORITY = (Severity.high, Severity.medium, Severity.low)


def suricata_severity(word: str | None, priority: Any) -> Severity | None:
    """Suricata's own rating of its alert: the signature's (Emerging Threats'
    `signature_severity`: Critical, Major, Minor, Informational), else its class's priority.
    None when neither reads: these are the sensor's fields, not a schema Vigie sets, so an odd
    value leaves the rating to the alert's other fields instead of losing the alert."""
    if word is not None and (severity := severity_word(word)) is not None:
        return severity
    if isinstance(priority, bool) or not isinstance(priority, int | float | str):
        return None
    try:
        rank = int(priority)
    except ValueError:
        return None
    return _SURICATA_PRIORITY[min(rank, 3) - 1] if rank >= 1 else None


def threat_ids(threat: Any) -> tuple[list[str], list[str]]:
    """Tactic and technique ids from ECS `threat` entries (a list or one object)."""
    tactics: list[str] = []
    techniques: list[str] = []
    if threat is None:  # most alerts map no technique
        return tactics, techniques
    for entry in threat if isinstance(threat, list) else [threat]:
        if not isinstance(entry, dict):
            continue
        ef = Fields(entry)
        for t in ef.all("tactic.id", "tactic.name"):
            tid = tactic_id(t)
            if tid and tid not in tactics:
                tactics.append(tid)
        techs = entry.get("technique")
        for tech in techs if isinstance(techs, list) else [techs]:
            if not isinstance(tech, dict):
                continue
            ids = strings(tech.get("id"))
            subs = tech.get("subtechnique")
            for sub in subs if isinstance(subs, list) else [subs]:
                if isinstance(sub, dict):
                    ids += strings(sub.get("id"))
            techniques += [i for i in ids if is_technique_id(i) and i not in techniques]
    return tactics, techniques


#: One entity kind of a format: (field, paths, how many values, addresses?).
EntityRow = tuple[str, tuple[str, ...], int | None, bool]


class EntitySpec:
    """Where each entity kind is read from in one format, and every path it reads; and the
    entities of the value combinations read lately (see `entities_of`)."""

    def __init__(self, *rows: EntityRow) -> None:
        self.rows = rows
        self.paths = frozenset(p for _, paths, _, _ in rows for p in paths)
        self.ordered = tuple(sorted(self.paths))
        self.by_values: dict[bytes, Entities] = {}

    def hosts_from(self, *paths: str, more_ips: tuple[str, ...] = ()) -> EntitySpec:
        """This spec with its host read from `paths` (the first present), and its addresses
        from `more_ips` too. The agent's own addresses are not that host's."""
        hosts, *rows = self.rows
        assert hosts[0] == "hosts"
        return EntitySpec(
            (hosts[0], paths, hosts[2], hosts[3]),
            *(
                (kind, _paths_for_other_host(kind, found, more_ips), limit, ip)
                for kind, found, limit, ip in rows
            ),
        )


def _paths_for_other_host(
    kind: str, paths: tuple[str, ...], more_ips: tuple[str, ...]
) -> tuple[str, ...]:
    """A row's paths once the host is read elsewhere: the agent's own addresses are not it."""
    if kind == "ips":
        return (*paths, *more_ips)
    return () if kind == "host_ips" else paths


ECS_ENTITIES = EntitySpec(
    ("hosts", ("host.name", "host.hostname"), 1, False),
    ("users", ("user.name", "user.target.name", "source.user.name"), None, False),
    ("ips", ("source.ip", "destination.ip", "host.ip", "client.ip"), None, True),
    ("source_ips", ("source.ip", "client.ip"), None, True),
    ("host_ips", ("host.ip",), None, True),
    ("processes", ("process.executable", "process.name"), 1, False),
    ("files", ("file.path",), None, False),
    ("hashes", ("file.hash.sha256", "process.hash.sha256", "file.hash.md5"), None, False),
    ("urls", ("url.full", "url.original"), None, False),
    (
        "domains",
        ("url.domain", "destination.domain", "source.domain", "dns.question.name"),
        None,
        False,
    ),
    ("sequences", ("kibana.alert.group.id", "signal.group.id"), 1, False),
)
#: Winlogbeat's and Elastic Agent's name of a Windows event's own machine: a collector of
#: Windows Event Forwarding reading other machines' events is `host.name`.
_WINLOG_COMPUTER = "winlog.computer_name"
ECS_FORWARDED_ENTITIES = ECS_ENTITIES.hosts_from(_WINLOG_COMPUTER, "host.name", "host.hostname")
#: Windows event channel fields as Wazuh decodes them (`data.win.eventdata.*`, camelCase):
#: a failed logon's account and address, Sysmon's process, file and DNS query.
_WIN = "data.win.eventdata."
WAZUH_ENTITIES = EntitySpec(
    ("hosts", ("agent.name",), 1, False),
    (
        "users",
        (
            "data.srcuser",
            "data.dstuser",
            "data.office365.UserId",  # a user principal name (see `account_name`)
            "data.user",
            "data.audit.acct",
            _WIN + "targetUserName",
            _WIN + "subjectUserName",
            _WIN + "user",
        ),
        None,
        False,
    ),
    (
        "ips",
        (
            "data.srcip",
            "data.src_ip",
            "data.dstip",
            "data.dest_ip",
            _WIN + "ipAddress",
            _WIN + "sourceIp",
            _WIN + "destinationIp",
            "data.office365.ClientIP",
            "agent.ip",
        ),
        None,
        True,
    ),
    (
        "source_ips",
        (
            "data.srcip",
            "data.src_ip",
            _WIN + "ipAddress",
            _WIN + "sourceIp",
            "data.office365.ClientIP",
        ),
        None,
        True,
    ),
    ("host_ips", ("agent.ip",), None, True),
    (
        "processes",
        ("data.command", _WIN + "image", _WIN + "sourceImage", "data.audit.exe"),
        1,
        False,
    ),
    ("files", ("syscheck.path", _WIN + "targetFilename"), None, False),
    ("hashes", ("syscheck.sha256_after", "syscheck.md5_after"), None, False),
    ("urls", ("data.url", "data.http.url"), None, False),
    ("domains", ("data.http.hostname", "data.dns.rrname", _WIN + "queryName"), None, False),
)
#: Where a format names the process instance an alert is about, and those that started it:
#: Elastic Defend's and Winlogbeat's entity ids, Sysmon's process GUIDs as Wazuh decodes them.
#: An id names one run of one program on one host, so alerts on it and on its descendants are
#: one process tree however far apart (a beacon's traffic hours after its launch).
Lineage = tuple[tuple[str, ...], tuple[str, ...]]
#: Elastic Defend's ancestors of a process, its parent first (up to 20).
_ANCESTRY = "process.Ext.ancestry"
#: The ancestors an alert keeps: a web shell's `cmd.exe`, the `powershell.exe` it ran and
#: what that ran are one tree; each id kept costs every alert of an endpoint's feed memory.
MAX_ANCESTRY = 5
ECS_LINEAGE: Lineage = (("process.entity_id",), ("process.parent.entity_id", _ANCESTRY))
#: Sysmon names the acting process `SourceProcessGuid` where another is the target (8, remote
#: thread; 10, process access, `SourceProcessGUID`), as Winlogbeat reads it.
WAZUH_LINEAGE: Lineage = (
    (_WIN + "processGuid", _WIN + "sourceProcessGuid", _WIN + "sourceProcessGUID"),
    (_WIN + "parentProcessGuid",),
)
_GUID = re.compile(r"\{?([0-9A-Fa-f]{8}(?:-[0-9A-Fa-f]{4}){3}-[0-9A-Fa-f]{12})\}?")
_NO_GUID = "00000000-0000-0000-0000-000000000000"  # Sysmon's for a parent it did not see
MAX_PROCESS_ID = 128


def ancestry(f: Fields, paths: tuple[str, ...]) -> tuple[str, ...]:
    """The process instances that started the alert's, its parent first, in the spelling of
    `process_instance`: the parent at the first path, then the ancestors a list holds (Elastic
    Defend's, whose first is the parent again). Interned: one process is the ancestor of
    thousands of alerts' processes."""
    flat = f.flat
    found: list[str] = []
    for path in paths:
        values = flat.get(path)
        if values is None:
            continue
        for value in values if type(values) is list else (values,):
            pid = _instance(value)
            if pid is not None and pid not in found:
                found.append(pid)
                if len(found) == MAX_ANCESTRY:
                    return tuple(map(sys.intern, found))
    return tuple(map(sys.intern, found))


def process_instance(f: Fields, paths: tuple[str, ...]) -> str | None:
    """The process instance id at these paths, as one spelling: a GUID in lower case without
    braces (Sysmon writes `{5770385F-...}`, tools copy it either way); other ids (Elastic
    Defend's) as written. None when absent, `-` or the null GUID."""
    return _instance(f.first(*paths))


#: A GUID's length, with and without its braces: only those are matched as one (an endpoint's
#: feed reads several ids an alert).
_GUID_LENGTHS = frozenset({36, 38})


def _instance(value: Any) -> str | None:
    if type(value) is not str or not (value := value.strip()) or value in NO_NAME:
        return None
    if len(value) not in _GUID_LENGTHS or (guid := _GUID.fullmatch(value)) is None:
        return value[:MAX_PROCESS_ID]
    text = guid.group(1).lower()
    return None if text == _NO_GUID else text


#: The agent id Wazuh gives what its manager decodes itself: its own logs, and the syslog every
#: device and server sends it (wazuh#6739), each alert naming the manager as its agent.
MANAGER_AGENT_ID = "000"
#: Those alerts' host is the one the syslog header names (`predecoder.hostname`), else the
#: manager's: a firewall's, a switch's and a relayed server's alerts were all the manager's
#: (one host linking them all, and its playbooks isolating the manager). A syslog header is
#: its sender's word, so the address it came from (`location`, a path for the manager's own
#: files, which names no address) is among the alert's: the analyst sees who said so.
WAZUH_MANAGER_ENTITIES = WAZUH_ENTITIES.hosts_from(
    "predecoder.hostname", "agent.name", more_ips=("location",)
)
#: A Windows event's own machine (`WS-FIN-07.corp.example`): a collector's agent reading the
#: events other machines forward it (Windows Event Forwarding, wazuh#2136) names itself.
_WIN_COMPUTER = "data.win.system.computer"
WAZUH_FORWARDED_ENTITIES = WAZUH_ENTITIES.hosts_from(_WIN_COMPUTER, "agent.name")
#: What Windows and Linux logs write where a name is absent: no entity. `localhost` is every
#: machine's name for itself (a device's syslog header, an unnamed box): it would link them all.
NO_NAME = frozenset({"-", "N/A", "(unknown)", "localhost", "localhost.localdomain"})
#: The rows of a spec that one document shape fills: (row, paths present, limit, addresses?).
#: Documents of one feed share a handful of shapes, so each shape is planned once.
Plan = tuple[tuple[int, tuple[str, ...], int | None, bool], ...]
_PLANS: dict[tuple[EntitySpec, frozenset[str]], Plan] = {}
_ENTITY_CACHE: dict[tuple[tuple[str, ...], ...], Entities] = {}
_NONE = Entities()
#: Value combinations remembered per format (`EntitySpec.by_values`), and the largest kept:
#: at most 8 MB of keys, however long the values an attacker sends.
BY_VALUES_MAX = 16384
BY_VALUES_MAX_KEY = 512


def entities_of(f: Fields, spec: EntitySpec) -> Entities:
    """The entities of one document. Alerts of one host share one frozen `Entities`: reading a
    day of alerts builds a few thousand of them, not one per alert. A document whose values
    at the format's entity paths are those of a recent one gets its entities without reading
    them again: a feed whose documents never repeat (Wazuh's own, with a syslog time in each)
    still repeats its hosts and addresses. The values are compared as marshal writes them,
    which keeps types apart (1, 1.0 and true are equal in Python, not here)."""
    try:  # version 2 writes no back-references, so equal values write equal bytes
        key = marshal.dumps(tuple(map(f.flat.get, spec.ordered)), 2)
    except ValueError:  # nested beyond marshal's limit: read them
        return _entities_read(f, spec)
    known = spec.by_values
    entities = known.get(key)
    if entities is None:
        entities = _entities_read(f, spec)
        if len(key) <= BY_VALUES_MAX_KEY:
            if len(known) >= BY_VALUES_MAX:
                known.clear()
            known[key] = entities
    return entities


def _entities_read(f: Fields, spec: EntitySpec) -> Entities:
    present = f.flat.keys() & spec.paths
    if not present:
        return _NONE
    plan = _plan(spec, present)
    values: list[tuple[str, ...]] = [()] * len(spec.rows)
    for row, paths, limit, ip in plan:
        found = [v for v in f.all(*paths) if v not in NO_NAME]
        if ip:
            values[row] = clean_ips(found)
        else:
            kind = spec.rows[row][0]
            kept = clean_names(found, kind == "users") if kind in _NAMES else found
            values[row] = tuple(kept[:limit] if limit else kept)
    key = tuple(values)
    entities = _ENTITY_CACHE.get(key)
    if entities is None:
        if len(_ENTITY_CACHE) >= 65536:
            _ENTITY_CACHE.clear()
        entities = all_fields_set(
            Entities.model_validate({row[0]: v for row, v in zip(spec.rows, key, strict=True)})
        )
        _ENTITY_CACHE[key] = entities
    return entities


def _plan(spec: EntitySpec, present: set[str]) -> Plan:
    shape = (spec, frozenset(present))
    plan = _PLANS.get(shape)
    if plan is None:
        if len(_PLANS) >= 4096:
            _PLANS.clear()
        plan = tuple(
            (row, tuple(p for p in paths if p in present), limit, ip)
            for row, (_, paths, limit, ip) in enumerate(spec.rows)
            if not present.isdisjoint(paths)
        )
        _PLANS[shape] = plan
    return plan


def ecs_entities(f: Fields) -> Entities:
    computer = f.flat.get(_WINLOG_COMPUTER)  # a Windows event's only: one lookup for the rest
    if computer is not None and _forwarded(computer, f.first("host.name", "host.hostname")):
        return entities_of(f, ECS_FORWARDED_ENTITIES)
    return entities_of(f, ECS_ENTITIES)


def _forwarded(computer: Any, reader: Any) -> bool:
    """Whether a Windows event's own machine is another than the one that read it (a collector
    of Windows Event Forwarding, its events named after itself)."""
    return (
        isinstance(computer, str)
        and isinstance(reader, str)
        and bool(computer)
        and read_host(computer) != read_host(reader)
    )


# --- per-format normalisers ---------------------------------------------------------------------


#: A connection's two ends, as ECS and as Wazuh's Suricata decoder write them.
_ECS_ENDPOINTS = ("source.ip", "destination.ip")
_WAZUH_ENDPOINTS = ("data.src_ip", "data.dest_ip")


def _seen_by(sensor: str, entities: Entities, f: Fields, ends: tuple[str, str]) -> Entities:
    """The alert's entities, with the machine a network sensor saw (`watched_host`). One
    naming no connection is left as it is: its host is whom it was already put on (a dataset
    that placed its IDS alerts, the AIT alert data set's), `host.ip` that machine's."""
    if sensor not in NETWORK_SENSORS:
        return entities
    source, destination = f.first(ends[0]), f.first(ends[1])
    if source is None and destination is None:
        return entities
    return watched_host(entities, source, destination)


def elastic_time(get: Getter) -> datetime:
    """The original event's time when Elastic kept it, else the alert's."""
    value = get("kibana.alert.original_time")
    if value is None:
        return parse_timestamp(get("@timestamp"), "@timestamp")
    return parse_timestamp(value, "kibana.alert.original_time")


def elastic_sensor(f: Fields) -> str:
    """What saw it: the anomaly detector for a machine learning rule's alert (its document is
    the job's anomaly record, whose fields name no module), else the events' module or agent.
    An anomaly and a detection on one host at one time are two sensors agreeing."""
    if f.get("kibana.alert.rule.type") == "machine_learning":
        return "ml"
    return f.first("event.module", "agent.type") or "elastic"


def normalize_elastic(doc: dict[str, Any], f: Fields) -> AlertFields:
    """Elastic Security alerts: `kibana.alert.*` plus ECS; the effective severity and risk win."""
    rule_name = f.first("kibana.alert.rule.name", "rule.name")
    if rule_name is None:
        raise NormalizeError("Elastic alert without kibana.alert.rule.name")
    risk = risk_number(f.get("kibana.alert.risk_score"), "kibana.alert.risk_score")
    severity = severity_name(f.get("kibana.alert.severity"), "kibana.alert.severity")
    tactics, techniques = threat_ids(f.get("kibana.alert.rule.threat"))
    more_tactics, more_techniques = threat_ids(f.get("threat"))
    sensor = elastic_sensor(f).lower()
    return _build(
        doc,
        f,
        source="elastic",
        timestamp=elastic_time(f.get),
        sensor=sensor,
        rule_name=rule_name,
        rule_id=f.first("kibana.alert.rule.rule_id", "kibana.alert.rule.uuid") or rule_name,
        severity=severity,
        risk=risk,
        tactics=tactics + [t for t in more_tactics if t not in tactics],
        techniques=techniques + [t for t in more_techniques if t not in techniques],
        entities=_seen_by(sensor, ecs_entities(f), f, _ECS_ENDPOINTS),
        message=message_text(ELASTIC_MESSAGE, "", f.get),
        suppressed=elastic_folded(f.get),
        building_block=f.get("kibana.alert.building_block_type") is not None,
        critical=asset_criticality(f),
        intel=indicator_matches(f),
    )


#: Elastic's asset criticality levels (its entity analytics' `high_impact`, ...) that make a
#: host or account critical here, as `VIGIE_CRITICAL_ASSETS` and `_IDENTITIES` do.
CRITICAL_IMPACTS = frozenset({"high_impact", "extreme_impact"})
#: Where an alert carries them (Kibana 8.13 wrote `kibana.alert.*.criticality_level`), and
#: the field naming what it rates, as Kibana looks it up.
_CRITICALITY = (
    ("host", ("host.asset.criticality", "kibana.alert.host.criticality_level"), "host.name"),
    ("user", ("user.asset.criticality", "kibana.alert.user.criticality_level"), "user.name"),
)
_CRITICALITY_LEVELS = frozenset(path for _, levels, _ in _CRITICALITY for path in levels)


def asset_criticality(f: Fields) -> tuple[str, ...]:
    """The alert's host and account its SIEM rates high or extreme impact: a SOC that rated its
    assets in Elastic need not list them again for Vigie."""
    if _CRITICALITY_LEVELS.isdisjoint(f.flat):  # most alerts: four lookups, made in C
        return ()
    rated: list[str] = []
    for kind, levels, named in _CRITICALITY:
        level = f.first(*levels)
        if level is None or level.lower().replace(" ", "_") not in CRITICAL_IMPACTS:
            continue
        name = f.first(named)
        if name is not None:  # as entities are read: `-` and `localhost` name nobody
            rated += (f"{kind}:{n}" for n in clean_names([name], accounts=kind == "user"))
    return tuple(rated)


#: Where Elastic writes what an indicator match rule matched: one enrichment a match, with
#: the value, the field it was in, the indicator and the feed listing it (ECS
#: `threat.enrichments`).
_ENRICHMENTS = "threat.enrichments"
#: Indicator matches kept an alert, and characters of a matched value: a match on a field of
#: many values lists each.
INTEL_MAX, INTEL_CHARS = 10, 120


def indicator_matches(f: Fields) -> tuple[str, ...]:
    """The alert's values a threat-intelligence feed lists, as Elastic's indicator match rules
    record them: `203.0.113.9 in source.ip, listed by AbuseCH (confidence High)`."""
    enrichments = f.flat.get(_ENRICHMENTS)
    if enrichments is None:  # most alerts: one lookup
        return ()
    found: list[str] = []
    for enrichment in enrichments if isinstance(enrichments, list) else [enrichments]:
        if type(enrichment) is dict:
            match = _indicator_match(Fields(enrichment))
            if match is not None and match not in found:
                found.append(match)
    return tuple(found[:INTEL_MAX])


def _indicator_match(e: Fields) -> str | None:
    atomic = e.first("matched.atomic")
    if atomic is None:
        return None
    text = f"{atomic[:INTEL_CHARS]} in {e.first('matched.field') or 'a field'}"
    feed = e.first("feed.name", "indicator.provider")
    confidence = e.first("indicator.confidence")
    text += f", listed by {feed[:INTEL_CHARS]}" if feed else ", listed by a feed"
    return text + (f" (confidence {confidence[:20]})" if confidence else "")


_VIRUSTOTAL = "data.virustotal."


def virustotal_match(f: Fields) -> tuple[str, ...]:
    """A file Wazuh's VirusTotal integration found flagged (`data.virustotal.malicious`):
    `<sha1> (/tmp/x), flagged by 51 of 60 VirusTotal engines`."""
    malicious = f.flat.get(_VIRUSTOTAL + "malicious")
    if malicious is None or str(malicious).strip() != "1":  # most alerts: one lookup
        return ()
    sha1 = f.first(_VIRUSTOTAL + "sha1", _VIRUSTOTAL + "source.sha1") or "a file"
    path = f.first(_VIRUSTOTAL + "source.file")
    positives, total = f.first(_VIRUSTOTAL + "positives"), f.first(_VIRUSTOTAL + "total")
    text = sha1[:INTEL_CHARS] + (f" ({path[:INTEL_CHARS]})" if path else "")
    engines = f"{positives[:6]} of {total[:6]}" if positives and total else "its"
    return (f"{text}, flagged by {engines} VirusTotal engines",)


_SUPPRESSION = "kibana.alert.suppression."
_THRESHOLD = "kibana.alert.threshold_result."


def elastic_folded(get: Getter) -> Suppressed | None:
    """The events beyond its own an Elastic alert stands for: a threshold rule's alert is one
    for the `count` events that crossed it, and alert suppression counts the rule's later
    matches it folded in. Both, when a threshold rule suppresses: each suppressed alert counts
    one (its own events are not written), so their sum is at least what happened."""
    parts = [p for p in (threshold_events(get), elastic_suppression(get)) if p is not None]
    if len(parts) < 2:
        return parts[0] if parts else None
    firsts = [p.first_seen for p in parts if p.first_seen is not None]
    lasts = [p.last_seen for p in parts if p.last_seen is not None]
    return Suppressed(
        count=sum(p.count for p in parts),
        first_seen=min(firsts, default=None),
        last_seen=max(lasts, default=None),
        in_place=any(p.in_place for p in parts),
    )


def threshold_events(get: Getter) -> Suppressed | None:
    """A threshold rule writes one alert for the events of one group of values that reached
    its threshold (500 failed logons from one address): `count` of them, the first at
    `from`, the last at the alert's time. None for other rules, or a count of one."""
    count = get(_THRESHOLD + "count")
    if count is None:
        return None
    count = _whole(count, _THRESHOLD + "count")
    if count <= 1:
        return None
    start = get(_THRESHOLD + "from")
    return Suppressed(
        count=count - 1,
        first_seen=None if start is None else parse_timestamp(start, _THRESHOLD + "from"),
        in_place=False,
    )


def elastic_suppression(get: Getter) -> Suppressed | None:
    """The rule's other matches Elastic's alert suppression folded into this alert (it writes
    one alert for matches on the same values within its window and counts the rest), and when
    the first and last of them were seen; None when it folded none. Kibana updates the alert
    in place as more come: this is the count when the alert was read."""
    count = get(_SUPPRESSION + "docs_count")
    if count is None:
        return None
    count = _whole(count, _SUPPRESSION + "docs_count")
    if count == 0:
        return None
    start, end = (get(_SUPPRESSION + edge) for edge in ("start", "end"))
    return Suppressed(
        count=count,
        first_seen=None if start is None else parse_timestamp(start, _SUPPRESSION + "start"),
        last_seen=None if end is None else parse_timestamp(end, _SUPPRESSION + "end"),
    )


def _whole(count: Any, field: str) -> int:
    """A count of at least 0, as a number or as text: "57", or 57.0 as exports that write
    every number as a float do."""
    if (isinstance(count, str) and count.isdigit()) or (
        isinstance(count, float) and count.is_integer()
    ):
        count = int(count)
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise NormalizeError(f"{field} must be a whole number of at least 0, got {count!r:.40}")
    return count


ELASTIC_MESSAGE = ("kibana.alert.reason", "message")
MESSAGE_CHARS = 4096


def elastic_message(f: Fields, rule_name: str) -> MessageOf:
    """The alert's reason, else the event's message: neither feeds another field."""
    return partial(message_text, ELASTIC_MESSAGE, "")


def message_text(paths: tuple[str, ...], fallback: str, get: Getter) -> str:
    """An alert's message: the first of these fields holding text (as `Fields.first` reads
    them, written out again here: a repeat has no `Fields`, only its masked values), else the
    fallback. A repeat reads it from its masked fields with the same code."""
    for path in paths:
        value = get(path)
        if type(value) is str:
            text = value.strip()
            if text:
                return text[:MESSAGE_CHARS]
        elif value is not None:
            found = strings(value)
            if found:
                return found[0][:MESSAGE_CHARS]
    return fallback[:MESSAGE_CHARS]


def wazuh_severity(level: Any) -> tuple[Severity, float]:
    """Wazuh `rule.level` 0-15 onto the Elastic severity bands (40/70/90 risk thresholds)."""
    if isinstance(level, bool) or not isinstance(level, int | float | str):
        raise NormalizeError("rule.level must be a number 0-15")
    try:
        lv = int(level)
    except ValueError:
        raise NormalizeError(f"rule.level is not a number: {str(level)[:20]!r}") from None
    if not 0 <= lv <= 15:
        raise NormalizeError(f"rule.level must be within 0-15, got {lv}")
    if lv <= 3:
        return Severity.low, 10.0 + lv * 7
    if lv <= 7:
        return Severity.medium, 40.0 + (lv - 4) * 7
    if lv <= 11:
        return Severity.high, 70.0 + (lv - 8) * 5
    return Severity.critical, 90.0 + (lv - 12) * 3


#: Where Wazuh's Suricata alerts keep Suricata's rating: the signature's, then the class's.
_WAZUH_SURICATA = ("data.alert.metadata.signature_severity", "data.alert.severity")


def _with_suricata_rating(f: Fields, severity: Severity, risk: float) -> tuple[Severity, float]:
    """Suricata's rating of its alert where it is above the Wazuh rule's: Wazuh's ruleset gives
    every Suricata alert one level (86601, level 3: low), a trojan's beacon and a policy
    notice alike. A level raised by a local rule for a signature stays."""
    theirs = suricata_severity(f.first(_WAZUH_SURICATA[0]), f.get(_WAZUH_SURICATA[1]))
    if theirs is None or SEVERITY_RANK[theirs] <= SEVERITY_RANK[severity]:
        return severity, risk
    return theirs, float(SEVERITY_RISK[theirs])


def wazuh_time(get: Getter) -> datetime:
    value = get("timestamp")
    return parse_timestamp(value if value is not None else get("@timestamp"), "timestamp")


def normalize_wazuh(doc: dict[str, Any], f: Fields) -> AlertFields:
    """Wazuh alerts: `rule.*`, `agent.*`, decoder fields under `data.*` (Suricata included)."""
    groups = f.all("rule.groups")
    sensor = "suricata" if "suricata" in groups else "wazuh"
    severity, risk = wazuh_severity(f.get("rule.level"))
    if sensor == "suricata":
        severity, risk = _with_suricata_rating(f, severity, risk)
    rule_name = f.first("rule.description") or "(no description)"
    tactics = [t for t in (tactic_id(x) for x in f.all("rule.mitre.tactic")) if t]
    techniques = [t for t in f.all("rule.mitre.id") if is_technique_id(t)]
    entities = _seen_by(sensor, entities_of(f, _wazuh_entities(f)), f, _WAZUH_ENDPOINTS)
    return _build(
        doc,
        f,
        source="wazuh",
        timestamp=wazuh_time(f.get),
        sensor=sensor,
        rule_name=rule_name,
        rule_id=f.first("rule.id") or rule_name,
        severity=severity,
        risk=risk,
        tactics=tactics,
        techniques=techniques,
        entities=entities,
        message=wazuh_message(f, rule_name)(f.get),
        intel=virustotal_match(f),
        lineage=WAZUH_LINEAGE,
        posture=_posture(f, groups),
    )


#: Wazuh's rule groups of findings about a host's state, not events on it: its vulnerability
#: detector (a CVE of an installed package, level 13 when critical), its configuration
#: assessment (a CIS check failed) and the OpenSCAP and CIS-CAT wodles'. A scan reports on
#: every agent within minutes: linked with detections, it made one incident of every host.
POSTURE_GROUPS = frozenset({"vulnerability-detector", "sca", "oscap", "ciscat"})
_SCA_CHECK = "data.sca.check."


def _posture(f: Fields, groups: list[str]) -> bool:
    """A finding about the host's state (`POSTURE_GROUPS`), but for a configuration check
    that passed before and fails now (auditd turned off, root logins allowed: Wazuh raises
    it as a change, under a rule of its own): an event on the host, as an intruder covering
    tracks makes, linked and scored as a detection."""
    if POSTURE_GROUPS.isdisjoint(groups):
        return False
    previous = f.first(_SCA_CHECK + "previous_result")
    return previous != "passed" or f.first(_SCA_CHECK + "result") != "failed"


def _wazuh_entities(f: Fields) -> EntitySpec:
    """Where a Wazuh alert's host is: its agent's name, but for what the manager decodes itself
    and for Windows events forwarded to a collector's agent (Windows Event Forwarding: the
    event's computer is another machine than the agent's)."""
    if f.get("agent.id") == MANAGER_AGENT_ID:
        return WAZUH_MANAGER_ENTITIES
    computer = f.flat.get(_WIN_COMPUTER)  # a Windows event's only
    if computer is not None and _forwarded(computer, f.get("agent.name")):
        return WAZUH_FORWARDED_ENTITIES
    return WAZUH_ENTITIES


def wazuh_message(f: Fields, rule_name: str) -> MessageOf:
    """The syslog line, else the Suricata signature, else the rule's description."""
    fallback = f.first("data.alert.signature") or rule_name
    return partial(message_text, ("full_log",), fallback)


def ecs_time(get: Getter) -> datetime:
    return parse_timestamp(get("@timestamp"), "@timestamp")


def normalize_ecs(doc: dict[str, Any], f: Fields) -> AlertFields:
    """Generic ECS: `@timestamp`, `event.*`, `rule.*`, `host.*`, `user.*`, `source.*`, ..."""
    rule_name = f.first("rule.name", "event.action", "message")
    if rule_name is None:
        raise NormalizeError("ECS alert without rule.name, event.action or message")
    risk = risk_number(f.get("event.risk_score"), "event.risk_score")
    sensor = (f.first("event.module", "observer.type", "agent.type") or "ecs").lower()
    tactics, techniques = threat_ids(f.get("threat"))
    return _build(
        doc,
        f,
        source="ecs",
        timestamp=ecs_time(f.get),
        sensor=sensor,
        rule_name=rule_name[:512],
        rule_id=f.first("rule.id", "rule.uuid") or rule_name[:512],
        severity=ecs_severity(f, sensor),
        risk=risk,
        tactics=tactics,
        techniques=techniques,
        entities=_seen_by(sensor, ecs_entities(f), f, _ECS_ENDPOINTS),
        message=message_text(("message",), "", f.get) or ecs_description(f)[:MESSAGE_CHARS],
        critical=asset_criticality(f),
        intel=indicator_matches(f),
    )


#: Where Suricata's alerts in Elasticsearch keep the signature's rating: Elastic's Suricata
#: integration (its metadata kept whole), Security Onion (its pipeline renames `alert` to `rule`).
_ECS_SIGNATURE_SEVERITY = (
    "suricata.eve.alert.metadata.signature_severity",
    "rule.metadata.signature_severity",
)


def ecs_severity(f: Fields, sensor: str) -> Severity | None:
    """The rule's word (`rule.severity`, an unknown word is bad input); for Suricata's alerts
    Suricata's own rating (Security Onion keeps its priority number in `rule.severity`,
    Elastic's integration moves it to `event.severity`); else Security Onion's
    `event.severity_label`. Another source's number in `rule.severity` means nothing known:
    it is left, not made a dead letter (Security Onion's Suricata alerts all were)."""
    flat = f.flat  # every ECS alert passes here: plain lookups first
    value = flat.get("rule.severity")
    if value is not None and type(value) not in _NUMBER_TYPES:
        return severity_name(value, "rule.severity")
    if sensor == "suricata":
        priority = value if value is not None else flat.get("event.severity")
        found = suricata_severity(f.first(*_ECS_SIGNATURE_SEVERITY), priority)
        if found is not None:
            return found
    if flat.get("event.severity_label") is None:
        return None
    label = f.first("event.severity_label")
    return severity_word(label) if label is not None else None


_NUMBER_TYPES = (int, float)  # as JSON gives them; a boolean is no number here


def ecs_description(f: Fields) -> str:
    """What an ECS alert without a message says: its rule's description, where Elastic's Zeek
    integration moves a notice's message (`msg`: who scanned how many ports of whom)."""
    return f.first("rule.description") or ""


def ecs_message(f: Fields, rule_name: str) -> MessageOf | None:
    """None when the rule is named by the message: repeats of that document are not alike."""
    if f.first("rule.name", "event.action") is None:
        return None
    return partial(message_text, ("message",), ecs_description(f))


def _build(
    doc: dict[str, Any],
    f: Fields,
    *,
    source: str,
    timestamp: datetime,
    sensor: str,
    rule_name: str,
    rule_id: str,
    severity: Severity | None,
    risk: float | None,
    tactics: list[str],
    techniques: list[str],
    entities: Entities,
    message: str,
    suppressed: Suppressed | None = None,
    building_block: bool = False,
    posture: bool = False,
    critical: tuple[str, ...] = (),
    intel: tuple[str, ...] = (),
    lineage: Lineage = ECS_LINEAGE,
) -> AlertFields:
    """Reconcile severity and risk onto one scale; the alert's fields."""
    if severity is None and risk is None:
        severity, risk = Severity.low, 21.0
    elif severity is None:
        severity = severity_for_risk(risk or 0)
    elif risk is None:
        risk = float(SEVERITY_RISK[severity])
    return {
        "id": alert_id(doc, f.get),
        "timestamp": timestamp,
        "source": source,
        "sensor": sys.intern(sensor.lower()[:64]),  # one string per sensor name, not per alert
        "rule_name": rule_name,
        "rule_id": rule_id[:256],
        "severity": severity,
        "risk_score": risk,
        "tactics": tuple(tactics),
        "techniques": tuple(techniques),
        "entities": entities,
        "suppressed": suppressed,
        "building_block": building_block,
        "posture": posture,
        "critical": critical,
        "intel": intel,
        "process_id": process_instance(f, lineage[0]),
        "ancestry": ancestry(f, lineage[1]),
        "message": message[:MESSAGE_CHARS],
        "raw_json": f.raw if f.raw is not None else document_json(doc),
    }


def document_json(doc: Any) -> bytes:
    """The document as its alert keeps it. A lone surrogate in it is bad input: it could be
    neither stored nor shown, and the whole run would fail on it."""
    try:
        return raw_json(doc)
    except UnicodeEncodeError:
        raise NormalizeError("invalid Unicode: a lone surrogate (\\ud800-\\udfff)") from None


ELASTIC = Format(normalize_elastic, elastic_time, elastic_message)
WAZUH = Format(normalize_wazuh, wazuh_time, wazuh_message)
ECS = Format(normalize_ecs, ecs_time, ecs_message)
_REPEATS = Repeats(normalise_fully, alert_id, document_json)

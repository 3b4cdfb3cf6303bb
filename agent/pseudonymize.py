"""Reversible, per-run pseudonymisation of entities before anything leaves for an LLM.

Host names, user names, IP addresses, e-mail addresses and the domains of hosts' FQDNs become
stable tokens (HOST_1, USER_2, IP_3, EMAIL_1, DOMAIN_1) in structured fields *and* inside free
text, in any case; the analyst sees them restored. One `Pseudonymizer` lives for one run, so
the same value gets the same token across incidents.
"""

from __future__ import annotations

import ipaddress
import re
import threading
from collections.abc import Callable, Iterable
from typing import Protocol

from agent.models import Alert

_IPV4 = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?!\.?\d)")
#: What may be an IPv6 address, as written (`fe80::1%eth0`, `::ffff:10.0.0.5`): two colons at
#: least; `_ipv6` keeps what `ipaddress` reads as one. A time of day (`10:00:00`) is none.
_IPV6_LIKE = re.compile(
    r"(?<![\w:.%])(?=[0-9a-fA-F.]*:[0-9a-fA-F.]*:)[0-9a-fA-F:.]++(?:%[\w-]++)?+(?![\w%])"
)
#: A hardware address (`00:1a:2b:3c:4d:5e`, Windows' `00-1A-2B-3C-4D-5E`): a device, and its owner.
_MAC = re.compile(r"(?<![\w:-])[0-9a-fA-F]{2}([:-])(?:[0-9a-fA-F]{2}\1){4}[0-9a-fA-F]{2}(?![\w:-])")
_EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]++@[\w-]+(?:\.[\w-]+)+")
TOKEN = re.compile(r"\b(?:HOST|USER|IP|EMAIL|DOMAIN|MAC)_\d+\b")
#: A name as log lines write it: not the brackets, quotes or punctuation around it.
_V = r"[^\s\"'`;,()\[\]<>]+"
#: A profile directory names its account: Windows' `C:\Users\jdoe\Downloads` (in any case,
#: backslashes doubled as JSON writes them, or forward slashes), Linux's `/home/jdoe`, macOS's
#: `/Users/jdoe`. Alerts write these paths where no field names the account (a file written
#: into a profile by `SYSTEM`).
_PROFILE_DIR = r"(?:\b[A-Za-z]:[\\/]+(?i:users)[\\/]+|(?<![\w.-])/(?:home|Users)/)"
#: A path component: not a separator, nor what ends a name in a log line.
_P = r"[^\\/\s\"'`;,()\[\]<>%*]+"
_PROFILE = re.compile(rf"(?P<dir>{_PROFILE_DIR})(?P<name>{_P})")
#: How common log lines name an account (each group a name). OpenSSH and PAM ("for invalid user
#: X", "Accepted password for X from 1.2.3.4 port 22", "session opened for user root by
#: X(uid=1000)", "authenticating user X"), su ("(to root) X on pts/0"), sudo ("sudo: X :
#: TTY=..."), shadow-utils ("new user: name=X", "add 'X' to group", "password changed for X"),
#: systemd ("Session 12 of User X"), login ("FAILED LOGIN 1 FROM tty1 FOR X"), Dovecot
#: ("pam(X,1.2.3.4)", "imap(X)"), vsftpd ("[X] FAIL LOGIN"), ProFTPD ("USER X:"), cron ("(X)
#: CMD"), pkexec, polkit ("unix-user:X"), Apache's access log ("1.2.3.4 - X [07/Dec/2026:"),
#: key=value pairs (auditd's acct="X" and AUID="X", PAM's ruser=X, CEF's suser=X, Dovecot's
#: user=<X>, Postfix's sasl_username=X), Windows event text ("Account Name: X", "Logon
#: Account: X", Sysmon's "User: CORP\\X").
_NAMED_USER = re.compile(
    rf"\b(?:for|[Ii]nvalid|authenticating|[Dd]isconnected from) user '?({_V})"
    rf"|\bfor ({_V}) from \S+ port \d"
    rf"|\bUser ({_V}) from \S+ not allowed"
    rf"|\bby ({_V})\(uid=\d+\)"
    rf"|\(to ({_V})\) ({_V}) on "
    rf"|\bsu for ({_V}) by ({_V})"
    rf"|\bsudo(?:\[\d+\])?: +({_V}) : "
    rf"|\bnew user: name=({_V})"
    rf"|\b(?:add|change|lock|unlock|delete|modify) user '({_V})'"
    rf"|\badd '({_V})' to (?:shadow )?group|\bowned by '({_V})'"
    rf"|\bpassword changed for ({_V})"
    rf"|\b[Ss]ession \S+ of [Uu]ser ({_V})"
    rf"|\bFAILED LOGIN .{{0,60}}? FOR '?({_V})"
    rf"|\b(?:pam|passwd-file|passwd|shadow|ldap|sql|checkpassword)\(({_V}),"
    rf"|\b(?:imap|pop3|lmtp|submission|managesieve)\(({_V})\)"
    rf"|\[({_V})\] (?:OK|FAIL) |\bUSER ({_V}): "
    rf"|\(({_V})\) CMD |\bpkexec(?:\[\d+\])?: ({_V}): |\bunix-user:({_V})"
    rf"|\S \S+ ({_V}) \[\d{{1,2}}/\w{{3}}/\d{{4}}:"
    rf"|\b(?:user|USER|[Uu]ser[Nn]ame|acct|ruser|logname|suser|duser|sasl_username"
    rf"|TargetUserName|SubjectUserName|(?:A|E|S|FS|O)?UID)=[\"<]?({_V})"
    rf"|\b(?:Account Name|Logon Account|(?:Parent|Target|Source)?User):\s+({_V})"
    rf"|{_PROFILE_DIR}({_P})"
)
#: And a host: PAM's rhost=, CEF's shost= and dhost=, hostname=, sshd's "from X port 22",
#: Postfix's "X[1.2.3.4]", Samba's "workstation [X]", Windows' "Workstation Name:", "Source
#: Workstation:", "Caller Computer Name:".
_NAMED_HOST = re.compile(
    rf"\b(?:rhost|shost|dhost|[Hh]ost[Nn]ame)=\"?({_V})"
    rf"|\bfrom ({_V}) port \d"
    rf"|(?<![\w.-])([A-Za-z][\w.-]*+)\[(?:\d{{1,3}}\.){{3}}\d{{1,3}}\]"
    rf"|\bworkstation \[({_V})\]"
    rf"|\b(?:Workstation Name|Source Workstation|Computer(?: ?Name)?):\s+({_V})"
)
#: Accounts written with their Windows domain: Windows event text (`Account Name: X Account
#: Domain: CORP`) and Samba (`user [CORP]\\[X]`), so `CORP` is masked too.
_ACCOUNTS = (
    re.compile(rf"\bAccount Name:\s+(?P<name>{_V})\s+Account Domain:\s+(?P<domain>{_V})"),
    re.compile(rf"\buser \[(?P<domain>{_V})\]\\\[(?P<name>{_V})\]"),
)
#: A host's token followed by a DNS suffix: hosts are read by machine name, and a log line
#: names `ws-fin-07.corp.example`; the suffix is the organisation's domain, masked as such. Two
#: labels at least (`HOST_1.log` is a file).
_HOST_SUFFIX = re.compile(r"\b(HOST_\d+)\.([A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+)(?![\w-])")
#: Values these patterns find that name nobody: masking them would hide words from the model.
_NOBODY = frozenset({"unknown", "none", "null", "n/a", "nobody", "invalid", "localhost"})
#: Profile directories that are nobody's: Windows' `Public`, `Default` (`Default User`, `All
#: Users`: links to it), the setup's `defaultuser0`, macOS's `Shared`.
_SHARED_PROFILES = frozenset({"public", "default", "all", "defaultuser0", "shared"})


def _ipv6(candidate: str) -> str | None:
    """The IPv6 address a candidate is, as `ipaddress` writes it (as the normaliser keeps a
    field's: one token for `2001:DB8:0::1` and `2001:db8::1`), or its IPv4 address if it is one
    written as IPv6 (Windows' `::ffff:10.0.0.5`); None for a time, `::`, `a::b` in code."""
    address, zone, scope = candidate.partition("%")
    if not any(c.isdigit() for c in address) and address.count(":") - address.count("::") < 3:
        return None
    try:
        parsed = ipaddress.IPv6Address(address)
    except ValueError:
        return None
    mapped = parsed.ipv4_mapped
    return str(mapped) if mapped is not None else f"{parsed}{zone}{scope}"


def is_address(value: str) -> bool:
    """Whether the value is an IP address (names are learnt; addresses are found anywhere)."""
    return bool(_IPV4.fullmatch(value)) or (
        _IPV6_LIKE.fullmatch(value) is not None and _ipv6(value) is not None
    )


def sub_addresses(text: str, replace: Callable[[str], str]) -> str:
    """Each IP address in the text replaced (given the address: an IPv4 one written as IPv6
    is given as IPv4)."""

    def ipv6(m: re.Match[str]) -> str:
        found = m.group(0)
        written = found.rstrip(".")  # a sentence's full stop
        address = _ipv6(written)
        return found if address is None else replace(address) + found[len(written) :]

    return _IPV4.sub(lambda m: replace(m.group(0)), _IPV6_LIKE.sub(ipv6, text))


def _short_host(host: str) -> str | None:
    """A host name's first label (`web-01` of `web-01.corp.example`); None for an address."""
    if "." not in host or _IPV4.fullmatch(host):
        return None
    return host.split(".", 1)[0] or None


def _host_domain(host: str) -> str | None:
    """`corp.example` of `web-01.corp.example`; None for an address or a one-label suffix
    (`pc.local`, `pc.lan`: nobody's in particular)."""
    if _IPV4.fullmatch(host) or host.count(".") < 2:
        return None
    return host.split(".", 1)[1]


def _bare_user(user: str) -> str | None:
    """The account of `CORP\\jdoe` or `jdoe@corp.example`; None when there is no domain."""
    if "\\" in user:
        return user.rsplit("\\", 1)[1] or None
    if "@" in user:
        return user.split("@", 1)[0] or None
    return None


def named_in(text: str) -> tuple[list[str], list[str]]:
    """Hosts and accounts a log line names where common formats put them (a sshd line names
    the account tried, when no field does), without addresses (masked wherever they are)."""
    accounts = [
        f"{m['domain']}\\{m['name']}"
        for pattern in _ACCOUNTS
        for m in pattern.finditer(text)
        if len(m["name"]) >= 2 and len(m["domain"]) >= 2  # Windows writes "-" for none
    ]
    return _names(_NAMED_HOST, text), _names(_NAMED_USER, text) + accounts


def _names(pattern: re.Pattern[str], text: str) -> list[str]:
    found = []
    for m in pattern.finditer(text):
        for value in (v.rstrip(".:") for v in m.groups() if v is not None):
            if (
                len(value) >= 2
                and value.casefold() not in _NOBODY
                and value.casefold() not in _SHARED_PROFILES
                and not value.isdigit()
                and not is_address(value)
            ):
                found.append(value)
    return found


def _any_of(values: Iterable[str], not_after: str, not_before: str) -> re.Pattern[str] | None:
    """Any of these values (the longest first), in any case, between characters that are not
    `not_after` and not `not_before`; None when there is none to find."""
    ordered = sorted((v for v in values if len(v) >= 2), key=len, reverse=True)
    if not ordered:
        return None
    alts = "|".join(map(re.escape, ordered))
    return re.compile(rf"(?<!{not_after})(?:{alts})(?!{not_before})", re.IGNORECASE)


class Masker(Protocol):
    """What prompts need: pseudonymisation on (`Pseudonymizer`) or off (values pass through)."""

    def register(self, alerts: Iterable[Alert]) -> None: ...

    def register_names(self, hosts: Iterable[str], users: Iterable[str]) -> None: ...

    def mask(self, text: str) -> str: ...

    def unmask(self, text: str) -> str: ...

    def is_token(self, value: str) -> bool: ...


class Passthrough:
    """Pseudonymisation off: values pass through, and every value counts as known."""

    def register(self, alerts: Iterable[Alert]) -> None:
        return None

    def register_names(self, hosts: Iterable[str], users: Iterable[str]) -> None:
        return None

    def mask(self, text: str) -> str:
        return text

    def unmask(self, text: str) -> str:
        return text

    def is_token(self, value: str) -> bool:
        return True


class Pseudonymizer:
    def __init__(self) -> None:
        self._fwd: dict[str, str] = {}
        self._rev: dict[str, str] = {}
        self._counts: dict[str, int] = {}
        self._aliases: set[str] = set()
        self._domains: set[str] = set()
        self._domain_pattern: re.Pattern[str] | None = None
        self._pattern: re.Pattern[str] | None = None
        self._lock = threading.Lock()

    def token(self, kind: str, value: str) -> str:
        """One token per value whatever its case: sensors and log lines spell a Windows host
        or account as they please ("ws-fin-07", "WS-FIN-07"); the first spelling is restored."""
        key = value.casefold()
        with self._lock:
            existing = self._fwd.get(key)
            if existing is not None:
                return existing
            n = self._counts.get(kind, 0) + 1
            self._counts[kind] = n
            tok = f"{kind}_{n}"
            self._fwd[key] = tok
            self._rev[tok] = value
            self._pattern = None
            return tok

    def register(self, alerts: Iterable[Alert]) -> None:
        """Learn every host, user and IP of these alerts, and the hosts, users and domains
        their messages name."""
        messages: dict[str, None] = {}  # in order: tokens are numbered as values are met
        for a in alerts:
            self.register_names(a.entities.hosts, a.entities.users)
            for ip in a.entities.ips:
                self.token("IP", ip)
            messages[a.message] = None
        for message in messages:  # an incident's repeats share a few messages
            self.register_names(*named_in(message))
        for message in messages:  # the domains their hosts are written with, before any text
            self._learn_host_domains(message)  # is masked: each text masks them all

    def register_names(self, hosts: Iterable[str], users: Iterable[str]) -> None:
        """Learn hosts and users named beyond the alerts at hand: an extended incident's groups
        and links also name those of its earlier runs, whose alerts this run does not hold.
        (IP and e-mail addresses need no learning: their patterns find them in any text.)"""
        for h in hosts:
            self._alias(self.token("HOST", h), _short_host(h))
            self._domain(h)
        for u in users:
            # `CORP\jdoe` is DOMAIN_1\USER_1: one token for jdoe however written, and CORP
            # masked beside anyone.
            domain, _, account = u.rpartition("\\")
            if len(domain) >= 3 and len(account) >= 2:
                self.token("DOMAIN", domain)
                self.token("USER", account)
            else:
                self._alias(self.token("USER", u), _bare_user(u))

    def _alias(self, tok: str, alias: str | None) -> None:
        """Another spelling of a token's value, masked as it: the short name of a host known
        by its FQDN, the account of `CORP\\jdoe` or `jdoe@corp`, as a log line writes them."""
        if alias is None or len(alias) < 3:
            return
        with self._lock:
            if self._fwd.setdefault(alias.casefold(), tok) == tok and alias not in self._aliases:
                self._aliases.add(alias)
                self._pattern = None

    def _domain(self, host: str) -> None:
        """The domain of a host known by its FQDN (`corp.example` of `web-01.corp.example`):
        the organisation's own, named in URLs and in other hosts' names too."""
        domain = _host_domain(host)
        if domain is not None:
            self._learn_domain(domain)

    def _learn_domain(self, domain: str) -> str:
        known = self._fwd.get(domain.casefold())
        if known is not None:
            return known
        tok = self.token("DOMAIN", domain)
        with self._lock:
            self._domains.add(domain)
            self._domain_pattern = None
        return tok

    def _learn_host_domains(self, text: str) -> None:
        """The domains a text writes after a known host (`ws-fin-07.corp.example`)."""
        pattern = self._known()
        if pattern is not None:
            for m in _HOST_SUFFIX.finditer(pattern.sub(self._known_token, text)):
                self._learn_domain(m.group(2))

    def _host_suffix(self, m: re.Match[str]) -> str:
        return f"{m.group(1)}.{self._learn_domain(m.group(2))}"

    def _in_domains(self) -> re.Pattern[str] | None:
        """Domains within any name, as a name's suffix too, but not a longer domain's start."""
        with self._lock:
            if self._domain_pattern is None:
                self._domain_pattern = _any_of(self._domains, r"[\w-]", r"[\w-]|\.\w")
            return self._domain_pattern

    def _known(self) -> re.Pattern[str] | None:
        """Known values and their aliases as whole names (domains: see `_in_domains`)."""
        with self._lock:
            if self._pattern is None:
                names = {*self._rev.values(), *self._aliases} - self._domains
                self._pattern = _any_of(names, r"[\w.-]", r"[\w-]")
            return self._pattern

    def mask(self, text: str) -> str:
        """Known values, any address (IP, e-mail, hardware) and the account of any profile
        directory in the text become tokens."""
        text = _EMAIL.sub(self._email, text)
        text = _PROFILE.sub(self._profile, text)
        text = _MAC.sub(lambda m: self.token("MAC", m.group(0)), text)
        text = sub_addresses(text, lambda address: self.token("IP", address))
        pattern = self._known()
        if pattern is not None:
            text = _HOST_SUFFIX.sub(self._host_suffix, pattern.sub(self._known_token, text))
        domains = self._in_domains()  # then within names nobody registered (`dc02.corp.example`)
        if domains is not None:
            text = domains.sub(self._known_token, text)
        return text

    def _email(self, m: re.Match[str]) -> str:
        """A known account's principal name (`jdoe@corp.example`, as Entra ID and Office 365
        write the account an alert names `jdoe`) is `USER_1@DOMAIN_1`: one person to the
        model, and the domain masked wherever it is; any other address an `EMAIL` token."""
        address = m.group(0)
        account, _, domain = address.rpartition("@")
        known = self._fwd.get(account.casefold())
        if known is not None and known.startswith("USER_"):
            return f"{known}@{self._learn_domain(domain)}"
        return self.token("EMAIL", address)

    def _profile(self, m: re.Match[str]) -> str:
        """A profile directory's account as the account's token (`C:\\Users\\USER_1`)."""
        name = m["name"]
        if len(name) < 2 or name.casefold() in _SHARED_PROFILES or TOKEN.fullmatch(name):
            return m.group(0)
        return m["dir"] + self.token("USER", name)

    def _known_token(self, m: re.Match[str]) -> str:
        found = m.group(0)
        return self._fwd.get(found.casefold()) or self.token("HOST", found)  # never left raw

    def unmask(self, text: str) -> str:
        return TOKEN.sub(lambda m: self._rev.get(m.group(0), m.group(0)), text)

    def is_token(self, value: str) -> bool:
        return value in self._rev

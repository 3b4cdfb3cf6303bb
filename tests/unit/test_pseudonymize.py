"""What leaves for a model: names a log line holds where no field does, and what is no name.

The lines are written as the programs write them (OpenSSH, PAM, shadow-utils, systemd,
Dovecot, Postfix, vsftpd, ProFTPD, Samba, Apache, cron, polkit, auditd, Windows event text):
Wazuh's `full_log` carries them as they came, and a model reads the first 300 characters.
"""

from __future__ import annotations

import pytest

from agent.pseudonymize import TOKEN, Pseudonymizer, named_in

#: (line, what must not leave raw). `jdoe` is a person, `WS-FIN-07` a workstation, `ACME` a
#: Windows domain, the others remote hosts.
NAMED_ONLY_IN_TEXT = [
    ("sshd[7]: Connection closed by authenticating user jdoe 10.0.0.5 port 5 [preauth]", ["jdoe"]),
    ("sshd[7]: Disconnected from user jdoe 10.0.0.5 port 50022", ["jdoe"]),
    ("sshd[7]: Disconnected from authenticating user jdoe 10.0.0.5 port 5 [preauth]", ["jdoe"]),
    ("sshd[7]: User jdoe from 10.0.0.5 not allowed because not listed in AllowUsers", ["jdoe"]),
    ("sshd[7]: Failed password for root from kali.evil.test port 22 ssh2", ["kali.evil.test"]),
    ("sshd[7]: Invalid user oracle from 10.0.0.5 port 4242", ["oracle"]),
    ("su: pam_unix(su:session): session opened for user root by jdoe(uid=1000)", ["jdoe"]),
    ("su: pam_unix(su-l:session): session opened for user root(uid=0) by jdoe(uid=1000)", ["jdoe"]),
    ("su[9]: FAILED SU (to root) jdoe on pts/0", ["jdoe"]),
    ("su[9]: (to root) jdoe on pts/1", ["jdoe"]),
    ("su[9]: Successful su for root by jdoe", ["jdoe"]),
    (
        "useradd[1]: new user: name=jdoe, UID=1001, GID=1001, home=/home/jdoe, shell=/bin/sh",
        ["jdoe"],
    ),
    ("usermod[1]: add 'jdoe' to group 'sudo'", ["jdoe"]),
    ("usermod[1]: add 'jdoe' to shadow group 'sudo'", ["jdoe"]),
    ("usermod[1]: change user 'jdoe' password", ["jdoe"]),
    ("usermod[1]: lock user 'jdoe' password", ["jdoe"]),
    ("userdel[1]: delete user 'jdoe'", ["jdoe"]),
    ("userdel[1]: removed group 'jdoe' owned by 'jdoe'", ["jdoe"]),
    ("passwd[1]: pam_unix(passwd:chauthtok): password changed for jdoe", ["jdoe"]),
    ("systemd-logind[8]: New session 12 of user jdoe.", ["jdoe"]),
    ("systemd[1]: Started session-12.scope - Session 12 of User jdoe.", ["jdoe"]),
    ("login[9]: FAILED LOGIN 1 FROM tty1 FOR jdoe, Authentication failure", ["jdoe"]),
    ("login[9]: FAILED LOGIN (1) on '/dev/tty1' FOR 'jdoe', Authentication failure", ["jdoe"]),
    ("dovecot: imap-login: Login: user=<jdoe>, method=PLAIN, rip=10.0.0.5, lip=10.0.0.1", ["jdoe"]),
    ("dovecot: auth: pam(jdoe,10.0.0.5,<Ab1>): pam_authenticate() failed", ["jdoe"]),
    ("dovecot: auth: passwd-file(jdoe,10.0.0.5): unknown user", ["jdoe"]),
    ("dovecot: imap(jdoe)<1><Ab1>: Disconnected: Logged out in=10 out=20", ["jdoe"]),
    ("postfix/smtpd[1]: connect from mx.partner.test[10.0.0.5]", ["mx.partner.test"]),
    ("postfix/smtpd[1]: warning: unknown[10.0.0.5]: SASL LOGIN authentication failed", []),
    (
        "postfix/smtpd[1]: 4F2: client=mx.partner.test[10.0.0.5], sasl_username=jdoe",
        ["jdoe", "mx.partner.test"],
    ),
    ('vsftpd[1]: [jdoe] FAIL LOGIN: Client "10.0.0.5"', ["jdoe"]),
    ("proftpd[1]: host (10.0.0.5[10.0.0.5]) - USER jdoe: no such user found", ["jdoe"]),
    (
        "An account was successfully logged on. Subject: Account Name: WS-FIN-07$ Account "
        "Domain: ACME New Logon: Account Name: jdoe Account Domain: ACME Workstation Name: "
        "WS-FIN-07",
        ["jdoe", "WS-FIN-07", "ACME"],
    ),
    (
        "The computer attempted to validate the credentials for an account. Logon Account: "
        "jdoe Source Workstation: WS-FIN-07 Error Code: 0xc000006a",
        ["jdoe", "WS-FIN-07"],
    ),
    (
        "A user account was locked out. Account Name: jdoe Additional Information: Caller "
        "Computer Name: WS-FIN-07",
        ["jdoe", "WS-FIN-07"],
    ),
    ("Process Create: Image: C:\\Windows\\System32\\cmd.exe User: ACME\\jdoe", ["jdoe", "ACME"]),
    (
        "type=USER_AUTH msg=audit(1:2): pid=1 uid=0 auid=1000 msg='op=PAM:authentication "
        'acct="jdoe" exe="/usr/bin/su" hostname=ws-fin-07 res=success\' UID="root" AUID="jdoe"',
        ["jdoe", "ws-fin-07"],
    ),
    ('10.0.0.5 - jdoe [07/Dec/2026:10:00:00 +0000] "GET /admin HTTP/1.1" 401 381', ["jdoe"]),
    ("CRON[1]: (jdoe) CMD (/home/jdoe/backup.sh)", ["jdoe"]),
    ("pkexec[1]: jdoe: Executing command [USER=root] [TTY=/dev/pts/0] [CWD=/home/jdoe]", ["jdoe"]),
    (
        "polkitd[1]: Operator of unix-session:3 successfully authenticated as unix-user:jdoe",
        ["jdoe"],
    ),
    (
        "smbd[1]: Auth: [SMB2,(null)] user [ACME]\\[jdoe] at [Mon, 07 Dec 2026] with [NTLMv2] "
        "status [NT_STATUS_WRONG_PASSWORD] workstation [WS-FIN-07] remote host [ipv4:10.0.0.5:5]",
        ["jdoe", "WS-FIN-07", "ACME"],
    ),
]


def masked(line: str) -> tuple[Pseudonymizer, str]:
    """The line as a model reads it, when no field named anybody (as the analyst registers an
    incident's alerts: the names its messages hold, then the text)."""
    p = Pseudonymizer()
    p.register_names(*named_in(line))
    return p, p.mask(line)


@pytest.mark.parametrize(("line", "secrets"), NAMED_ONLY_IN_TEXT)
def test_names_written_only_in_a_log_line_do_not_leave_raw(line: str, secrets: list[str]) -> None:
    """37 of these 42 lines sent an account or a host as it was: only some formats were known."""
    p, out = masked(line)
    for secret in secrets:
        assert secret.casefold() not in out.casefold(), out
    # The analyst reads the line as it came (an account with its domain, once known so).
    assert p.unmask(out).replace("ACME\\", "") == line.replace("ACME\\", "")


def test_a_profile_directory_s_account_does_not_leave_raw() -> None:
    """A file written into a profile names its account in its path alone (Sysmon's event 11
    by `SYSTEM`, a path in a link or a factor): Windows' in any case and slash, as JSON
    writes it too, Linux's and macOS's; the account's own token when a field named it. The
    profiles that are nobody's stay, as does a path that only ends in `home`."""
    p = Pseudonymizer()
    p.register_names([], ["jdoe"])
    lines = {
        "TargetFilename: C:\\Users\\JDoe\\AppData\\Roaming\\run.vbs": (
            "TargetFilename: C:\\Users\\USER_1\\AppData\\Roaming\\run.vbs"
        ),
        '{"path": "c:\\\\users\\\\jdoe\\\\x.dll"}': '{"path": "c:\\\\users\\\\USER_1\\\\x.dll"}',
        "file /home/alice/.ssh/authorized_keys": "file /home/USER_2/.ssh/authorized_keys",
        "C:/Users/bob/Downloads/inv.exe by /Users/bob": (
            "C:/Users/USER_3/Downloads/inv.exe by /Users/USER_3"
        ),
    }
    for line, want in lines.items():
        assert p.mask(line) == want
        assert p.unmask(p.mask(line)).casefold() == line.casefold()
    for kept in (
        "C:\\Users\\Public\\Documents\\x.exe",
        "C:\\Users\\Default User\\x",
        "C:\\Users\\All Users\\x",
        "/Users/Shared/x",
        "/usr/home/x",
        "C:\\Users\\%USERNAME%\\x",
    ):
        assert p.mask(kept) == kept
    assert named_in("Image: C:\\Users\\carol\\x.exe")[1] == ["carol"]


def test_a_name_keeps_the_punctuation_around_it() -> None:
    """`[USER=root]` masked `root]` whole, and `user=<jdoe>` named `<jdoe>`: the model read
    `[USER=USER_1 [TTY`, and jdoe as two people (`<jdoe>` and `jdoe`)."""
    _, out = masked("pkexec[1]: jdoe: Executing command [USER=root] [TTY=/dev/pts/0]")
    assert out == "pkexec[1]: USER_1: Executing command [USER=USER_2] [TTY=/dev/pts/0]"
    _, out = masked("dovecot: imap-login: Login: user=<jdoe>, method=PLAIN; imap(jdoe): bye")
    assert out == "dovecot: imap-login: Login: user=<USER_1>, method=PLAIN; imap(USER_1): bye"


def test_words_are_not_taken_for_names() -> None:
    """Group names, file names and English around the formats stay: masking `sudo` or
    `/etc/passwd` would hide what the line is about."""
    for line in (
        "usermod[1]: add 'jdoe' to group 'sudo'",
        'type=PATH msg=audit(1:2): item=0 name="/etc/passwd" inode=3',
        "useradd[1]: new group: name=developers, GID=1001",
        "Validation of user input failed for the form from the portal",
    ):
        _, out = masked(line)
        for word in ("sudo", "/etc/passwd", "developers", "input", "portal"):
            assert (word in line) <= (word in out), out


@pytest.mark.parametrize(
    "line",
    [
        "Dec  7 10:00:00 web-01 sshd[1]: Server listening on :: port 22.",
        "at 10:00:00.123 on 2026-12-07T10:00:00Z, 12:30 later",
        "rule 5710 level 5: std::string, Foo::Bar, a::b",
    ],
)
def test_times_and_words_with_colons_are_no_address(line: str) -> None:
    """A time of day (`10:00:00`) read as an IPv6 address: every syslog line a model read began
    `Dec  7 IP_1`, each second a new address it could cite."""
    assert masked(line)[1].replace("web-01", "HOST_1") == line.replace("web-01", "HOST_1")


def test_ipv6_addresses_are_masked_as_they_are_written() -> None:
    """Compressed (`fe80::1`, `2001:db8::1`, `::1`) they left raw: only all eight groups were
    found. An IPv4 address written as IPv6 (Windows' `::ffff:10.0.0.5`) is that address."""
    p = Pseudonymizer()
    p.register_names([], [])
    ipv4 = p.mask("from 10.0.0.5")
    out = p.mask(
        "fe80::1%eth0 and [2001:db8::1]:443 and ::1 and 2001:0db8:0:0:0:ff00:42:8329 "
        "and ::ffff:10.0.0.5, then fe80::2."
    )
    assert out == f"IP_2 and [IP_3]:443 and IP_4 and IP_5 and {ipv4.split()[1]}, then IP_6.", out
    assert p.unmask("IP_3") == "2001:db8::1" and p.unmask("IP_2") == "fe80::1%eth0"
    assert p.mask("2001:DB8:0::1") == "IP_3"  # the address however written, as fields keep it


def test_hardware_addresses_are_masked_as_such() -> None:
    """A MAC address names a device (and its owner): masked, as MAC_n, not taken for an IP."""
    p = Pseudonymizer()
    out = p.mask("DHCPACK on 10.0.0.5 to 00:1a:2b:3c:4d:5e (ws-fin-07); 00-1A-2B-3C-4D-5F")
    assert out == "DHCPACK on IP_1 to MAC_1 (ws-fin-07); MAC_2"
    assert TOKEN.fullmatch("MAC_2") and p.unmask(out).endswith("00-1A-2B-3C-4D-5F")


def test_an_account_and_its_windows_domain_are_masked_apart_one_token_a_person() -> None:
    """Sysmon writes `CORP\\jdoe` where the alert's account is `jdoe`: the model read jdoe as
    two people (`USER_1`, `USER_2`), and `ParentUser: CORP\\svc-x` left the parent's account
    raw."""
    from agent.normalize import normalize
    from tests.conftest import ecs

    doc = ecs(1, 0, "Process Create", "ws-07", user={"name": "CORP\\jdoe"})
    doc["message"] = "Process Create: Image: C:\\x.exe User: CORP\\jdoe ParentUser: CORP\\svc-x"
    alert = normalize(doc)
    p = Pseudonymizer()
    p.register([alert])
    assert p.mask(alert.message) == (
        "Process Create: Image: C:\\x.exe User: DOMAIN_1\\USER_1 ParentUser: DOMAIN_1\\USER_2"
    )
    assert p.mask("jdoe") == "USER_1"


def test_an_account_s_principal_name_in_text_is_the_account_s_token_at_its_domain() -> None:
    """Office 365 writes the account an alert names `jdoe` as `JDoe@Corp.Example` in its
    text: it was `EMAIL_1` beside the alert's `USER_1`, two people to the model. Now one, its
    domain masked wherever it appears; another address is still an e-mail token."""
    from agent.normalize import normalize
    from tests.conftest import ecs

    doc = ecs(1, 0, "New inbox rule", "o365", user={"name": "JDoe@Corp.Example"})
    doc["message"] = "New-InboxRule by JDoe@Corp.Example forwarding to mallory@evil.example"
    alert = normalize(doc)
    p = Pseudonymizer()
    p.register([alert])
    masked = p.mask(alert.message)
    assert masked == "New-InboxRule by USER_1@DOMAIN_1 forwarding to EMAIL_1"
    assert p.mask("see https://intranet.corp.example/") == "see https://intranet.DOMAIN_1/"
    assert p.unmask(masked) == (
        "New-InboxRule by jdoe@Corp.Example forwarding to mallory@evil.example"
    )


def test_a_host_read_by_its_machine_name_keeps_its_dns_domain_masked() -> None:
    """Hosts are read by machine name (`ws-fin-07` of `ws-fin-07.corp.example`): the alert's
    own text still writes the DNS name, and the organisation's domain left as
    `HOST_1.corp.example`, in that text and in a URL of an earlier one."""
    from agent.normalize import normalize
    from tests.conftest import ecs

    first = normalize(
        ecs(1, 0, "Download", "ws-fin-07", message="GET http://intranet.corp.example/")
    )
    second = normalize(ecs(2, 1, "Beacon", "WS-FIN-07.corp.example"))
    assert second.entities.hosts == ("ws-fin-07",)
    p = Pseudonymizer()
    p.register([first, second])
    masked = [p.mask(a.message) for a in (first, second)]
    assert masked == ["GET http://intranet.DOMAIN_1/", "Beacon on HOST_1.DOMAIN_1"]
    assert p.unmask(masked[1]) == "Beacon on ws-fin-07.corp.example"
    assert p.mask("wrote ws-fin-07.log") == "wrote HOST_1.log"  # a file, not a domain

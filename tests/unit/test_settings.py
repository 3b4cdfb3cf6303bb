"""The one Settings object: what it reads from the environment, and only that."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from agent.errors import ConfigError
from agent.settings import load_settings


def test_a_target_takes_its_token_from_its_own_entry_never_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A target was a settings class of its own: it read TOKEN, URL and HEADERS from the
    environment, so a shell's TOKEN was sent to every target configured without one."""
    monkeypatch.setenv("TOKEN", "a-shell-s-token")
    monkeypatch.setenv("HEADERS", '{"x-leak": "1"}')
    monkeypatch.setenv("VIGIE_TARGETS", '{"edr": {"url": "https://edr.example"}}')
    edr = load_settings().targets["edr"]
    assert edr.token is None and edr.headers == {}


def test_a_misspelt_secret_file_is_refused_like_a_misspelt_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Docker and Kubernetes secrets are files named like the variables: a misspelt one was
    ignored, its setting left unset, as a misspelt variable was."""
    (tmp_path / "vigie_es_api_kye").write_text("k")
    (tmp_path / "vigie_es_password").write_text("p")  # a real setting: fine
    (tmp_path / "..data").mkdir()  # what a Kubernetes secret volume holds besides the files
    monkeypatch.setenv("VIGIE_SECRETS_DIR", str(tmp_path))
    with pytest.raises(ConfigError, match="vigie_es_api_kye is not a setting") as refused:
        load_settings()
    assert "did you mean VIGIE_ES_API_KEY" in str(refused.value)
    assert "vigie_es_password" not in str(refused.value)
    (tmp_path / "vigie_es_api_kye").unlink()
    load_settings()


@pytest.mark.parametrize(
    ("variable", "value", "whose"),
    [
        ("VIGIE_API_TOKENS", "alice:lead:hunter2", "VIGIE_API_TOKENS 'alice'"),
        ("VIGIE_WEBHOOK_TOKENS", "wazuh:changeme", "VIGIE_WEBHOOK_TOKENS 'wazuh'"),
    ],
)
def test_production_refuses_bearer_tokens_easy_to_guess(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, whose: str
) -> None:
    """A token of any length was taken, in production too: "a" opened the approval queue to
    whoever tried it at the login page."""
    monkeypatch.setenv("VIGIE_ENV", "production")
    monkeypatch.setenv("VIGIE_APPROVERS", "alice:lead")
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError, match=f"{whose}'s token is too easy to guess") as refused:
        load_settings()
    assert value.rsplit(":", 1)[1] not in str(refused.value)  # the token is not quoted
    monkeypatch.setenv(variable, value.rsplit(":", 1)[0] + ":" + "k3" * 12)
    load_settings()  # 24 characters: taken
    monkeypatch.setenv("VIGIE_ENV", "development")
    monkeypatch.setenv(variable, value)
    load_settings()  # a laptop's demo may use short ones


@pytest.mark.parametrize(
    ("spec", "said"),
    [
        ("vigie:lead:tok-v", "for 'vigie' names no person"),  # refused at each decision
        ("al\u200bice:lead:tok-a", "names no person"),
        ("alice:lead:same,bob:lead:same", "for 'alice' and 'bob' share one token"),
        ("alice:analyst:tok-1,ALICE:lead:tok-2", "gives 'ALICE' two roles (analyst, lead)"),
    ],
)
def test_api_tokens_that_cannot_work_as_written_are_refused_at_start(spec: str, said: str) -> None:
    """Each was taken: a token shared by two names made one act as the other, and a system
    identity's or an unseen character's name had every decision refused."""
    from agent.api.auth import ApiTokens

    with pytest.raises(ConfigError, match=re.escape(said)):
        ApiTokens(spec)
    both = ApiTokens("alice:lead:tok-1,Alice:lead:tok-2")  # one person, two tokens: kept
    assert both.identify("Bearer tok-2").name == "Alice"


@pytest.mark.parametrize(
    ("variable", "template", "extra", "said"),
    [
        (
            "VIGIE_TARGETS",
            '{"firewall": {"url": "%s/fw", "token": "T"}}',
            {},
            "target 'firewall' would send its token in clear",
        ),
        (
            "VIGIE_ES_URL",
            "%s:9200",
            {"VIGIE_ES_PASSWORD": "p" * 20},
            "VIGIE_ES_URL would carry the cluster's credentials in clear",
        ),
    ],
)
def test_production_sends_no_credential_in_clear_to_another_machine(
    monkeypatch: pytest.MonkeyPatch, variable: str, template: str, extra: dict, said: str
) -> None:
    """A firewall's token, or the cluster's password, went over plain http:// in production:
    readable on every hop between."""
    monkeypatch.setenv("VIGIE_ENV", "production")
    monkeypatch.setenv("VIGIE_APPROVERS", "alice:lead")
    for name, value in extra.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv(variable, template % "http://fw.corp.example")
    with pytest.raises(ConfigError, match=re.escape(said)):
        load_settings()
    for fine in ("https://fw.corp.example", "http://127.0.0.1", "http://localhost"):
        monkeypatch.setenv(variable, template % fine)
        load_settings()  # encrypted, or not leaving this machine
    monkeypatch.setenv(variable, template % "http://fw.corp.example")
    monkeypatch.setenv("VIGIE_ENV", "development")  # a laptop's lab
    load_settings()


def test_a_person_has_one_role_for_the_command_line_and_the_api(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The command line reads roles from VIGIE_APPROVERS, the API from VIGIE_API_TOKENS: an
    analyst in one and a lead in the other approved high-risk actions at the terminal."""
    monkeypatch.setenv("VIGIE_APPROVERS", "alice:lead,bob:analyst")
    monkeypatch.setenv("VIGIE_API_TOKENS", f"Alice:analyst:{'a' * 24},bob:analyst:{'b' * 24}")
    with pytest.raises(ConfigError, match="'alice' is lead in VIGIE_APPROVERS but analyst in"):
        load_settings()
    monkeypatch.setenv("VIGIE_API_TOKENS", f"Alice:lead:{'a' * 24},carol:analyst:{'c' * 24}")
    load_settings()  # the same role, and people in one list only: taken


def test_a_critical_host_pattern_of_a_dns_domain_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Hosts are matched by their machine name (`dc01.corp.example` is `dc01`): the pattern
    `*.corp.example` would make every host critical, so it is refused with why."""
    monkeypatch.setenv("VIGIE_CRITICAL_ASSETS", "dc01.corp.example, *.corp.example")
    with pytest.raises(ConfigError, match=r"'\*\.corp\.example' would match every host"):
        load_settings()
    monkeypatch.setenv("VIGIE_CRITICAL_ASSETS", "dc01.corp.example, erp-*.corp.example")
    assert load_settings().critical_assets == "dc01.corp.example, erp-*.corp.example"


def test_a_critical_account_pattern_of_a_windows_domain_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Accounts are matched without their Windows domain or principal name's domain
    (`CORP\\jdoe` and `jdoe@corp.example` are `jdoe`): `CORP\\*` and `*@corp.example` would
    make every account critical."""
    monkeypatch.setenv("VIGIE_CRITICAL_IDENTITIES", "CORP\\administrator, CORP\\*")
    with pytest.raises(ConfigError, match=r"would match every account"):
        load_settings()
    monkeypatch.setenv("VIGIE_CRITICAL_IDENTITIES", "CORP\\administrator, *\\svc-*")
    assert load_settings().critical_identities == "CORP\\administrator, *\\svc-*"
    monkeypatch.setenv("VIGIE_CRITICAL_IDENTITIES", "jdoe@corp.example, *@corp.example")
    with pytest.raises(ConfigError, match=r"'\*@corp\.example' would match every account"):
        load_settings()


def test_a_wazuh_sweep_neither_writes_kibana_s_fields_nor_reads_kibana_s_later_counts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Kibana's workflow fields and its alert suppression's counts updated in place belong to
    Elastic Security's alerts: a sweep of Wazuh's indexer (`opensearch`) asks for neither."""
    from agent.service import sweep_config

    elastic = sweep_config(load_settings())
    assert elastic.kibana_writeback and elastic.refold
    monkeypatch.setenv("VIGIE_ES_BACKEND", "opensearch")
    wazuh = sweep_config(load_settings())
    assert not wazuh.kibana_writeback and not wazuh.refold

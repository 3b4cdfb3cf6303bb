"""The one Settings object. Every knob is an environment variable (prefix VIGIE_)."""

from __future__ import annotations

import difflib
import ipaddress
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import (
    AliasChoices,
    BaseModel,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError
from standardwebhooks.webhooks import Webhook

from agent.errors import ConfigError
from agent.normalize import read_account, read_host

REPO_ROOT = Path(__file__).resolve().parent.parent
_PLACEHOLDERS = {"changeme", "change-me", "secret", "password", "xxx", ""}
#: The shortest bearer token production takes: API and webhook tokens are the only thing
#: between the network and the approval queue, and the login page takes guesses.
MIN_TOKEN_CHARS = 16


def http_url(url: str, needs_port: bool = False) -> str:
    """A URL the HTTP clients can use, checked at start-up rather than at its first use: the
    Elasticsearch client failed on the first sweep with a traceback, the OpenSearch one took
    "notaurl" for a host, and an action target's bad URL left an approved action's outcome
    unknown. ValueError says what is wrong, never quoting the URL (it may hold a password)."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"not a URL ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("not an http:// or https:// URL with a host")
    if needs_port and port is None:  # 9200, or 443 behind a proxy: say which
        raise ValueError(f"no port: write it, e.g. {parts.scheme}://{parts.hostname}:9200")
    return url.strip()


def _in_clear(url: str) -> bool:
    """Plain http:// to another machine (loopback stays on this one: a TLS sidecar, a tunnel)."""
    parts = urlsplit(url)
    if parts.scheme != "http":
        return False
    host = parts.hostname or ""
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host != "localhost"


class Target(BaseModel):
    """Where a live action goes, and the secret it needs. Never written in a playbook."""

    url: str
    token: SecretStr | None = None
    headers: dict[str, str] = Field(default_factory=dict)

    @field_validator("url")
    @classmethod
    def _url(cls, url: str) -> str:
        return http_url(url)


class OutboundHook(BaseModel):
    """Where incident and approval events are sent, and the Standard Webhooks secret that
    signs them. Checked at start-up: a hook without a secret, or with one that is not base64,
    failed each event's delivery task before anything was sent or audited."""

    url: str
    secret: SecretStr

    @field_validator("url")
    @classmethod
    def _url(cls, url: str) -> str:
        return http_url(url)

    @field_validator("secret")
    @classmethod
    def _signs(cls, secret: SecretStr) -> SecretStr:
        webhook_signer(secret.get_secret_value())
        return secret


def webhook_signer(secret: str) -> Webhook:
    """The Standard Webhooks signer and verifier of a secret, or ValueError saying why it is
    none (never quoting it): outbound hooks and inbound sources alike."""
    try:
        return Webhook(secret)
    except Exception as exc:  # binascii.Error, EmptyWebhookSecretError
        raise ValueError(f"not a Standard Webhooks secret (whsec_ and base64): {exc}") from None


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="VIGIE_",
        extra="ignore",
        env_ignore_empty=True,  # `VIGIE_LLM=` in an env file means "unset", not ""
        # Docker/Kubernetes secrets: a file named like the variable (vigie_es_api_key, ...).
        secrets_dir=os.environ.get("VIGIE_SECRETS_DIR") or None,
    )

    env: Literal["development", "production"] = "development"
    store_url: str = "sqlite:///.vigie/vigie.db"
    playbooks_dir: Path = REPO_ROOT / "playbooks"
    llm: Literal["offline", "mistral"] | None = None
    mistral_api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("MISTRAL_API_KEY", "VIGIE_MISTRAL_API_KEY")
    )
    # The Mistral analyst (VIGIE_LLM=mistral, or MISTRAL_API_KEY set).
    mistral_url: str | None = None  # the SDK's server_url: Mistral's API or a vLLM/Ollama server
    mistral_model: str = "mistral-small-latest"
    llm_timeout_seconds: float = Field(default=60.0, gt=0)
    llm_max_retry_seconds: float = Field(default=30.0, ge=0)
    llm_max_concurrency: int = Field(default=4, ge=1)
    llm_min_priority: float = Field(default=30.0, ge=0, le=100)
    llm_tokens_per_incident: int = Field(default=4000, ge=1)
    llm_tokens_per_run: int = Field(default=200_000, ge=1)
    llm_max_tool_steps: int = Field(default=2, ge=0)
    llm_audit_payload: Literal["hash", "full"] = "hash"
    pseudonymize: bool = True
    # Elasticsearch / OpenSearch sweeps (VIGIE_ES_*).
    es_backend: Literal["elasticsearch", "opensearch"] = "elasticsearch"
    es_url: str | None = None
    es_api_key: SecretStr | None = None
    es_username: str | None = None
    es_password: SecretStr | None = None
    es_ca_certs: str | None = None
    es_alerts_index: str = ".alerts-security.alerts-*"
    es_incidents_index: str = "vigie-incidents"
    es_audit_index: str = "vigie-audit"
    es_tiebreaker: str = "kibana.alert.uuid"
    es_page_size: int = Field(default=1000, ge=1, le=10_000)  # 10,000: a search's usual cap
    # Page from a point in time (the default). Off: `search_after` alone, for indexers without
    # points in time (OpenSearch < 2.4, Wazuh 4.3) or whose writes slow down under one.
    es_point_in_time: bool = True
    es_only_open: bool = True
    # Each sweep reads again from this long before where the last one stopped: an alert indexed
    # late (an agent back online, a slow pipeline) sorts before the checkpoint and was never
    # read. Those read again are known by id, and cost a search, not a triage.
    es_lookback_seconds: int = Field(default=300, ge=0, le=7 * 86_400)
    es_extra_filter: dict[str, Any] | None = None
    sweep_interval: float = Field(default=60.0, gt=0)
    # HTTP API and webhooks (`vigie serve`).
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8080, ge=1, le=65535)
    api_tokens: SecretStr = SecretStr("")  # name:role:token,...  (roles: analyst, lead, admin)
    webhook_tokens: SecretStr = SecretStr("")  # source:token,...
    webhook_secrets: SecretStr = SecretStr("")  # source:whsec_...,...  (Standard Webhooks)
    webhook_max_bytes: int = Field(default=5 << 20, ge=1)
    #: Signed outbound webhooks, JSON: [{"url": "https://soar/hook", "secret": "whsec_..."}]
    outbound_webhooks: list[OutboundHook] = Field(default_factory=list)
    broker_url: str | None = None
    #: Seconds before Redis redelivers an unacknowledged task (a worker that died). Execution is
    #: guarded by state, so a redelivery never runs an action twice.
    broker_visibility_timeout: int = Field(default=3600, ge=1)
    # Reading input.
    max_doc_bytes: int = Field(default=1 << 20, ge=1)
    #: Processes that parse and normalise a large NDJSON file (16 MB and up), the reading one
    #: included; 0: every core.
    read_workers: int = Field(default=0, ge=0)
    # Correlation.
    repeat_gap_seconds: float = Field(default=1800.0, ge=0)
    link_window_seconds: float = Field(default=3600.0, gt=0)
    hub_min_hosts: int = Field(default=8, ge=2)
    #: An incident this quiet closes; later alerts open a new one.
    incident_quiet_seconds: float = Field(default=24 * 3600.0, gt=0)
    # Prioritisation: the site's critical hosts and identities, comma-separated names or
    # shell-style patterns, matched case-insensitively ("dc*,erp-prod,*-finance-*"; users:
    # "administrator,*-adm"). An incident involving one gains the criticality factor. Hosts
    # are matched by machine name, as they are read (`dc01.corp.example` is `dc01`), and
    # accounts without their Windows domain (`CORP\administrator` is `administrator`).
    critical_assets: str = ""
    critical_identities: str = ""
    # How long an analyst's tuning (a rule on a host marked noise) holds before it lapses: a
    # rule that was noise may come to matter, and nobody reviews a tuning they forgot.
    tuning_days: int = Field(default=30, ge=1, le=365)
    # Approvals. They expire: a decision taken on a day-old picture is taken again. A TTL of
    # 0 or less would make every proposal expired at birth.
    approval_ttl_seconds: int = Field(default=24 * 3600, gt=0)
    execution_lease_seconds: int = Field(default=300, gt=0)
    requester: str = "vigie"
    #: Approvers and their roles, "name:role,..." (roles: analyst, lead, admin). Empty means roles
    #: are not enforced, which production refuses.
    approvers: str = ""
    #: Live action targets by name, as JSON: {"firewall": {"url": "...", "token": "..."}}.
    #: A playbook step whose target is not configured runs as a dry-run.
    targets: dict[str, Target] = Field(default_factory=dict)

    def _bearer_tokens(self) -> list[tuple[str, str]]:
        """(whose, token) of every bearer token the API and the webhooks accept: analysts'
        (name:role:token) and senders' (source:token)."""
        hooks = [x.split(":", 1) for x in self.webhook_tokens.get_secret_value().split(",")]
        return [
            *((f"VIGIE_API_TOKENS {name!r}", token) for name, _, token in self._api_entries()),
            *(
                (f"VIGIE_WEBHOOK_TOKENS {p[0].strip()!r}", p[1].strip())
                for p in hooks
                if len(p) == 2
            ),
        ]

    @field_validator("critical_assets", "critical_identities")
    @classmethod
    def _named_patterns(cls, text: str, info: ValidationInfo) -> str:
        """A pattern of a domain's hosts (`*.corp.example`) or accounts (`CORP\\*`,
        `*@corp.example`) would match every one, since hosts are matched by machine name and
        accounts without their domain: refused rather than read so."""
        hosts = info.field_name == "critical_assets"
        read = read_host if hosts else read_account
        for pattern in (p.strip() for p in text.split(",")):
            name = read(pattern)
            if name != pattern.lower() and name and not name.strip("*?"):
                kind, example = (
                    ("host", "`dc01.corp.example` is `dc01`")
                    if hosts
                    else ("account", "`CORP\\jdoe` and `jdoe@corp.example` are `jdoe`")
                )
                raise ValueError(
                    f"{pattern!r} would match every {kind}: {kind}s are matched by the name "
                    f"they are read by ({example}), so name them or a pattern of their names"
                )
        return text

    @field_validator("es_url", "mistral_url")
    @classmethod
    def _http_url(cls, url: str | None, info: ValidationInfo) -> str | None:
        return None if url is None else http_url(url, needs_port=info.field_name == "es_url")

    @property
    def analyst(self) -> Literal["offline", "mistral"]:
        """Mistral when asked for or when a key is set; otherwise the offline analyst."""
        if self.llm is not None:
            return self.llm
        return "mistral" if self.mistral_api_key is not None else "offline"

    @property
    def embedded(self) -> bool:
        """No broker configured: Celery tasks run in-process (eagerly)."""
        return not self.broker_url

    def approver_roles(self) -> dict[str, str] | None:
        if not self.approvers.strip():
            return None
        roles: dict[str, str] = {}
        for item in self.approvers.split(","):
            name, sep, role = item.strip().partition(":")
            if not sep or role not in ("analyst", "lead", "admin") or not name:
                raise ConfigError(f"VIGIE_APPROVERS entry {item!r} is not name:analyst|lead|admin")
            roles[name] = role
        return roles

    def _api_entries(self) -> list[tuple[str, str, str]]:
        """VIGIE_API_TOKENS' well-formed entries as (name, role, token); `agent.api.auth.
        ApiTokens` refuses the others."""
        split = (x.split(":", 2) for x in self.api_tokens.get_secret_value().split(","))
        return [(p[0].strip(), p[1].strip(), p[2].strip()) for p in split if len(p) == 3]

    def _one_role_each(self) -> None:
        """A person has one role: the command line reads it from VIGIE_APPROVERS, the API and
        the UI from VIGIE_API_TOKENS, and two that disagree let an analyst of one approve a
        high-risk action through the other."""
        from agent.approvals import person

        tokens = {person(name): role for name, role, _ in self._api_entries()}
        for name, role in (self.approver_roles() or {}).items():
            other = tokens.get(person(name), role)
            if other != role:
                raise ConfigError(
                    f"{name!r} is {role} in VIGIE_APPROVERS but {other} in VIGIE_API_TOKENS"
                )

    @model_validator(mode="after")
    def _enforce_real_secrets(self) -> Settings:
        self.approver_roles()  # refuse malformed entries at start-up
        self._one_role_each()
        if self.env != "production":
            return self
        if not self.approvers.strip():
            raise ConfigError("production needs VIGIE_APPROVERS (name:role,...)")
        for name, target in self.targets.items():
            token = target.token.get_secret_value() if target.token else None
            if token is not None and token.strip().lower() in _PLACEHOLDERS:
                raise ConfigError(f"target {name!r} has a placeholder token in production")
        for whose, token in self._bearer_tokens():
            if len(token) < MIN_TOKEN_CHARS or token.lower() in _PLACEHOLDERS:
                raise ConfigError(
                    f"{whose}'s token is too easy to guess for production: use "
                    f"{MIN_TOKEN_CHARS} characters or more (openssl rand -hex 24)"
                )
        if self.analyst == "mistral" and self.mistral_api_key is None:
            raise ConfigError("VIGIE_LLM=mistral needs MISTRAL_API_KEY")
        self._no_credentials_in_clear()
        return self

    def _no_credentials_in_clear(self) -> None:
        """Production sends no credential over plain http:// beyond this machine: a firewall's
        or a directory's token, or the search cluster's key, readable on every hop between.
        (The model's key is left to its URL: a model served beside Vigie, on the compose
        network, takes none it checks.)"""
        for name, target in self.targets.items():
            if target.token is not None and _in_clear(target.url):
                raise ConfigError(
                    f"target {name!r} would send its token in clear (http://): use https://"
                )
        credentials = self.es_api_key is not None or self.es_password is not None
        if credentials and self.es_url is not None and _in_clear(self.es_url):
            raise ConfigError(
                "VIGIE_ES_URL would carry the cluster's credentials in clear (http://): "
                "use https://"
            )


#: VIGIE_ variables that are not settings: read before Settings exists, by the tools, or a
#: person's own API token for the command line (`VIGIE_TOKEN`).
NOT_SETTINGS = frozenset(
    {"VIGIE_SECRETS_DIR", "VIGIE_AUDIT_STRICT", "VIGIE_BENCH_ALL", "VIGIE_TOKEN"}
)
#: Settings whose values an error must not quote: secrets, and URLs that may hold a password.
_SECRET = frozenset(
    name
    for name, info in Settings.model_fields.items()
    if "SecretStr" in str(info.annotation)
    or name in ("targets", "outbound_webhooks")
    or name.endswith("_url")
)


def variable_names() -> dict[str, str]:
    """Each environment variable a setting is read from, with the setting."""
    names: dict[str, str] = {}
    for field, info in Settings.model_fields.items():
        alias = info.validation_alias
        choices = alias.choices if isinstance(alias, AliasChoices) else [f"VIGIE_{field}"]
        names.update({str(choice).upper(): field for choice in choices})
    return names


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """Set VIGIE_ variables, and files of VIGIE_SECRETS_DIR named like them, that no setting
    reads: a misspelt one would be ignored and its setting left at its default
    (VIGIE_MISTRAL_ENDPOINT instead of VIGIE_MISTRAL_URL sends the incidents to Mistral's
    API, not to the model on the premises)."""
    known = variable_names().keys() | NOT_SETTINGS

    def unknown(name: str) -> bool:
        return name.upper().startswith("VIGIE_") and name.upper() not in known

    found = [name for name, value in environ.items() if value and unknown(name)]
    secrets = environ.get("VIGIE_SECRETS_DIR")
    if secrets and Path(secrets).is_dir():
        found += [str(p) for p in Path(secrets).iterdir() if p.is_file() and unknown(p.name)]
    return sorted(found)


def load_settings() -> Settings:
    """The settings from the environment, or a ConfigError naming each variable at fault on
    its own line."""
    unknown = unknown_variables(os.environ)
    if unknown:
        known = sorted(variable_names())
        raise ConfigError(
            "\n".join(
                f"{name} is not a setting" + _did_you_mean(Path(name).name.upper(), known)
                for name in unknown
            )
        )
    try:
        return Settings()
    except ValidationError as exc:
        raise ConfigError(_readable(exc)) from exc
    except SettingsError as exc:  # a JSON setting that does not parse; say which, and where
        field = str(exc).split('"')[1] if str(exc).count('"') >= 2 else ""
        variable = f"VIGIE_{field.upper()}" if field else "a JSON setting"
        raise ConfigError(f"{variable} is not valid JSON: {exc.__cause__ or exc}") from exc


def _did_you_mean(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.7)
    if not close:
        return " (the settings are in the README, under Configuration)"
    *others, last = close
    return f" (did you mean {', '.join(others) + ' or ' if others else ''}{last}?)"


def _readable(exc: ValidationError) -> str:
    """One line per setting at fault: its variable, the value given (never a secret's), and
    what was wrong, without pydantic's type codes and links."""
    names = {field: name for name, field in variable_names().items()}
    lines = []
    for error in exc.errors(include_url=False):
        field = str(error["loc"][0]) if error["loc"] else ""
        variable = names.get(field, field.upper() or "settings")
        given = "" if field in _SECRET or "input" not in error else f"={error['input']!r}"
        lines.append(f"{variable}{given}: {error['msg'].removeprefix('Value error, ')}")
    return "\n".join(lines)


def shown_url(url: str) -> str:
    """A URL as it may be printed: without the user and password it may hold."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))

"""The one Settings object. Every knob is an environment variable (prefix VIGIE_)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from agent.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parent.parent
_PLACEHOLDERS = {"changeme", "change-me", "secret", "password", "xxx", ""}


class Target(BaseSettings):
    """Where a live action goes, and the secret it needs. Never written in a playbook."""

    url: str
    token: SecretStr | None = None
    headers: dict[str, str] = Field(default_factory=dict)


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
    llm_timeout_seconds: float = 60.0
    llm_max_retry_seconds: float = 30.0
    llm_max_concurrency: int = 4
    llm_min_priority: float = 30.0
    llm_tokens_per_incident: int = 4000
    llm_tokens_per_run: int = 200_000
    llm_max_tool_steps: int = 2
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
    es_extra_filter: dict[str, Any] | None = None
    sweep_interval: float = Field(default=60.0, gt=0)
    # HTTP API and webhooks (`vigie serve`).
    api_host: str = "127.0.0.1"
    api_port: int = 8080
    api_tokens: SecretStr = SecretStr("")  # name:role:token,...  (roles: analyst, lead, admin)
    webhook_tokens: SecretStr = SecretStr("")  # source:token,...
    webhook_secrets: SecretStr = SecretStr("")  # source:whsec_...,...  (Standard Webhooks)
    webhook_max_bytes: int = 5 << 20
    #: Signed outbound webhooks, JSON: [{"url": "https://soar/hook", "secret": "whsec_..."}]
    outbound_webhooks: list[dict[str, str]] = Field(default_factory=list)
    broker_url: str | None = None
    #: Seconds before Redis redelivers an unacknowledged task (a worker that died). Execution is
    #: guarded by state, so a redelivery never runs an action twice.
    broker_visibility_timeout: int = 3600
    # Reading input.
    max_doc_bytes: int = 1 << 20
    #: Processes that parse and normalise a large NDJSON file (16 MB and up), the reading one
    #: included; 0: every core.
    read_workers: int = 0
    # Correlation.
    repeat_gap_seconds: float = 1800.0
    link_window_seconds: float = 3600.0
    hub_min_hosts: int = 8
    incident_quiet_seconds: float = (
        24 * 3600.0
    )  # an incident this quiet closes; later alerts open a new one
    # Prioritisation: the site's critical hosts and identities, comma-separated names or
    # shell-style patterns, matched case-insensitively ("dc*,erp-prod,*-finance-*"; users:
    # "administrator,*-adm"). An incident involving one gains the criticality factor.
    critical_assets: str = ""
    critical_identities: str = ""
    # How long an analyst's tuning (a rule on a host marked noise) holds before it lapses: a
    # rule that was noise may come to matter, and nobody reviews a tuning they forgot.
    tuning_days: int = Field(default=30, ge=1, le=365)
    # Approvals.
    approval_ttl_seconds: int = 24 * 3600
    execution_lease_seconds: int = 300
    requester: str = "vigie"
    #: Approvers and their roles, "name:role,..." (roles: analyst, lead, admin). Empty means roles
    #: are not enforced, which production refuses.
    approvers: str = ""
    #: Live action targets by name, as JSON: {"firewall": {"url": "...", "token": "..."}}.
    #: A playbook step whose target is not configured runs as a dry-run.
    targets: dict[str, Target] = Field(default_factory=dict)

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

    @model_validator(mode="after")
    def _enforce_real_secrets(self) -> Settings:
        self.approver_roles()  # refuse malformed entries at start-up
        if self.env != "production":
            return self
        if not self.approvers.strip():
            raise ConfigError("production needs VIGIE_APPROVERS (name:role,...)")
        for name, target in self.targets.items():
            token = target.token.get_secret_value() if target.token else None
            if token is not None and token.strip().lower() in _PLACEHOLDERS:
                raise ConfigError(f"target {name!r} has a placeholder token in production")
        if self.analyst == "mistral" and self.mistral_api_key is None:
            raise ConfigError("VIGIE_LLM=mistral needs MISTRAL_API_KEY")
        return self

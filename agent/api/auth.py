"""Who is calling: analyst tokens (hashed, with roles) and webhook credentials per source.

Webhooks accept a Standard Webhooks signature (id, timestamp within 5 minutes, HMAC) with the
id remembered to refuse replays, or a static per-source token, as `Authorization: Bearer` or
`?token=` for senders that can set no header (weaker: it can end up in proxy logs).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from agent.approvals import SYSTEM_IDENTITIES, person, visible
from agent.errors import AuthError, ConfigError
from agent.settings import webhook_signer


@dataclass(frozen=True)
class Principal:
    name: str
    role: str


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class ApiTokens:
    """`name:role:token,...`; only SHA-256 digests are kept in memory."""

    def __init__(self, spec: str) -> None:
        self._by_digest: dict[str, Principal] = {}
        for item in filter(None, (x.strip() for x in spec.split(","))):
            name, _, rest = item.partition(":")
            role, _, token = rest.partition(":")
            if not (name and token) or role not in ("analyst", "lead", "admin"):
                raise ConfigError(
                    f"VIGIE_API_TOKENS entry for {name or '?'!r} is not name:role:token"
                )
            self._add(_digest(token), Principal(name, role))

    def _add(self, digest: str, new: Principal) -> None:
        """Refused here, not at each decision: a system identity or an unseen character in a
        name; a token given twice (one would act as the other); one person with two roles."""
        if not visible(new.name) or person(new.name) in SYSTEM_IDENTITIES:
            raise ConfigError(f"VIGIE_API_TOKENS entry for {new.name!r} names no person")
        if digest in self._by_digest:
            raise ConfigError(
                f"VIGIE_API_TOKENS entries for {self._by_digest[digest].name!r} and "
                f"{new.name!r} share one token"
            )
        for known in self._by_digest.values():
            if person(known.name) == person(new.name) and known.role != new.role:
                raise ConfigError(
                    f"VIGIE_API_TOKENS gives {new.name!r} two roles ({known.role}, {new.role})"
                )
        self._by_digest[digest] = new

    def identify(self, authorization: str | None) -> Principal:
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise AuthError("missing bearer token")
        digest = _digest(token.strip())
        for known, principal in self._by_digest.items():
            if hmac.compare_digest(known, digest):
                return principal
        raise AuthError("unknown token")

    def roles(self) -> dict[str, str]:
        return {p.name: p.role for p in self._by_digest.values()}


def _pairs(spec: str) -> dict[str, list[str]]:
    """Each source's secrets: several while one is rotated (the sender's old and new both
    work until the old one is removed; a second entry replaced the first before)."""
    from connectors.webhooks import PARSERS

    out: dict[str, list[str]] = {}
    for item in filter(None, (x.strip() for x in spec.split(","))):
        source, sep, secret = item.partition(":")
        if sep and source not in PARSERS:  # its sender would get 401s, and be told nothing
            raise ConfigError(
                f"VIGIE_WEBHOOK_TOKENS or VIGIE_WEBHOOK_SECRETS names no webhook source "
                f"{source!r} (sources: {', '.join(sorted(PARSERS))})"
            )
        if not sep or not secret:
            raise ConfigError(
                f"VIGIE_WEBHOOK_TOKENS or VIGIE_WEBHOOK_SECRETS entry for {source!r} is not "
                "source:secret"
            )
        out.setdefault(source, []).append(secret)
    return out


def _signer(source: str, secret: str) -> Webhook:
    """The source's Standard Webhooks verifier; a secret that is none is a settings error,
    said at start-up (it was a binascii traceback out of `vigie serve`)."""
    try:
        return webhook_signer(secret)
    except ValueError as exc:
        raise ConfigError(f"VIGIE_WEBHOOK_SECRETS entry for {source!r} is {exc}") from None


def _verify(signers: list[Webhook], body: bytes, headers: dict[str, str]) -> None:
    """Signed with one of the source's secrets, or an `AuthError` saying why not."""
    failed: Exception = WebhookVerificationError("no secret")
    for signer in signers:
        try:
            signer.verify(body, headers, json_parse=False)
            return
        except WebhookVerificationError as exc:
            failed = exc
    raise AuthError(f"bad webhook signature: {failed}")


class WebhookAuth:
    def __init__(self, tokens: str, secrets: str) -> None:
        self._tokens = {s: [_digest(t) for t in ts] for s, ts in _pairs(tokens).items()}
        self._signers = {
            s: [_signer(s, secret) for secret in secrets] for s, secrets in _pairs(secrets).items()
        }

    def check(
        self,
        source: str,
        body: bytes,
        headers: dict[str, str],
        query_token: str | None,
    ) -> str | None:
        """Raises AuthError unless the request is signed or carries the source's token. For a
        signed request, returns the replay key the intake must record with the batch (in one
        transaction, so a failed store leaves the id free for the sender's retry)."""
        if "webhook-signature" in headers and source in self._signers:
            _verify(self._signers[source], body, headers)
            return f"webhook:{source}:{headers.get('webhook-id')}"
        scheme, _, bearer = headers.get("authorization", "").partition(" ")
        offered = bearer.strip() if scheme.lower() == "bearer" else (query_token or "")
        known = self._tokens.get(source, [])
        # Every digest compared, not the first match only: the time says nothing of which.
        if offered and sum(hmac.compare_digest(d, _digest(offered)) for d in known):
            return None
        raise AuthError("unauthenticated webhook")

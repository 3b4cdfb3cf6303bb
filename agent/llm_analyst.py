"""The Mistral analyst: grounded, private, injection-resistant, within a token budget.

What the model may do is narrow by construction: it returns an `LLMAssessment` (schema-checked
JSON with no field for actions, approvals or priority), every claim must cite alert ids of the
incident, ATT&CK ids must exist, entity tokens must be ones we issued. Whatever fails a check is
dropped and recorded on the assessment. A "benign" reading of a high-priority incident is held
for a human instead of applied. Any failure falls back to the offline analyst, marked as such.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agent.analyst import OfflineAnalyst
from agent.attack import known_techniques, tactic_id
from agent.errors import BadInput
from agent.models import Alert, Assessment, Incident, Severity
from agent.prompts import SYSTEM, evidence, retry_message, user_message
from agent.pseudonymize import TOKEN, Masker, Passthrough, Pseudonymizer, sub_addresses
from connectors.mistral import ChatModel, ChatResult


class Claim(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(max_length=600)
    alert_ids: list[str] = Field(min_length=1, max_length=20)


class TimelineEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    time: str = Field(max_length=40)
    event: str = Field(max_length=300)
    alert_ids: list[str] = Field(min_length=1, max_length=20)


class LLMAssessment(BaseModel):
    """Exactly what the model may say. Nothing here can act, approve, close or re-rank."""

    model_config = ConfigDict(extra="forbid")
    verdict: Literal["true_positive", "benign", "false_positive", "needs_investigation"]
    confidence: float = Field(ge=0, le=1)
    severity: Literal["low", "medium", "high", "critical"]
    title: str = Field(max_length=160)
    summary: str = Field(max_length=2000)
    tactics: list[str] = Field(max_length=14)
    techniques: list[str] = Field(max_length=30)
    claims: list[Claim] = Field(min_length=1, max_length=12)
    timeline: list[TimelineEntry] = Field(max_length=20)


def strict_schema() -> dict[str, Any]:
    """The JSON schema sent with `response_format` (strict: no extra properties)."""
    return LLMAssessment.model_json_schema()


@dataclass
class Budget:
    per_incident: int = 4000
    per_run: int = 200_000
    used: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self, n: int) -> bool:
        with self.lock:
            if self.used + n > self.per_run:
                return False
            self.used += n
            return True


TokenCounter = Callable[[str], int]
Recorder = Callable[[str, dict[str, Any]], None]


def mistral_token_counter() -> TokenCounter:
    """Exact counts with Mistral's own tokenizer (tekken), shipped offline by mistral-common."""
    from mistral_common.tokens.tokenizers.mistral import MistralTokenizer

    tok = MistralTokenizer.v3(is_tekken=True).instruct_tokenizer.tokenizer
    return lambda text: len(tok.encode(text, bos=False, eos=False))


class MistralAnalyst:
    name = "mistral"

    def __init__(
        self,
        chat: ChatModel,
        *,
        pseudonymize: bool = True,
        min_priority: float = 30.0,
        budget: Budget | None = None,
        count_tokens: TokenCounter | None = None,
        record: Recorder | None = None,
        audit_full_payload: bool = False,
        review_benign_above: float = 50.0,
        max_tool_steps: int = 2,
        run_alerts: list[Alert] | None = None,
    ) -> None:
        self.chat = chat
        self.pseudo = Pseudonymizer() if pseudonymize else None
        self.min_priority = min_priority
        self.budget = budget or Budget()
        self.count = count_tokens or (lambda text: len(text) // 3 + 1)
        self.record = record or (lambda subject, data: None)
        self.audit_full = audit_full_payload
        self.review_benign_above = review_benign_above
        self.max_tool_steps = max_tool_steps
        self.offline = OfflineAnalyst()
        self.stats = {"calls": 0, "prompt_tokens": 0, "completion_tokens": 0, "incidents": 0}

    # --- the Analyst protocol ---------------------------------------------------------------

    def assess(self, incident: Incident, alerts: dict[str, Alert]) -> Assessment:
        if incident.priority < self.min_priority:
            return self._offline(
                incident,
                alerts,
                f"priority {incident.priority:g} below the LLM threshold {self.min_priority:g}",
            )
        mine = [alerts[a] for a in incident.alert_ids if a in alerts]
        pseudo = self.pseudo or Passthrough()
        pseudo.register(mine)
        pseudo.register_names([*incident.hosts, *(g.host for g in incident.groups)], incident.users)
        messages = self._messages(incident, alerts, pseudo)
        if messages is None:
            return self._offline(incident, alerts, "evidence exceeds the per-incident token budget")
        cost = self.count(messages[0]["content"] + messages[1]["content"])
        if not self.budget.take(cost):
            return self._offline(incident, alerts, "run token budget exhausted")
        self.stats["incidents"] += 1
        raw = self._converse(incident, messages, pseudo, alerts)
        return self._ground(raw, incident, alerts, pseudo)

    # --- steps --------------------------------------------------------------------------------

    def _messages(
        self, incident: Incident, alerts: dict[str, Alert], pseudo: Masker
    ) -> list[dict[str, Any]] | None:
        for max_groups in (40, 20, 10, 5):
            msgs = [
                {"role": "system", "content": SYSTEM},
                {
                    "role": "user",
                    "content": user_message(evidence(incident, alerts, pseudo, max_groups)),
                },
            ]
            if self.count(msgs[0]["content"] + msgs[1]["content"]) <= self.budget.per_incident:
                return msgs
        return None

    def _send(
        self, incident: Incident, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None
    ) -> ChatResult:
        payload = orjson.dumps(messages)
        self.record(
            incident.incident_id,
            {
                "model": self.chat.model,
                "bytes": len(payload),
                "sha256": hashlib.sha256(payload).hexdigest(),
                **({"payload": messages} if self.audit_full else {}),
            },
        )
        result = self.chat.complete(
            messages, schema=None if tools else strict_schema(), tools=tools
        )
        self.stats["calls"] += 1
        self.stats["prompt_tokens"] += result.prompt_tokens
        self.stats["completion_tokens"] += result.completion_tokens
        return result

    def _converse(
        self,
        incident: Incident,
        messages: list[dict[str, Any]],
        pseudo: Masker,
        alerts: dict[str, Alert],
    ) -> LLMAssessment:
        """Bounded tool use, then the answer; one retry with the validation error.

        A reply without tool calls during the tool phase is taken as the answer; after the last
        tool step, the answer is asked for with the strict schema and no tools."""
        answer: ChatResult | None = None
        for _ in range(self.max_tool_steps):
            result = self._send(incident, messages, _TOOLS)
            if not result.tool_calls:
                answer = result
                break
            messages = [
                *messages,
                {
                    "role": "assistant",
                    "content": result.content or "",
                    "tool_calls": [
                        {
                            "id": c["id"],
                            "type": "function",
                            "function": {"name": c["name"], "arguments": c["arguments"]},
                        }
                        for c in result.tool_calls
                    ],
                },
            ]
            for call in result.tool_calls:
                messages.append(
                    {
                        "role": "tool",
                        "tool_call_id": call["id"],
                        "name": call["name"],
                        "content": self._tool(call, incident, pseudo, alerts),
                    }
                )
        result = answer or self._send(incident, messages, None)
        try:
            return LLMAssessment.model_validate_json(result.content)
        except ValidationError as exc:
            retry = [
                *messages,
                {"role": "assistant", "content": result.content[:4000]},
                {"role": "user", "content": retry_message(str(exc))},
            ]
            second = self._send(incident, retry, None)
            try:
                return LLMAssessment.model_validate_json(second.content)
            except ValidationError as exc2:
                raise BadInput(
                    f"model output invalid twice: {exc2.error_count()} error(s)"
                ) from exc2

    def _tool(
        self, call: dict[str, Any], incident: Incident, pseudo: Masker, alerts: dict[str, Alert]
    ) -> str:
        """Read-only look-ups over this run's alerts; answers are pseudonymised too."""
        try:
            args = orjson.loads(call["arguments"]) if isinstance(call["arguments"], str) else {}
        except orjson.JSONDecodeError:
            return '{"error": "arguments are not JSON"}'
        if call["name"] != "alerts_on_host" or not isinstance(args, dict):
            return '{"error": "unknown tool"}'
        host = pseudo.unmask(str(args.get("host", "")))
        hours = min(
            72, max(1, int(args.get("hours", 24)) if str(args.get("hours", "")).isdigit() else 24)
        )
        lo, hi = (
            incident.first_seen - timedelta(hours=hours),
            incident.last_seen + timedelta(hours=hours),
        )
        counts: dict[str, int] = {}
        for a in alerts.values():
            if host in a.entities.hosts and lo <= a.timestamp <= hi:
                counts[a.rule_name] = counts.get(a.rule_name, 0) + 1
        top = sorted(counts.items(), key=lambda kv: -kv[1])[:15]
        return pseudo.mask(
            orjson.dumps({"host": args.get("host"), "hours": hours, "rules": dict(top)}).decode()
        )

    def _ground(
        self,
        raw: LLMAssessment,
        incident: Incident,
        alerts: dict[str, Alert],
        pseudo: Masker,
    ) -> Assessment:
        ids = set(incident.alert_ids)
        notes: list[str] = []
        claims = []
        for c in raw.claims:
            good = [a for a in c.alert_ids if a in ids]
            bad = [a for a in c.alert_ids if a not in ids]
            if bad:
                notes.append(f"dropped citation(s) not in the incident: {', '.join(bad[:5])}")
            if good:
                claims.append((c.text, good))
            else:
                notes.append(f"dropped claim with no valid citation: {c.text[:80]!r}")
        techniques = [t for t in raw.techniques if t in known_techniques()]
        if len(techniques) != len(raw.techniques):
            notes.append(
                "dropped unknown ATT&CK technique(s): "
                + ", ".join(t for t in raw.techniques if t not in known_techniques())
            )
        tactics = [
            t for t in (tactic_id(x.split(" ")[0]) or tactic_id(x) for x in raw.tactics) if t
        ]
        if len(tactics) != len(raw.tactics):
            notes.append("dropped unknown ATT&CK tactic(s)")
        summary = self._entities_checked(raw.summary, pseudo, notes)
        claim_text = " ".join(
            f"{self._entities_checked(t, pseudo, notes)} [{', '.join(c)}]" for t, c in claims
        )
        verdict = raw.verdict
        if (
            verdict in ("benign", "false_positive")
            and incident.priority >= self.review_benign_above
        ):
            notes.append(
                f"model said {verdict} on a priority {incident.priority:g} incident: held "
                "for human review, not applied"
            )
            verdict = "needs_investigation"
        if not claims:
            fallback = self.offline.assess(incident, alerts)
            fallback.notes.extend(
                [*notes, "mistral output had no grounded claim; offline fallback"]
            )
            return fallback
        cited = list(dict.fromkeys(a for _, c in claims for a in c))
        timeline = [
            f"{t.time}: {self._entities_checked(t.event, pseudo, notes)} "
            f"[{', '.join(a for a in t.alert_ids if a in ids)}]"
            for t in raw.timeline
            if any(a in ids for a in t.alert_ids)
        ]
        return Assessment(
            analyst="mistral",
            verdict=verdict,
            confidence=raw.confidence,
            title=self._entities_checked(raw.title, pseudo, notes)[:200],
            summary=(summary + " " + claim_text).strip(),
            cited_alert_ids=cited,
            tactics=tactics,
            techniques=techniques,
            severity=Severity(raw.severity),
            timeline=timeline,
            notes=list(dict.fromkeys(notes)),
        )

    def _entities_checked(self, text: str, pseudo: Masker, notes: list[str]) -> str:
        """Tokens we never issued, and raw addresses, are claims about entities we cannot back."""

        def check(m: re.Match[str]) -> str:
            if pseudo.is_token(m.group(0)):
                return m.group(0)
            notes.append(f"dropped unknown entity {m.group(0)}")
            return "[unverified entity]"

        text = TOKEN.sub(check, text)
        if isinstance(pseudo, Pseudonymizer):
            text = sub_addresses(text, lambda address: _unverified(address, notes))
        return pseudo.unmask(text)

    def _offline(self, incident: Incident, alerts: dict[str, Alert], why: str) -> Assessment:
        a = self.offline.assess(incident, alerts)
        a.notes.append(f"offline analyst: {why}")
        return a


def _unverified(address: str, notes: list[str]) -> str:
    notes.append(f"dropped raw address {address} (not a token we issued)")
    return "[unverified entity]"


_TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "alerts_on_host",
            "description": "Count alerts by rule on one host around the incident (read-only).",
            "parameters": {
                "type": "object",
                "properties": {
                    "host": {"type": "string", "description": "a HOST_n token"},
                    "hours": {"type": "integer", "minimum": 1, "maximum": 72},
                },
                "required": ["host"],
            },
        },
    }
]

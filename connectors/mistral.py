"""Mistral chat completions through the official `mistralai` SDK.

The same code reaches Mistral's API or a self-hosted Mistral model behind a compatible server
(vLLM, Ollama): `VIGIE_MISTRAL_URL` is the SDK's `server_url`. The SDK's own retries are off by
default; here they are on for connection errors, 429 and 5xx, with backoff, and every failure is
translated once into Vigie's typed errors.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Protocol

from agent.errors import AuthError, BadInput, RateLimited, Transient


@dataclass
class ChatResult:
    content: str
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0


class ChatModel(Protocol):
    model: str

    def complete(
        self,
        messages: list[dict[str, Any]],
        *,
        schema: dict[str, Any] | None,
        tools: list[dict[str, Any]] | None = None,
    ) -> ChatResult:
        """One chat completion; raises Transient, RateLimited, AuthError or BadInput."""
        ...


class MistralChat:
    def __init__(
        self,
        *,
        api_key: str,
        model: str,
        server_url: str | None = None,
        timeout_s: float = 60.0,
        max_concurrency: int = 4,
        retries: bool = True,
        max_retry_s: float = 30.0,
    ) -> None:
        from mistralai.client import Mistral
        from mistralai.client.utils.retries import BackoffStrategy, RetryConfig

        retry = (
            RetryConfig(
                "backoff",
                BackoffStrategy(500, 8000, 2.0, int(max_retry_s * 1000), jitter_ms=250),
                retry_connection_errors=True,
            )
            if retries
            else None
        )
        kwargs: dict[str, Any] = {"api_key": api_key, "timeout_ms": int(timeout_s * 1000)}
        if retry is not None:
            kwargs["retry_config"] = retry
        if server_url:
            kwargs["server_url"] = server_url
        self._client = Mistral(**kwargs)
        self.model = model
        self._slots = threading.BoundedSemaphore(max_concurrency)

    def complete(
        self,
        messages: list[dict[str, Any]],
        *,
        schema: dict[str, Any] | None,
        tools: list[dict[str, Any]] | None = None,
    ) -> ChatResult:
        request: dict[str, Any] = {"model": self.model, "messages": messages, "temperature": 0.0}
        if schema is not None and not tools:
            request["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "assessment", "schema": schema, "strict": True},
            }
        if tools:
            request["tools"] = tools
            request["tool_choice"] = "auto"
        with self._slots:
            try:
                res = self._client.chat.complete(**request)
            except Exception as exc:  # the SDK's and httpx2's, translated once here
                raise translate(exc) from exc
        choice = res.choices[0] if res.choices else None
        msg = choice.message if choice is not None else None
        if msg is None:
            raise Transient("model returned no message")
        content = msg.content if isinstance(msg.content, str) else ""
        calls = [
            {"id": c.id, "name": c.function.name, "arguments": c.function.arguments}
            for c in (msg.tool_calls or [])
        ]
        usage = res.usage
        return ChatResult(
            content=content,
            tool_calls=calls,
            prompt_tokens=int(usage.prompt_tokens or 0) if usage else 0,
            completion_tokens=int(usage.completion_tokens or 0) if usage else 0,
        )


def translate(exc: Exception) -> Exception:
    """Map SDK and transport exceptions to Vigie's typed errors."""
    status = getattr(exc, "status_code", None)
    if isinstance(status, int):
        if status == 429:
            return RateLimited(f"Mistral rate limit (429): {_brief(exc)}")
        if status in (401, 403):
            return AuthError(f"Mistral refused the API key ({status})")
        if status >= 500:
            return Transient(f"Mistral server error ({status})")
        return BadInput(f"Mistral rejected the request ({status}): {_brief(exc)}")
    name = type(exc).__name__
    if "Timeout" in name:
        return Transient(f"Mistral timed out ({name})")
    if "Connect" in name or "Network" in name or "Protocol" in name or "NoResponse" in name:
        return Transient(f"Mistral unreachable ({name})")
    if "Validation" in name:
        return Transient(f"Mistral answered with an unexpected shape ({name})")
    return Transient(f"Mistral call failed ({name})")


def _brief(exc: Exception) -> str:
    return str(getattr(exc, "body", "") or exc)[:200]

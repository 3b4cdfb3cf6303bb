"""The one Settings object: what it reads from the environment, and only that."""

from __future__ import annotations

import pytest

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

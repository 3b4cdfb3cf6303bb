"""Webhook senders' tokens and Standard Webhooks secrets, as `vigie serve` checks them."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest
from standardwebhooks.webhooks import Webhook

from agent.api.auth import WebhookAuth
from agent.errors import AuthError

OLD = "whsec_" + base64.b64encode(b"old-secret-old-secret-old").decode()
NEW = "whsec_" + base64.b64encode(b"new-secret-new-secret-new").decode()
OTHER = "whsec_" + base64.b64encode(b"someone-else-entirely-xx").decode()


def signed_with(secret: str, body: bytes) -> dict[str, str]:
    when = datetime.now(UTC)
    return {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(int(when.timestamp())),
        "webhook-signature": Webhook(secret).sign("msg_1", when, body.decode()),
    }


def test_a_source_s_token_or_secret_rotates_with_both_working_meanwhile() -> None:
    """A second entry for a source replaced the first: rotating a sender's token or secret
    meant refusing its requests from the change of settings to the change of sender."""
    auth = WebhookAuth(
        "wazuh:old-token-0123456789,wazuh:new-token-0123456789", f"wazuh:{OLD},wazuh:{NEW}"
    )
    for token in ("old-token-0123456789", "new-token-0123456789"):
        assert auth.check("wazuh", b"{}", {"authorization": f"Bearer {token}"}, None) is None
    with pytest.raises(AuthError):
        auth.check("wazuh", b"{}", {"authorization": "Bearer neither-0123456789"}, None)
    body = b'{"rule": {"level": 12}}'
    for secret in (OLD, NEW):
        assert auth.check("wazuh", body, signed_with(secret, body), None) == "webhook:wazuh:msg_1"
    with pytest.raises(AuthError, match="bad webhook signature"):
        auth.check("wazuh", body, signed_with(OTHER, body), None)

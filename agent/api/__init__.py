"""The HTTP side of Vigie: SIEM webhooks, the analyst API, health and metrics."""

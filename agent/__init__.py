"""Vigie: a self-hostable SOC alert-triage agent that never acts without a human's approval."""

__version__ = "0.1.0"

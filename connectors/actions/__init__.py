"""Action connectors: turn an approved proposal into the one request its action defines."""

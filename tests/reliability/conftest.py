"""The reliability suite reuses the e2e server fixture (real uvicorn on loopback)."""

from tests.e2e.conftest import api  # noqa: F401

"""The Celery entry point for `vigie worker`, `vigie beat` and `celery -A agent.celery_app`.

The only module that builds the app at import: a worker process needs it to exist by name.
"""

from __future__ import annotations

from agent.settings import load_settings
from agent.worker import create_app

app = create_app(load_settings())
import agent.worker  # noqa: E402,F401  (registers the shared tasks on this app)

"""Property-based API testing from our own OpenAPI spec (schemathesis) against real uvicorn:
no generated request may crash the server (5xx) or break the documented response shapes."""

from __future__ import annotations

from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from agent.store.sqlite import SqliteStore
from tests.e2e.conftest import api_settings, serve


def test_every_operation_survives_generated_requests(tmp_path: Path) -> None:
    with serve(api_settings(tmp_path), SqliteStore(tmp_path / "v.db")) as api:
        schema = schemathesis.openapi.from_url(api["url"] + "/openapi.json")
        failures: list[str] = []
        calls: list[int] = []
        operations = 0
        for result in schema.get_all_operations():
            operation = result.ok()
            operations += 1

            @settings(
                max_examples=25,
                deadline=None,
                derandomize=True,
                suppress_health_check=list(HealthCheck),
            )
            @given(case=operation.as_strategy())
            def run(case: schemathesis.Case) -> None:
                for headers in ({}, {"authorization": "Bearer tok-bob"}):
                    response = case.call(headers=headers)
                    calls.append(response.status_code)
                    if response.status_code >= 500:
                        failures.append(
                            f"{case.method} {case.formatted_path}: {response.status_code}"
                        )

            run()
        assert operations >= 9 and len(calls) >= operations * 10
        assert {200, 401} <= set(calls)  # both accepted and refused requests were exercised
        assert failures == [], failures[:5]


pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

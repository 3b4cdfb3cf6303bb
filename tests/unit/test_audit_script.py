"""`make audit` where PyPI answers only for a project's latest release (scripts/audit.py)."""

from __future__ import annotations

import importlib.util
from types import ModuleType
from typing import Any

from tests.conftest import REPO


def audit_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("audit_script", REPO / "scripts" / "audit.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def page(latest: str, *vulns: dict[str, Any]) -> dict[str, Any]:
    """A project's PyPI JSON, as much of it as the audit reads."""
    return {"info": {"version": latest}, "vulnerabilities": list(vulns)}


def test_a_skipped_pin_is_audited_from_its_project_page_only_if_it_is_the_latest() -> None:
    audit = audit_script()
    skipped = "Dependency not found on PyPI and could not be audited"
    deps = [
        {"name": "Jinja2", "version": "3.1.6", "skip_reason": skipped},  # latest, clean
        {"name": "urllib3", "version": "2.9.0", "skip_reason": skipped},  # latest, vulnerable
        {"name": "idna", "version": "3.20", "skip_reason": skipped},  # an older release
        {"name": "lost", "version": "1.0", "skip_reason": skipped},  # no page at all
        {"name": "requests", "version": "2.0", "vulns": [{"id": "PYSEC-1", "fix_versions": []}]},
    ]
    pages = {
        "Jinja2": page("3.1.6", {"id": "GHSA-old", "withdrawn": "2025-01-01T00:00:00"}),
        "urllib3": page("2.9.0", {"id": "GHSA-new", "fixed_in": ["2.9.1"]}),
        "idna": page("3.21"),
    }
    asked: list[str] = []

    def fetch(name: str) -> dict[str, Any] | None:
        asked.append(name)
        return pages.get(name)

    vulnerable, not_audited = audit.from_project_pages(deps, fetch)
    assert sorted(asked) == ["Jinja2", "idna", "lost", "urllib3"]  # not requests: pip-audit did
    assert [(d["name"], [v["id"] for v in d["vulns"]]) for d in vulnerable] == [
        ("urllib3", ["GHSA-new"]),
        ("requests", ["PYSEC-1"]),
    ]
    assert [d["name"] for d in not_audited] == ["idna", "lost"]
    assert "latest release: 3.21" in not_audited[0]["skip_reason"]


def test_pins_are_read_from_a_hashed_lock_by_their_canonical_name() -> None:
    audit = audit_script()
    lock = (
        "# a comment\n"
        "Jinja2==3.1.6 \\\n    --hash=sha256:aa\n"
        "python-dateutil==2.9.0.post0 ; python_version >= '3'\n"
        "zope.interface==8.0\n"
    )
    assert audit.pinned(lock) == {
        "jinja2": "3.1.6",
        "python-dateutil": "2.9.0.post0",
        "zope-interface": "8.0",
    }

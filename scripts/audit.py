"""Dependency audit of the lock files with pip-audit (PyPI's vulnerability data).

Fails (exit 1) on any known vulnerability. pip-audit asks PyPI about each pinned version
(`/pypi/NAME/VERSION/json`); where that is out of reach (some mirrors and proxies serve only the
project page, `/pypi/NAME/json`), a pin that is the project's latest release is audited from the
project page, whose vulnerabilities are the latest release's. A package nothing could answer
for is listed as *not audited*, loudly, rather than passed silently; `--strict` (or
VIGIE_AUDIT_STRICT=1) makes that a failure too, for machines that reach the service.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

#: A project's PyPI page as JSON, or None if it could not be read.
Fetch = Callable[[str], dict[str, Any] | None]


def project_page(name: str) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(f"https://pypi.org/pypi/{name}/json", timeout=20) as r:
            page: dict[str, Any] = json.load(r)
            return page
    except (OSError, ValueError):
        return None


def audit(lock: Path) -> tuple[list[dict], list[dict], int]:
    """(vulnerable packages, packages not audited, packages in the lock)."""
    pip_audit = Path(sys.executable).with_name("pip-audit")
    args = ["-r", str(lock), "--require-hashes", "--disable-pip", "--format", "json"]
    done = subprocess.run(
        [str(pip_audit), *args, "--progress-spinner", "off"],
        capture_output=True,
        text=True,
    )
    if not done.stdout.strip():  # e.g. no route to the service at all: nothing was audited
        reason = done.stderr.strip().splitlines()[-1:] or ["no output"]
        return [], [{"skip_reason": f"pip-audit failed: {reason[0][:300]}"}], 0
    pins = pinned(lock.read_text())
    deps = [  # pip-audit names a package it skipped without its version
        {"version": pins.get(canonical(d.get("name", ""))), **d}
        for d in json.loads(done.stdout)["dependencies"]
    ]
    return *from_project_pages(deps, project_page), len(deps)


def canonical(name: str) -> str:
    """A project name as PyPI compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def pinned(lock_text: str) -> dict[str, str]:
    """The lock file's `name==version` pins, by canonical name."""
    return {
        canonical(name): version
        for name, version in re.findall(
            r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", lock_text, re.M
        )
    }


def from_project_pages(deps: list[dict], fetch: Fetch) -> tuple[list[dict], list[dict]]:
    """pip-audit's answer, with each package it skipped audited from its project page when
    the pin is the latest release: (vulnerable, still not audited)."""
    names = [d["name"] for d in deps if d.get("skip_reason") and d.get("name")]
    with ThreadPoolExecutor(8) as pool:
        pages = dict(zip(names, pool.map(fetch, names), strict=True))
    out: list[dict] = []
    for d in deps:
        page = pages.get(d.get("name", "")) if d.get("skip_reason") else None
        if page is None:
            out.append(d)
            continue
        latest = page.get("info", {}).get("version")
        if latest != d.get("version"):
            out.append({**d, "skip_reason": f"{d['skip_reason']} (latest release: {latest})"})
            continue
        vulns = [
            {"id": v["id"], "fix_versions": v.get("fixed_in", [])}
            for v in page.get("vulnerabilities") or []
            if not v.get("withdrawn")
        ]
        out.append({"name": d["name"], "version": d["version"], "vulns": vulns})
    vulnerable = [d for d in out if d.get("vulns")]
    return vulnerable, [d for d in out if d.get("skip_reason")]


def main(argv: list[str]) -> int:
    strict = "--strict" in argv or os.environ.get("VIGIE_AUDIT_STRICT") == "1"
    locks = [Path(a) for a in argv if not a.startswith("--")]
    failed = False
    for lock in locks:
        vulnerable, skipped, total = audit(lock)
        print(f"{lock}: {total} packages, {len(vulnerable)} vulnerable, {len(skipped)} not audited")
        for d in vulnerable:
            ids = ", ".join(v["id"] for v in d["vulns"])
            print(f"  VULNERABLE {d['name']}=={d['version']}: {ids}")
        if skipped:
            print(f"  NOT AUDITED ({len(skipped)}), e.g. {skipped[0]['skip_reason']}")
        failed |= bool(vulnerable) or (strict and bool(skipped))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Dependency audit of the lock files with pip-audit (PyPI's vulnerability data).

Fails (exit 1) on any known vulnerability. A package the service could not answer for is
listed as *not audited*, loudly, rather than passed silently; `--strict` (or
VIGIE_AUDIT_STRICT=1) makes that a failure too, for machines that reach the service.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


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
    deps = json.loads(done.stdout)["dependencies"]
    vulnerable = [d for d in deps if d.get("vulns")]
    skipped = [d for d in deps if d.get("skip_reason")]
    return vulnerable, skipped, len(deps)


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

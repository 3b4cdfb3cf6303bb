"""docker/ checked statically (no Docker engine here): the compose file's structure and the
deployment invariants, the Dockerfile's shape, and an env example that covers every setting."""

from __future__ import annotations

import re

import pytest
import yaml

from agent.settings import NOT_SETTINGS, REPO_ROOT, Settings, load_settings, variable_names

DOCKER = REPO_ROOT / "docker"


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())


def test_compose_has_the_services_and_profiles(compose: dict) -> None:
    services = compose["services"]
    assert {"elasticsearch", "es-setup", "redis", "api", "worker", "beat"} <= set(services)
    assert services["kibana"]["profiles"] == ["kibana"]
    assert services["flower"]["profiles"] == ["flower"]
    assert services["llm"]["profiles"] == ["llm"]
    for name, svc in services.items():
        assert set(svc) <= {
            "image",
            "build",
            "env_file",
            "environment",
            "volumes",
            "restart",
            "depends_on",
            "command",
            "ports",
            "healthcheck",
            "profiles",
            "user",
            "deploy",
        }, name
        for dep in (svc.get("depends_on") or {}).values():
            assert dep["condition"] in ("service_healthy", "service_completed_successfully"), name
            # every dependency waited on exists
        for dep in svc.get("depends_on") or {}:
            assert dep in services, (name, dep)
    volumes = set(compose["volumes"])
    for svc in services.values():
        for v in svc.get("volumes", []):
            assert v.split(":")[0] in volumes


def test_long_running_services_have_healthchecks(compose: dict) -> None:
    one_shot = {"certs", "es-setup"}
    for name, svc in compose["services"].items():
        if name not in one_shot:
            assert "healthcheck" in svc and svc["healthcheck"]["test"], name


def test_images_are_pinned(compose: dict) -> None:
    for name, svc in compose["services"].items():
        image = svc["image"]
        assert ":" in image and not image.endswith(":latest"), name
        assert re.search(r":v?\d+\.\d+", image), name


def test_scaling_and_state_invariants(compose: dict) -> None:
    s = compose["services"]
    assert "container_name" not in s["worker"] and "ports" not in s["worker"]  # scales with --scale
    assert "replicas" not in str(s["beat"].get("deploy", {}))  # exactly one beat
    assert s["worker"]["command"][0] == "worker" and s["beat"]["command"] == ["beat"]
    assert s["api"]["command"][0] == "serve"
    assert "--appendonly" in s["redis"]["command"] and "yes" in s["redis"]["command"]
    es = s["elasticsearch"]["environment"]
    assert es["xpack.security.enabled"] == "true" and es["discovery.type"] == "single-node"
    for name in ("api", "worker", "beat"):
        env = s[name]["environment"]
        assert env["VIGIE_BROKER_URL"].startswith("redis://redis")
        assert env["VIGIE_STORE_URL"].startswith("redis://redis")
        assert s[name]["depends_on"]["es-setup"]["condition"] == "service_completed_successfully"
    assert "_security/api_key" in s["es-setup"]["command"]


def test_env_example_documents_every_setting_and_holds_no_secret() -> None:
    text = (DOCKER / "vigie.env.example").read_text()
    assigned = dict(
        line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#")
    )
    for name in Settings.model_fields:
        var = "MISTRAL_API_KEY" if name == "mistral_api_key" else f"VIGIE_{name.upper()}"
        assert var in assigned, var
    for secret in (
        "MISTRAL_API_KEY",
        "VIGIE_API_TOKENS",
        "VIGIE_WEBHOOK_TOKENS",
        "VIGIE_WEBHOOK_SECRETS",
        "VIGIE_ES_API_KEY",
        "VIGIE_ES_PASSWORD",
        "ELASTIC_PASSWORD",
    ):
        assert assigned[secret] == "", secret


def test_env_example_parses_as_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    text = (DOCKER / "vigie.env.example").read_text()
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, value = line.split("=", 1)
            monkeypatch.setenv(key, value)
    monkeypatch.setenv("VIGIE_ENV", "development")  # production needs real approvers
    settings = load_settings()  # every name a setting, every value in range
    assert settings.analyst == "offline" and settings.llm_audit_payload == "hash"
    compose = (DOCKER / "compose.yaml").read_text()
    for name in set(re.findall(r"\bVIGIE_[A-Z0-9_]*[A-Z0-9]\b", compose)):
        assert name in variable_names() or name in NOT_SETTINGS, name  # refused at start-up


def test_dockerfile_is_multistage_pinned_non_root_with_healthcheck() -> None:
    text = (DOCKER / "Dockerfile").read_text()
    froms = re.findall(r"^FROM (\S+)", text, re.M)
    assert len(froms) >= 2 and all(re.search(r":\d+\.\d+\.\d+", f) for f in froms)
    assert re.search(r"^USER (?!root|0)\w+", text, re.M)
    assert "HEALTHCHECK" in text
    # the build steps are the Makefile's: a venv, the hashed lock, then the project without deps
    makefile = (REPO_ROOT / "Makefile").read_text()
    assert "-m venv" in makefile and "-m venv" in text
    assert "--require-hashes -r requirements" in makefile
    assert "--require-hashes -r requirements.lock" in text and "pip install --no-deps ." in text
    for path in ("requirements.lock", "pyproject.toml", "agent", "connectors", "playbooks"):
        assert path in text


def test_the_image_build_copies_every_file_the_package_build_reads() -> None:
    """`pip install .` in the build stage reads pyproject's readme and license files: each must
    be copied before it, or the image fails to build."""
    import tomllib

    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    needed = [project["readme"], *project.get("license-files", [])]
    text = (DOCKER / "Dockerfile").read_text()
    before_install = text[: text.index("pip install --no-deps .")]
    copied = {p for line in re.findall(r"^COPY (.+)$", before_install, re.M) for p in line.split()}
    assert needed and all((REPO_ROOT / f).is_file() for f in needed)
    assert set(needed) <= copied, f"not copied into the build stage: {set(needed) - copied}"


def pins(lock: str) -> dict[str, str]:
    text = (REPO_ROOT / lock).read_text()
    return dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+) \\$", text, re.M))


def test_lock_files_pin_every_dependency_with_hashes_and_agree() -> None:
    runtime, dev = pins("requirements.lock"), pins("requirements-dev.lock")
    assert {"mistralai", "langgraph", "elasticsearch", "pydantic", "celery", "redis"} <= set(
        runtime
    )
    assert {k: dev.get(k) for k in runtime} == runtime  # the image runs what the tests ran
    for lock in ("requirements.lock", "requirements-dev.lock"):
        text = (REPO_ROOT / lock).read_text()
        assert text.count("--hash=sha256:") >= len(pins(lock))
    declared = re.findall(
        r'^  "([A-Za-z0-9_.-]+)[\[<>=]', (REPO_ROOT / "pyproject.toml").read_text(), re.M
    )
    missing = [d for d in declared if d.lower().replace("_", "-") not in {k.lower() for k in dev}]
    assert not missing, f"pyproject.toml declares what the lock does not pin: {missing}"

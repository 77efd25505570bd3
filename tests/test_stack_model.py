"""The shipped stack, asserted from the model Compose renders (issue #3).

For every service: a pinned image, a healthcheck (one-shots excepted), host ports only on
127.0.0.1 by default, no plaintext credential in ``environment``, every container-shell
``$`` escaped. Alertmanager reads exactly ``smtp_password`` and ``slack_webhook``
(REQ-BOOT-003, STORY-03, REQ-PRD-FUN-03); Spilo's passwords come only from the two Patroni
secrets (REQ-BOOT-001, REQ-PRD-FUN-06). Also the least-exposure rules of issue #6.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from conftest import REPO, copy_repo, require_tool, run_invoke

from readiness import compose, envfile, health, preflight
from readiness import secrets as secretslib

CREDENTIAL_KEY = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|API_?KEY|CREDENTIAL", re.I)
#: Names that match CREDENTIAL_KEY but hold no secret.
NOT_CREDENTIALS = {"ETCD_INITIAL_CLUSTER_TOKEN": "etcd's cluster id, guards against joining the wrong cluster"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory, docker):
    """The repository's stack, bootstrapped (secrets generated) in a temp copy."""
    dest = copy_repo(tmp_path_factory.mktemp("stack") / "repo")
    assert run_invoke(dest, "env").returncode == 0
    assert run_invoke(dest, "secrets").returncode == 0
    model = compose.load(dest)
    return dest, model


def one_shots(model):
    return {svc for svc in model.services if health.one_shot(model, svc)}


def test_stack_has_the_core_services(stack):
    _, model = stack
    expected = {"traefik", "etcd", "spilo-1", "spilo-2", "haproxy", "postgres-init", "keycloak", "minio",
                "opensearch", "prometheus", "alertmanager", "grafana", "loki", "valkey"}
    assert set(model.services) == expected
    assert model.name == "infra-core"


def test_every_image_is_pinned(stack):
    _, model = stack
    assert preflight.check_images(model, {}) == []
    for svc, spec in model.services.items():
        tag = spec["image"].rsplit("/", 1)[-1].partition(":")[2]
        assert tag and tag != "latest", svc


def test_every_long_running_service_has_a_healthcheck_and_restart_policy(stack):
    _, model = stack
    for svc, spec in sorted(model.services.items()):
        if svc in one_shots(model):
            assert spec.get("restart") == "no", svc
            continue
        test = (spec.get("healthcheck") or {}).get("test")
        assert test and test[0] in ("CMD", "CMD-SHELL"), f"{svc} has no healthcheck"
        assert spec.get("restart") == "unless-stopped", svc
        assert spec.get("deploy", {}).get("resources", {}).get("limits", {}).get("memory"), f"{svc}: no memory limit"


def test_host_ports_bind_only_loopback_by_default(stack):
    root, model = stack
    for svc, spec in model.services.items():
        for port in spec.get("ports") or []:
            assert port.get("host_ip") == "127.0.0.1", (svc, port)
    # ...and the address comes from a variable, so exposing more is a deliberate choice
    for svc, (file, spec) in compose.raw_services(root).items():
        for port in spec.get("ports") or []:
            assert str(port).startswith("${BIND_ADDRESS:-127.0.0.1}:"), (svc, file, port)


def test_no_plaintext_credential_in_environment(stack):
    root, model = stack
    values = [s.path.read_text().strip() for s in secretslib.specs(model) if not s.certificate]
    assert values and all(values)
    for svc, spec in model.services.items():
        for key, value in (spec.get("environment") or {}).items():
            value = "" if value is None else str(value)
            for secret in values:
                assert secret not in value, f"{svc}: {key} carries a secret value"
            if CREDENTIAL_KEY.search(key) and key not in NOT_CREDENTIALS:
                assert key.endswith(("_FILE", "__FILE")) and value.startswith("/run/secrets/"), (svc, key, value)


def test_every_container_shell_dollar_is_escaped(stack):
    root, model = stack
    example = envfile.read(root / ".env.example")
    facts = preflight.Facts(example=example)
    assert preflight.check_dollars(compose.raw_services(root), facts) == []
    declared = set(example.keys())
    for svc, (_, spec) in compose.raw_services(root).items():
        for field in ("command", "entrypoint"):
            for text in preflight._strings(spec.get(field)):
                for name in preflight.unescaped_refs(text):
                    assert name in declared, (svc, field, name)


def test_alertmanager_reads_exactly_the_shared_notification_secrets(stack):
    root, model = stack
    mounted = {ref["source"] for ref in model.services["alertmanager"]["secrets"]}
    assert mounted == {"smtp_password", "slack_webhook"}
    assert not [name for name in model.secrets if name.startswith("alertmanager")]
    config = (root / "infra/06-observability/alertmanager/alertmanager.yml").read_text()
    assert "smtp_auth_password_file: /run/secrets/smtp_password" in config
    assert "slack_api_url_file: /run/secrets/slack_webhook" in config
    refs = {r["source"] for spec in model.services.values() for r in spec.get("secrets") or []}
    assert not [name for name in refs if name.startswith("alertmanager_")]
    assert "/run/secrets/alertmanager_" not in config


def test_spilo_passwords_come_only_from_the_patroni_secrets(stack):
    root, model = stack
    members = [svc for svc, spec in model.services.items() if "spilo" in spec["image"] and svc != "postgres-init"]
    assert sorted(members) == ["spilo-1", "spilo-2"]
    for svc in members:
        spec = model.services[svc]
        assert {r["source"] for r in spec["secrets"]} == {"patroni_superuser_password", "patroni_replication_password"}
        script = " ".join(spec.get("entrypoint") or []) + " ".join(spec.get("command") or [])
        assert 'PGPASSWORD_SUPERUSER="$$(cat /run/secrets/patroni_superuser_password)"' in script
        assert 'PGPASSWORD_STANDBY="$$(cat /run/secrets/patroni_replication_password)"' in script
        env = spec.get("environment") or {}
        assert not [k for k in env if k.startswith("PGPASSWORD")], svc
    assert not list(root.glob("**/.env.postgres"))
    for name in ("patroni_superuser_password", "patroni_replication_password"):
        assert model.secret_x(name).get("charset") == "alnum"  # Spilo's pystache escaping


def test_least_exposure(stack):
    _, model = stack
    for svc, spec in model.services.items():
        assert not spec.get("privileged"), svc
        for vol in spec.get("volumes") or []:
            if vol.get("source") == "/var/run/docker.sock":
                assert model.x(svc).get("docker-socket"), f"{svc} mounts the Docker socket without saying why"
                assert vol.get("read_only"), svc
    command = " ".join(model.services["traefik"]["command"])
    assert "--api.insecure=false" in command and "--api.insecure=true" not in command
    labels = model.services["traefik"]["labels"]
    assert labels["traefik.http.routers.traefik-dashboard.service"] == "api@internal"
    assert "admin-auth@file" in labels["traefik.http.routers.traefik-dashboard.middlewares"]
    published = {p["target"] for spec in model.services.values() for p in spec.get("ports") or []}
    assert 8080 not in published, "Traefik's internal entrypoint (API, ping) must not be published"


def test_every_http_service_is_routed_and_probed(stack):
    _, model = stack
    hosts = model.all_routed_hosts
    for name in ("traefik", "keycloak", "minio", "s3", "opensearch", "grafana", "prometheus", "alertmanager"):
        assert f"{name}.localhost" in hosts
    probed = {ep.service for ep in health.endpoints(model)}
    assert {"traefik", "keycloak", "minio", "opensearch", "grafana", "prometheus", "alertmanager", "loki",
            "haproxy", "valkey"} <= probed


def test_config_is_clean_after_bootstrap_and_names_the_prerequisite_before(tmp_path, docker):
    fresh = copy_repo(tmp_path / "fresh")
    cmd = ["docker", "compose", "config", "--quiet"]
    before = subprocess.run(cmd, cwd=fresh, capture_output=True, text=True)
    assert before.returncode != 0
    assert "LOCAL_DOMAIN" in before.stderr and "invoke env" in before.stderr
    assert "Defaulting to a blank string" not in before.stderr
    assert run_invoke(fresh, "env").returncode == 0
    after = subprocess.run(cmd, cwd=fresh, capture_output=True, text=True)
    assert after.returncode == 0 and after.stderr == "", after.stderr


def require(tool: str) -> str:
    return require_tool(tool, "the stack's files are checked with it (.ci/run installs it)")


def test_yamllint_passes_on_every_yaml_file():
    require("yamllint")
    result = run_invoke(REPO, "lint")
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_and_amtool_accept_the_configs():
    obs = REPO / "infra" / "06-observability"
    prom = subprocess.run([require("promtool"), "check", "config", str(obs / "prometheus/prometheus.yml")],
                          capture_output=True, text=True)
    assert prom.returncode == 0, prom.stdout + prom.stderr
    am = subprocess.run([require("amtool"), "check-config", str(obs / "alertmanager/alertmanager.yml")],
                        capture_output=True, text=True)
    assert am.returncode == 0, am.stdout + am.stderr


def test_secrets_are_file_backed_under_secrets_dir(stack):
    root, model = stack
    for name, spec in model.secrets.items():
        assert Path(spec["file"]).is_relative_to(root / "secrets"), name

"""The shipped stack, asserted from the model Compose renders.

For every service: a pinned image, a healthcheck (one-shots excepted), host ports only on
127.0.0.1 by default, no plaintext credential in ``environment``, every container-shell
``$`` escaped. Alertmanager reads exactly ``smtp_password`` and ``slack_webhook``
(REQ-BOOT-003, STORY-03, REQ-PRD-FUN-03); Spilo's passwords come only from the two Patroni
secrets (REQ-BOOT-001, REQ-PRD-FUN-06). Also least exposure (nothing privileged, the Docker
socket read-only and explained, Traefik's API not published) and least privilege:
``no-new-privileges`` everywhere, ``cap_drop: [ALL]`` with only the pinned capabilities added
back, each with its reason beside it, read-only root filesystems (a documented tmpfs per path
the image writes), no credential-shaped key in ``environment``, and the Docker socket held only
by the read-only API proxy.

Each least-privilege rule is a function of the model (and of the comments of the compose
files, where a reason is required) returning one message per offending service; its test
runs it on the shipped stack (no message) and on a copy broken on purpose (a message naming
the broken service), so that a rule that can no longer fail is noticed.
"""

from __future__ import annotations

import copy
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, copy_repo, require_tool, run_invoke

from readiness.preflight import check_compose, check_storage
from readiness.preflight.facts import Facts
from readiness.prepare import secrets as secretslib
from readiness.run import health
from readiness.stack import compose, envfile, sources
from readiness.system import engine as enginelib

CREDENTIAL_KEY = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|API_?KEY|PRIVATE_?KEY|CREDENTIAL", re.I)
#: A key a secret scanner reads as a credential whatever its value: it
#: *ends* with one of these words. ``..._PASSWORD_FILE: /run/secrets/...`` does not.
CREDENTIAL_SHAPED_KEY = re.compile(r"(TOKEN|PASSWORD|PASSWD|PASS|SECRET|KEY|CREDENTIALS?)$", re.I)

#: Capabilities each service adds back after ``cap_drop: [ALL]``; the reason for each one is
#: the comment beside it in the compose file. Pinned here so that a new one is a deliberate,
#: reviewed change.
CAP_ADD = {
    "traefik": {"DAC_OVERRIDE"},
    "spilo-1": {"CHOWN", "DAC_OVERRIDE", "FOWNER", "KILL", "SETGID", "SETUID"},
    "spilo-2": {"CHOWN", "DAC_OVERRIDE", "FOWNER", "KILL", "SETGID", "SETUID"},
    "valkey": {"CHOWN", "DAC_OVERRIDE", "SETGID", "SETUID"},
}
#: Services that keep Docker's default capability set (no ``cap_drop: [ALL]``), each with its
#: reason; at most two may. None needs it today.
KEEP_DEFAULT_CAPS: dict[str, str] = {}
#: Services whose image writes beside its own files at run time, so no read-only root.
WRITABLE_ROOT = {
    "keycloak": "kc.sh start re-augments into /opt/keycloak/lib",
    "opensearch": "the demo security installer writes into /usr/share/opensearch/config",
}
#: The only service that may hold the Docker socket: the read-only API proxy of 01-gateway.
SOCKET_PROXY = "docker-proxy"
SOCKET = "/var/run/docker.sock"
#: Where a container sees the engine's socket (its host path comes from DOCKER_SOCKET).
SOCKET_TARGETS = ("/var/run/docker.sock", "/run/docker.sock")


#: A rootful engine as ``docker info`` describes one: the secrets' modes do not matter here, so
#: the stack's secrets are generated without asking an engine.
ROOTFUL = enginelib.parse_info({"ServerVersion": "26.1.5", "KernelVersion": "6.1.0", "DockerRootDir": "/var/lib/docker",
                                "OperatingSystem": "Debian GNU/Linux 12", "SecurityOptions": []},
                               docker_host=None, local_kernel="6.1.0", local_uid=1000)


@pytest.fixture(scope="module")
def stack(tmp_path_factory, compose_cli):
    """The repository's stack in a temp copy, rendered by Compose, with its secrets generated."""
    dest = copy_repo(tmp_path_factory.mktemp("stack") / "repo")
    assert run_invoke(dest, "env").returncode == 0
    model = compose.load(dest)
    secretslib.ensure(model, ROOTFUL)
    return dest, model


def one_shots(model):
    return {svc for svc in model.services if health.one_shot(model, svc)}


def test_stack_has_the_core_services(stack):
    _, model = stack
    expected = {"traefik", "docker-proxy", "etcd", "spilo-1", "spilo-2", "haproxy", "postgres-init", "keycloak",
                "minio", "opensearch", "prometheus", "alertmanager", "grafana", "loki", "valkey"}
    assert set(model.services) == expected
    assert model.name == "infra-core"


def test_every_image_is_pinned(stack):
    _, model = stack
    assert check_compose.check_images(model, {}) == []
    for svc, spec in model.services.items():
        tag = spec["image"].rsplit("/", 1)[-1].partition(":")[2]
        assert tag and tag != "latest", svc


def test_every_services_log_is_bounded(stack):
    """A full disk is among the failures users of such stacks report most, and container logs
    without a limit are a main cause: every service rotates its log, as Compose renders it,
    and preflight's check agrees (on an engine whose default driver is json-file)."""
    _, model = stack
    for svc, spec in sorted(model.services.items()):
        logging = spec.get("logging") or {}
        assert logging.get("driver") == "json-file" and logging["options"]["max-size"] == "10m", (svc, logging)
        assert int(logging["options"]["max-file"]) >= 2, svc
    assert check_storage.check_logs(model, Facts(engine=ROOTFUL), {}) == []


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
    for svc, (file, spec) in sources.raw_services(root).items():
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
            if CREDENTIAL_KEY.search(key):
                assert key.endswith(("_FILE", "__FILE")) and value.startswith("/run/secrets/"), (svc, key, value)


def test_every_container_shell_dollar_is_escaped(stack):
    root, model = stack
    example = envfile.read(root / ".env.example")
    facts = Facts(example=example)
    assert check_compose.check_dollars(sources.raw_services(root), facts) == []
    declared = set(example.keys())
    for svc, (_, spec) in sources.raw_services(root).items():
        for field in ("command", "entrypoint"):
            for text in check_compose._strings(spec.get(field)):
                for name in check_compose.unescaped_refs(text):
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
            if vol.get("target") in SOCKET_TARGETS:
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


def test_config_is_clean_after_bootstrap_and_names_the_prerequisite_before(tmp_path, compose_cli):
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


# --- least privilege --------------------------------------------------------------------------

#: Keys whose reasons are read from the compose files' comments.
_NOTED_KEYS = {"cap_add", "cap_drop", "tmpfs", "read_only", "security_opt"}


class Notes:
    """The reasons written beside some keys of the compose files, as comments.

    A reason is the line's own comment or, failing that, the comment lines right above it.
    Read per *block*: a service, or a top-level ``x-`` block whose anchor services merge
    (``<<: *spilo-member``), so a key inherited from an anchor finds its reason there.
    """

    def __init__(self, texts: list[str]) -> None:
        self.keys: dict[tuple[str, str], str] = {}
        self.items: dict[tuple[str, str, str], str] = {}
        self.merges: dict[str, str] = {}
        for text in texts:
            self._scan(text)

    def _scan(self, text: str) -> None:
        anchors: dict[str, str] = {}
        top = block = None
        keys: list[tuple[int, str]] = []  # (indent, key) of the current block, innermost last
        pending: list[str] = []
        for line in text.splitlines():
            stripped = line.strip()
            if not stripped:
                pending = []
                continue
            if stripped.startswith("#"):
                pending.append(stripped.lstrip("#").strip())
                continue
            indent = len(line) - len(line.lstrip())
            m = re.search(r"\s#\s?(.*)$", line)
            reason = (m.group(1).strip() if m else "") or " ".join(pending)
            code = line[:m.start()].strip() if m else stripped
            pending = []
            if indent == 0:
                top = code.split(":", 1)[0]
                block = top if top.startswith("x-") else None
                keys = []
                anchor = re.search(r"&(\S+)", code)
                if anchor:
                    anchors[anchor.group(1)] = top
                continue
            if top == "services" and indent == 2 and code.endswith(":"):
                block, keys = code[:-1], []
                continue
            if block is None:
                continue
            key = re.match(r"([\w.<-]+):(?:\s+(.*))?$", code)
            if key and not code.startswith("- "):
                keys = [(i, k) for i, k in keys if i < indent] + [(indent, key.group(1))]
                if key.group(1) == "<<" and (key.group(2) or "")[1:] in anchors:  # a top-level x- block
                    self.merges[block] = anchors[key.group(2)[1:]]
                if key.group(1) in _NOTED_KEYS:
                    self.keys[(block, key.group(1))] = reason
            elif code.startswith("- "):
                owner = [k for i, k in keys if i <= indent]
                if owner and owner[-1] in _NOTED_KEYS:
                    self.items[(block, owner[-1], code[2:].strip().strip("\"'"))] = reason

    def _blocks(self, service: str) -> list[str]:
        return [service] + ([self.merges[service]] if service in self.merges else [])

    def key_reason(self, service: str, key: str) -> str:
        return next((self.keys[(b, key)] for b in self._blocks(service) if self.keys.get((b, key))), "")

    def item_reason(self, service: str, key: str, item: str) -> str:
        return next((self.items[(b, key, i)] for b in self._blocks(service) for i in (item, f"CAP_{item}")
                     if self.items.get((b, key, i))), "")


def compose_texts(root: Path) -> list[str]:
    files = [root / "docker-compose.yml", *sorted(root.glob("infra/*/docker-compose.yml"))]
    return [f.read_text() for f in files]


def _caps(values: list[str] | None) -> set[str]:
    return {str(c).upper().removeprefix("CAP_") for c in values or []}


def no_new_privileges_problems(services: dict[str, dict[str, Any]]) -> list[str]:
    """Every service: ``security_opt: [no-new-privileges:true]`` (no setuid binary can raise
    a process's privileges)."""
    return [f"{svc}: no `security_opt: [no-new-privileges:true]`" for svc, spec in sorted(services.items())
            if "no-new-privileges:true" not in (spec.get("security_opt") or [])]


def capability_problems(services: dict[str, dict[str, Any]], notes: Notes) -> list[str]:
    """Every service drops every capability and adds back exactly its pinned ones (CAP_ADD),
    each with a reason beside it. At most two services may keep Docker's defaults instead
    (KEEP_DEFAULT_CAPS), each with its reason beside its ``security_opt`` (it has no cap key)."""
    out = []
    if len(KEEP_DEFAULT_CAPS) > 2:
        out.append(f"{len(KEEP_DEFAULT_CAPS)} services keep Docker's default capabilities (2 at most)")
    for svc, spec in sorted(services.items()):
        if svc in KEEP_DEFAULT_CAPS:
            if spec.get("cap_drop") or spec.get("cap_add") or not notes.key_reason(svc, "security_opt"):
                out.append(f"{svc}: keeping Docker's defaults means no cap_drop/cap_add, and the reason as a comment "
                           "beside its security_opt")
            continue
        if "ALL" not in _caps(spec.get("cap_drop")):
            out.append(f"{svc}: keeps Docker's default capabilities (no `cap_drop: [ALL]`)")
        added, want = _caps(spec.get("cap_add")), CAP_ADD.get(svc, set())
        if added != want:
            out.append(f"{svc}: cap_add {sorted(added)} is not its reviewed set {sorted(want)} (CAP_ADD)")
        out += [f"{svc}: cap_add {cap} has no reason beside it" for cap in sorted(added)
                if not notes.item_reason(svc, "cap_add", cap)]
    return out


def root_filesystem_problems(services: dict[str, dict[str, Any]], notes: Notes) -> list[str]:
    """``read_only: true`` unless the image writes beside its own files (WRITABLE_ROOT, then
    ``read_only: false`` with its reason); every tmpfs path with the reason the image writes there."""
    out = []
    for svc, spec in sorted(services.items()):
        if svc in WRITABLE_ROOT:
            # (Compose renders `read_only: false` by leaving the key out.)
            if spec.get("read_only") or not notes.key_reason(svc, "read_only"):
                out.append(f"{svc}: a writable root filesystem needs `read_only: false` with its reason beside it")
        elif spec.get("read_only") is not True:
            out.append(f"{svc}: writable root filesystem (set `read_only: true`, with a tmpfs for each path "
                       "the image writes)")
        for entry in spec.get("tmpfs") or []:
            if not notes.item_reason(svc, "tmpfs", str(entry)):
                out.append(f"{svc}: tmpfs {str(entry).split(':')[0]} has no reason beside it")
    return out


def docker_socket_problems(services: dict[str, dict[str, Any]], networks: dict[str, dict[str, Any]]) -> list[str]:
    """Only the API proxy holds the socket (read-only), on internal networks it shares with
    Traefik alone, publishes nothing, and Traefik's Docker provider points at it."""
    out = []
    for svc, spec in sorted(services.items()):
        for vol in spec.get("volumes") or []:
            if vol.get("target") in SOCKET_TARGETS and svc != SOCKET_PROXY:
                out.append(f"{svc} mounts the Docker socket ({vol.get('source')}): only {SOCKET_PROXY} may")
    proxy = services.get(SOCKET_PROXY)
    if proxy is None:
        return out + [f"no {SOCKET_PROXY} service: Traefik's Docker provider needs the read-only API proxy"]
    mounts = [v for v in proxy.get("volumes") or [] if v.get("target") in SOCKET_TARGETS]
    if not mounts or not all(v.get("read_only") for v in mounts):
        out.append(f"{SOCKET_PROXY}: must mount the engine's socket read-only (at {SOCKET})")
    if proxy.get("ports"):
        out.append(f"{SOCKET_PROXY}: publishes a port")
    proxy_nets = set(proxy.get("networks") or {})
    out += [f"{SOCKET_PROXY}: network {net} is not internal" for net in sorted(proxy_nets)
            if not networks.get(net, {}).get("internal")]
    for svc, spec in sorted(services.items()):
        if svc not in (SOCKET_PROXY, "traefik") and proxy_nets & set(spec.get("networks") or {}):
            out.append(f"{svc}: joins {SOCKET_PROXY}'s network {sorted(proxy_nets & set(spec['networks']))} "
                       "(only Traefik may reach the Docker API)")
    traefik = services.get("traefik", {})
    if f"--providers.docker.endpoint=tcp://{SOCKET_PROXY}:2375" not in (traefik.get("command") or []):
        out.append(f"traefik: --providers.docker.endpoint is not tcp://{SOCKET_PROXY}:2375")
    if not proxy_nets & set(traefik.get("networks") or {}):
        out.append(f"traefik: shares no network with {SOCKET_PROXY}")
    return out


def credential_key_problems(services: dict[str, dict[str, Any]]) -> list[str]:
    """No ``environment`` key a secret scanner reads as a credential (ends in TOKEN, PASSWORD,
    SECRET, KEY, ...), whatever its value: a scanner cannot tell a harmless one."""
    return [f"{svc}: environment key {key} looks like a credential (use a *_FILE secret or a command flag)"
            for svc, spec in sorted(services.items()) for key in sorted(spec.get("environment") or {})
            if CREDENTIAL_SHAPED_KEY.search(key)]


@pytest.fixture(scope="module")
def notes(stack):
    root, _ = stack
    return Notes(compose_texts(root))


def broken(model, service: str, **changes: Any) -> dict[str, dict[str, Any]]:
    """A deep copy of the model's services with ``changes`` applied to ``service`` (None deletes)."""
    services = copy.deepcopy(model.services)
    for key, value in changes.items():
        if value is None:
            services[service].pop(key, None)
        else:
            services[service][key] = value
    return services


def test_every_service_has_no_new_privileges(stack):
    _, model = stack
    assert no_new_privileges_problems(model.services) == []
    assert no_new_privileges_problems(broken(model, "grafana", security_opt=None)) == \
        ["grafana: no `security_opt: [no-new-privileges:true]`"]
    assert no_new_privileges_problems(broken(model, "loki", security_opt=["no-new-privileges:false"])) == \
        ["loki: no `security_opt: [no-new-privileges:true]`"]


def test_every_service_drops_all_capabilities_and_adds_back_only_its_reviewed_ones(stack, notes):
    _, model = stack
    assert capability_problems(model.services, notes) == []
    assert not KEEP_DEFAULT_CAPS, "a service keeps Docker's defaults: say why in KEEP_DEFAULT_CAPS and the file"
    # Each rule bites, naming the service.
    assert capability_problems(broken(model, "minio", cap_drop=None), notes) == \
        ["minio: keeps Docker's default capabilities (no `cap_drop: [ALL]`)"]
    assert capability_problems(broken(model, "loki", cap_add=["NET_RAW"]), notes) == \
        ["loki: cap_add ['NET_RAW'] is not its reviewed set [] (CAP_ADD)",
         "loki: cap_add NET_RAW has no reason beside it"]
    root, _ = stack
    texts = [re.sub(r"(- DAC_OVERRIDE)\s+#.*", r"\1", t) if "valkey-server" in t else t for t in compose_texts(root)]
    assert capability_problems(model.services, Notes(texts)) == ["valkey: cap_add DAC_OVERRIDE has no reason beside it"]
    # Inherited from the Spilo anchor: the reason is found there, for both members.
    assert notes.item_reason("spilo-2", "cap_add", "KILL")


def test_root_filesystems_are_read_only_where_the_image_allows(stack, notes):
    _, model = stack
    assert root_filesystem_problems(model.services, notes) == []
    assert root_filesystem_problems(broken(model, "prometheus", read_only=None), notes) == \
        ["prometheus: writable root filesystem (set `read_only: true`, with a tmpfs for each path the image writes)"]
    assert root_filesystem_problems(broken(model, "loki", tmpfs=["/scratch"]), notes) == \
        ["loki: tmpfs /scratch has no reason beside it"]
    root, _ = stack
    assert root_filesystem_problems(broken(model, "keycloak", read_only=True), notes) == \
        ["keycloak: a writable root filesystem needs `read_only: false` with its reason beside it"]
    unexplained = [re.sub(r"(\n[ ]*#[^\n]*)+\n([ ]*read_only: false)", r"\n\2", t) for t in compose_texts(root)]
    assert root_filesystem_problems(model.services, Notes(unexplained)) == \
        [f"{svc}: a writable root filesystem needs `read_only: false` with its reason beside it"
         for svc in ("keycloak", "opensearch")]
    # Every tmpfs the stack declares has its reason (the one that says where the image writes).
    assert notes.item_reason("grafana", "tmpfs", "/tmp") and notes.item_reason("spilo-1", "tmpfs", "/run")


def test_only_the_read_only_api_proxy_holds_the_docker_socket(stack):
    _, model = stack
    assert docker_socket_problems(model.services, model.networks) == []
    socket = next(v for v in model.services[SOCKET_PROXY]["volumes"] if v["target"] in SOCKET_TARGETS)
    traefik = model.services["traefik"]
    with_socket = broken(model, "traefik", volumes=[*traefik.get("volumes", []), socket])
    assert docker_socket_problems(with_socket, model.networks) == \
        [f"traefik mounts the Docker socket ({socket['source']}): only {SOCKET_PROXY} may"]
    nets = {**model.services["grafana"]["networks"], **model.services[SOCKET_PROXY]["networks"]}
    problems = docker_socket_problems(broken(model, "grafana", networks=nets), model.networks)
    assert len(problems) == 1 and problems[0].startswith("grafana: joins docker-proxy's network"), problems
    command = [a for a in traefik["command"] if not a.startswith("--providers.docker.endpoint")]
    assert docker_socket_problems(broken(model, "traefik", command=command), model.networks) == \
        [f"traefik: --providers.docker.endpoint is not tcp://{SOCKET_PROXY}:2375"]
    # The proxy's configuration is the allow-list the e2e suite tests with a refused write.
    cfg = (REPO / "infra/01-gateway/docker-proxy/haproxy.cfg").read_text()
    assert "http-request deny deny_status 403 unless read_method allowed_path" in cfg
    assert "acl read_method method GET HEAD" in cfg


def test_no_credential_shaped_key_in_environment(stack):
    _, model = stack
    assert credential_key_problems(model.services) == []
    env = {**model.services["etcd"]["environment"], "ETCD_INITIAL_CLUSTER_TOKEN": "infra-core-etcd"}
    assert credential_key_problems(broken(model, "etcd", environment=env)) == \
        ["etcd: environment key ETCD_INITIAL_CLUSTER_TOKEN looks like a credential "
         "(use a *_FILE secret or a command flag)"]
    for key in ("API_KEY", "MINIO_SECRET", "X_PASSWORD", "db_passwd"):
        assert credential_key_problems({"svc": {"environment": {key: "x"}}}), key
    for key in ("GF_SECURITY_ADMIN_PASSWORD__FILE", "MINIO_ROOT_PASSWORD_FILE", "KC_DB_USERNAME", "KEYCLOAK_HOST"):
        assert not credential_key_problems({"svc": {"environment": {key: "x"}}}), key


# --- what a read-only root still needs at run time ---------------------------------------------

#: Services whose program writes temporary files in the OS temp directory (``TMPDIR``, else
#: ``/tmp``) while it runs. Which programs do is in their code, not in Compose, so this list is
#: reviewed knowledge, each entry with where the program does it: on a read-only root each needs
#: a writable temp directory, or that part of it fails without stopping the container (a green
#: ``invoke health`` over a Loki whose retention never deletes anything).
TEMP_DIR_WRITERS = {
    "grafana": "its plugin installer stages downloads in os.TempDir()",
    "loki": "the compactor's retention sweeper reads a copy of each mark file made with "
            "os.CreateTemp(\"\", \"marker-view-\") (pkg/compactor/retention/marker.go)",
    "minio": "the image's mc client keeps its configuration in MC_CONFIG_DIR=/tmp/.mc",
    "postgres-init": "bash may spool the SQL here-document to a temporary file",
}


def _mount_point(entry: Any) -> str:
    return str(entry).split(":", 1)[0].rstrip("/") or "/"


def writable_paths(spec: dict[str, Any]) -> set[str]:
    """Container paths a service may write on a read-only root: its tmpfs mounts and the
    targets of its writable volumes."""
    paths = {_mount_point(e) for e in spec.get("tmpfs") or []}
    paths |= {str(v.get("target", "")).rstrip("/") for v in spec.get("volumes") or []
              if isinstance(v, dict) and not v.get("read_only")}
    return paths


def temp_dir_problems(services: dict[str, dict[str, Any]]) -> list[str]:
    """Every read-only service of TEMP_DIR_WRITERS has a writable temp directory: ``TMPDIR``
    below one of its writable paths, or, without TMPDIR, a tmpfs or writable mount at /tmp."""
    out = []
    for svc, why in sorted(TEMP_DIR_WRITERS.items()):
        spec = services.get(svc)
        if spec is None:
            out.append(f"{svc}: no such service (update TEMP_DIR_WRITERS)")
            continue
        if spec.get("read_only") is not True:
            continue
        tmpdir = str((spec.get("environment") or {}).get("TMPDIR") or "/tmp").rstrip("/")
        if not any(tmpdir == p or tmpdir.startswith(p + "/") for p in writable_paths(spec)):
            out.append(f"{svc}: read-only root and its temp directory {tmpdir} is not writable (add a tmpfs "
                       f"for it): {why}")
    return out


#: The environment that makes Grafana install and update no plugin at start (its [plugins]
#: section, pkg/setting/setting_plugins.go); see the comment beside it in the compose file.
GRAFANA_NO_PLUGIN_INSTALL = {"GF_PLUGINS_PREINSTALL_DISABLED": "true", "GF_PLUGINS_PREINSTALL_AUTO_UPDATE": "false"}


def grafana_plugin_problems(services: dict[str, dict[str, Any]]) -> list[str]:
    """Every Grafana on a read-only root installs and updates no plugin at start.

    Grafana 13 updates its bundled data-source plugins in place at every start; on a
    read-only root the update unloads the plugin, then fails, and the data source is gone
    while Grafana stays healthy (the upstream report is cited beside the setting)."""
    out = []
    for svc, spec in sorted(services.items()):
        image = str(spec.get("image", "")).rsplit(":", 1)[0]
        if not image.endswith("grafana/grafana") or spec.get("read_only") is not True:
            continue
        env = spec.get("environment") or {}
        out += [f"{svc}: read-only root without {key}={value} (the bundled plugins' update at start fails and "
                "unregisters them)" for key, value in sorted(GRAFANA_NO_PLUGIN_INSTALL.items())
                if str(env.get(key, "")).lower() != value]
    return out


def test_every_read_only_service_that_writes_temp_files_has_a_writable_temp_dir(stack, notes):
    _, model = stack
    assert temp_dir_problems(model.services) == []
    # The tmpfs is explained where it is declared, like every other.
    for svc in TEMP_DIR_WRITERS:
        if model.services[svc].get("read_only"):
            assert notes.item_reason(svc, "tmpfs", "/tmp"), svc
    loki = model.services["loki"]
    assert temp_dir_problems(broken(model, "loki", tmpfs=None)) == \
        [f"loki: read-only root and its temp directory /tmp is not writable (add a tmpfs for it): "
         f"{TEMP_DIR_WRITERS['loki']}"]
    # TMPDIR elsewhere counts only on a writable path: under the data directory it would do...
    moved = {**(loki.get("environment") or {}), "TMPDIR": "/loki/tmp"}
    assert temp_dir_problems(broken(model, "loki", tmpfs=None, environment=moved)) == []
    # ...on the read-only root it would not.
    moved["TMPDIR"] = "/var/tmp"
    assert temp_dir_problems(broken(model, "loki", environment=moved))[0].startswith(
        "loki: read-only root and its temp directory /var/tmp is not writable")
    # A service that keeps a writable root needs nothing more.
    assert temp_dir_problems(broken(model, "loki", tmpfs=None, read_only=None)) == []


def test_grafana_installs_and_updates_no_plugin_at_start(stack):
    _, model = stack
    assert grafana_plugin_problems(model.services) == []
    env = model.services["grafana"]["environment"]
    for key, value in GRAFANA_NO_PLUGIN_INSTALL.items():
        without = {k: v for k, v in env.items() if k != key}
        assert grafana_plugin_problems(broken(model, "grafana", environment=without)) == \
            [f"grafana: read-only root without {key}={value} (the bundled plugins' update at start fails and "
             "unregisters them)"]
    assert grafana_plugin_problems(broken(model, "grafana", environment={**env, "GF_PLUGINS_PREINSTALL_DISABLED":
                                                                          "false"}))
    # A writable root would take the update (then it is a choice, not a trap).
    without = {k: v for k, v in env.items() if k not in GRAFANA_NO_PLUGIN_INSTALL}
    assert grafana_plugin_problems(broken(model, "grafana", environment=without, read_only=None)) == []

"""End-to-end: the repository's compose stack, booted with locally built images.

The tests run in file order and share one stack (``conftest.stack``): a fresh clone is
bootstrapped and booted once, then disturbed and checked. Every ``invoke`` call is the
clone's own CLI with the e2e override (``READINESS_EXTRA_COMPOSE_FILES``). See README.md in
this directory for what this proves and what it cannot.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shlex
import ssl
import time
import uuid
from pathlib import Path

import pytest
import yaml

from readiness.system import engine as enginelib

from .dbclient import wait_for
from .stack import SWAPPABLE, Stack, data_dirs, fake_kind, image_kind, one_shot_services, socket_proxies, x_readiness

pytestmark = [pytest.mark.e2e, pytest.mark.docker]

BOOTSTRAP_STEPS = ("env", "secrets", "certs", "dirs", "networks")


def out(res) -> str:
    return f"exit {res.returncode}\n--- stdout\n{res.stdout}\n--- stderr\n{res.stderr}"


def file_digest(root: Path, *parts: str) -> dict[str, tuple[str, int, int]]:
    """sha256, mode and owner of every file under ``parts``."""
    found = {}
    for part in parts:
        base = root / part
        for p in sorted([base] if base.is_file() else base.rglob("*")):
            if p.is_file():
                st = p.stat()
                found[str(p.relative_to(root))] = (hashlib.sha256(p.read_bytes()).hexdigest(),
                                                   st.st_mode & 0o7777, st.st_uid)
    return found


def routed_hosts(spec: dict) -> dict[str, list[str]]:
    """Router -> hostnames of its Host() rule, read from the service's labels."""
    out: dict[str, list[str]] = {}
    for key, value in (spec.get("labels") or {}).items():
        m = re.fullmatch(r"traefik\.http\.routers\.([^.]+)\.rule", key)
        if m:
            out[m.group(1)] = sorted(set(re.findall(r"Host\(\s*`([^`]+)`", str(value))))
    return out


def expected_endpoints(stack: Stack, model: dict) -> dict[tuple[str, str], tuple[str, tuple[int, ...]]]:
    """(service, kind) -> (target, accepted statuses), from the shipped x-readiness.health."""
    out = {}
    for svc, spec in model["services"].items():
        health = x_readiness(spec).get("health") or {}
        if "path" in health:
            routers = routed_hosts(spec)
            every = sorted({h for v in routers.values() for h in v})
            hosts = routers[health["router"]] if "router" in health else every
            out[(svc, "https")] = (f"https://{hosts[0]}:{stack.https_port}{health['path']}",
                                   tuple(health.get("expect", [200])))
        if "tcp" in health:
            published = next(p["published"] for p in spec["ports"] if int(p["target"]) == int(health["tcp"]))
            out[(svc, "tcp")] = (f"127.0.0.1:{published}", ())
    return out


def standin_services(model: dict) -> list[str]:
    """Services the busybox stand-ins replace (the Docker API proxy always runs the real HAProxy)."""
    proxies = set(socket_proxies(model))
    return sorted(s for s, spec in model["services"].items()
                  if not image_kind(str(spec.get("image", ""))) and s not in proxies)


def boot_lines(stack: Stack, model: dict) -> dict[str, int]:
    """Data dir -> lines its stand-in appended (one per container start), read through the
    engine (the files belong to the services' uids, which the host user may not be)."""
    markers = [Path(vol["source"]) / f".standin-{svc}"
               for svc in standin_services(model) for vol in data_dirs(stack.root, model["services"][svc])]
    script = "; ".join(f"echo $(cat {shlex.quote('/data/' + str(m.relative_to(stack.root / 'data')))} "
                       "2>/dev/null | wc -l)" for m in markers)
    counts = stack.data_sh(script).split()
    return {str(m.relative_to(stack.root)): int(n) for m, n in zip(markers, counts, strict=True)}


# ---------------------------------------------------------------------------------------------


def test_override_swaps_only_image_command_entrypoint_healthcheck(stack: Stack):
    """The e2e stack is the shipped stack: only the allowed keys differ in the rendered model."""
    shipped, swapped = stack.render(with_override=False), stack.render(with_override=True)
    override = yaml.safe_load(stack.override.read_text())

    assert {k: v for k, v in shipped.items() if k != "services"} == \
        {k: v for k, v in swapped.items() if k != "services"}, "networks, secrets, volumes or name changed"
    assert shipped["name"] == stack.project
    assert sorted(shipped["services"]) == sorted(swapped["services"]) == sorted(override["services"])
    for svc, spec in shipped["services"].items():
        allowed = set(SWAPPABLE) | ({"ulimits"} if svc in stack.ulimit_caps else set())
        assert set(override["services"][svc]) <= allowed, svc
        assert "user" not in override["services"][svc], f"{svc}: the stand-in image carries the uid, not the override"
        new = swapped["services"][svc]
        for key in sorted(set(spec) | set(new)):
            if key not in allowed:
                assert spec.get(key) == new.get(key), f"{svc}.{key} differs from the shipped value"
        assert new["image"].startswith("readiness-e2e/"), f"{svc} would pull {new['image']}"
        # ulimits: only lowered to what this engine can apply (a host limit), never otherwise.
        for name, cap in stack.ulimit_caps.get(svc, {}).items():
            want = spec["ulimits"][name]
            assert new["ulimits"][name] == cap
            assert all(want[k] == -1 or want[k] > cap[k] for k in ("soft", "hard")), (svc, name, want, cap)
            assert all(new["ulimits"][n] == v for n, v in spec["ulimits"].items() if n not in stack.ulimit_caps[svc])
        if image_kind(spec["image"]):
            # The real binaries run the shipped command line and entrypoint.
            assert new.get("command") == spec.get("command"), svc
            assert new.get("entrypoint") == spec.get("entrypoint"), svc
    # Traefik and Alertmanager also keep their shipped healthcheck command (only the timing
    # changes); Prometheus' needs `promtool check ready`, newer than Debian's promtool.
    for svc in ("traefik", "alertmanager"):
        assert swapped["services"][svc]["healthcheck"]["test"] == shipped["services"][svc]["healthcheck"]["test"]


def test_fresh_clone_bootstrap_up_health(stack: Stack):
    """Fresh clone -> invoke bootstrap -> invoke up -> invoke health: every check green, TLS verified."""
    root = stack.root
    assert not (root / "data").exists() and not any((root / "secrets" / "certs").glob("*.pem"))
    model = stack.render(with_override=False)
    services = sorted(model["services"])

    boot = stack.invoke("bootstrap", timeout=300)
    assert boot.returncode == 0, out(boot)
    assert "nothing blocks boot" in boot.stdout, out(boot)
    assert (stack.ca).is_file()

    t0 = time.monotonic()
    up = stack.invoke("up", "--timeout", "240")
    stack.events.append(f"first invoke up: {time.monotonic() - t0:.1f} s")
    assert up.returncode == 0, out(up)
    assert f"all {len(services)} services are up and healthy" in up.stdout, out(up)
    stack.booted = True

    health = stack.invoke("health", "--json", timeout=120)
    assert health.returncode == 0, out(health)
    doc = json.loads(health.stdout)
    assert doc["ok"] is True
    checks = {(c["service"], c["kind"]): c for c in doc["checks"]}
    assert all(c["ok"] for c in checks.values()), [c for c in checks.values() if not c["ok"]]

    # Every service has its container check; the one-shot completed, the others are healthy.
    assert {s for s, kind in checks if kind == "container"} == set(services)
    for svc in services:
        detail = checks[(svc, "container")]["detail"]
        assert detail == ("completed" if svc in one_shot_services(model) else "healthy"), (svc, detail)

    # Every endpoint x-readiness declares was probed at the right URL and answered as expected:
    # HTTPS through Traefik on the published port, TLS verified against rootCA.pem.
    expected = expected_endpoints(stack, model)
    assert {k for k in checks if k[1] != "container"} == set(expected)
    for key, (target, statuses) in expected.items():
        assert checks[key]["target"] == target, key
        if key[1] == "https":
            assert checks[key]["detail"] in {f"HTTP {s}" for s in statuses}, (key, checks[key]["detail"])
    # The ones behind basicAuth answer 401 without credentials: the route and middleware exist.
    for svc in ("traefik", "prometheus", "alertmanager", "loki"):
        assert checks[(svc, "https")]["detail"] == "HTTP 401", svc
    # OpenSearch is reached over HTTPS (scheme=https + the opensearch-insecure serversTransport),
    # and answers 401 without credentials, as its security plugin does (its contract fake; the
    # busybox stand-in, used where the fakes cannot run, has no credentials to ask for).
    faked = fake_kind(str(model["services"]["opensearch"]["image"]))
    assert checks[("opensearch", "https")]["detail"] == ("HTTP 401" if faked else "HTTP 200")

    # Each stand-in really ran as its service's uid, read every secret it mounts and wrote into
    # every data dir (its log says so, and its file there has the expected owner as the engine
    # maps it: seen by a container, and on the host through the engine's uid map).
    engine = enginelib.info()
    for svc in standin_services(model):
        spec = model["services"][svc]
        x = x_readiness(spec)
        user = str(x.get("user") or "0:0")
        dirs = data_dirs(root, spec)
        line = (f"standin[{svc}]: ok as uid {user}: {len(spec.get('secrets') or [])} secret(s) read, "
                f"{len(dirs)} data dir(s) written")
        assert line in stack.logs(svc), (svc, line)
        owner = str(x.get("data-owner") or user)
        for vol in dirs:
            marker = Path(vol["source"]) / f".standin-{svc}"
            assert stack.data_owner(marker) == owner, (svc, marker, owner)
            with contextlib.suppress(PermissionError):  # a host user may not see into the dir
                st = marker.stat()
                uid, gid = (int(x) for x in owner.split(":"))
                assert (st.st_uid, st.st_gid) == (engine.host_uid(uid), engine.host_gid(gid)), (svc, marker)


def test_routing_tls_basic_auth_and_real_backends(running: Stack):
    """Through Traefik as a user: verified TLS, redirects, basicAuth, real Prometheus/Alertmanager."""
    stack = running
    model = stack.render(with_override=False)
    hosts = sorted({h for spec in model["services"].values() for v in routed_hosts(spec).values() for h in v})

    # TLS: the mkcert leaf names every routed host, verifies against rootCA.pem, and does NOT
    # verify against the system trust store (so the health check's verification is meaningful).
    with stack.tls_socket("grafana.localhost") as sock:
        names = sorted(v for k, v in sock.getpeercert()["subjectAltName"] if k == "DNS")
    assert set(hosts) <= set(names), set(hosts) - set(names)
    for host in hosts:
        stack.tls_socket(host).close()
    with pytest.raises(ssl.SSLCertVerificationError):
        stack.tls_socket("grafana.localhost", cafile=Path())

    # Port 80 only redirects to HTTPS.
    status, headers = stack.http("grafana.localhost", "/api/health")
    assert status in (301, 308) and headers["location"].startswith("https://grafana.localhost"), (status, headers)

    # basicAuth (admin-auth@file) reads the htpasswd secret: 401 without, 200 with credentials.
    assert stack.https("prometheus.localhost", "/-/ready")[0] == 401
    status, _, body = stack.https("prometheus.localhost", "/-/ready", auth=True)
    assert status == 200, body

    # Prometheus runs the repository's configuration and rules, and reaches Alertmanager by name.
    status, _, body = stack.https("prometheus.localhost", "/api/v1/rules", auth=True)
    groups = {g["name"]: {r["name"] for r in g["rules"]} for g in json.loads(body)["data"]["groups"]}
    assert groups == {"core-stack": {"TargetDown", "PostgresNoLeader"}}, groups
    status, _, body = stack.https("prometheus.localhost", "/api/v1/status/config", auth=True)
    assert "stack: infra-core" in json.loads(body)["data"]["yaml"]
    deadline = time.monotonic() + 60
    while True:
        _, _, body = stack.https("prometheus.localhost", "/api/v1/alertmanagers", auth=True)
        active = [a["url"] for a in json.loads(body)["data"]["activeAlertmanagers"]]
        if active or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert any("alertmanager:9093" in url for url in active), active

    # Alertmanager loaded the repository's file, with both secrets as *_file paths (no values).
    status, _, body = stack.https("alertmanager.localhost", "/api/v2/status", auth=True)
    assert status == 200
    status_doc = json.loads(body)
    original = status_doc["config"]["original"]
    assert "smtp_auth_password_file: /run/secrets/smtp_password" in original
    assert "slack_api_url_file: /run/secrets/slack_webhook" in original
    for name in ("smtp_password", "slack_webhook"):
        assert (stack.root / "secrets" / name).read_text().strip() not in original
    assert status_doc["cluster"]["status"] == "disabled"  # --cluster.listen-address= (single node)

    # An alert for the notification pipeline (checked in test_alertmanager_reads_secret_files
    # once group_wait has passed).
    alert = json.dumps([{"labels": {"alertname": "E2EProbe", "job": "e2e", "severity": "warning"}}]).encode()
    status, _, body = stack.https("alertmanager.localhost", "/api/v2/alerts", method="POST", body=alert, auth=True)
    assert status == 200, body
    stack.alert_posted_at = time.monotonic()

    # OpenSearch: Traefik -> HTTPS backend with a self-signed certificate (only the
    # opensearch-insecure@file serversTransport makes that work) -> the backend's own 401.
    status, headers, body = stack.https("opensearch.localhost", "/")
    if fake_kind(str(model["services"]["opensearch"]["image"])):
        assert status == 401 and headers.get("www-authenticate", "").startswith("Basic"), (status, headers)
    else:
        assert (status, body) == (200, b"ok\n")


def test_stopped_service_is_named_then_recovers(running: Stack):
    """Stop grafana: health fails naming it and why; start it: health --wait recovers."""
    stack = running
    assert stack.compose("stop", "grafana").returncode == 0
    try:
        # Traefik drops the route after the engine's stop event (and its provider throttle);
        # until then it dials the gone container's address, which may take longer than the
        # probe's 5 s to fail. Waiting for the 404 makes the verdict below deterministic.
        deadline = time.monotonic() + 60
        while True:
            try:
                status = stack.https("grafana.localhost", "/api/health")[0]
            except OSError:
                status = None
            if status == 404 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert status == 404, f"Traefik still routes to the stopped grafana after 60 s (last: {status})"
        # `up` reads the containers with one `docker ps` of the project: Compose's own answer,
        # the stopped one and the completed one-shot included.
        fields = ("Name", "State", "Health", "ExitCode")
        theirs = {svc: {k: c[k] for k in fields} | {"ID": c["ID"][:12]} for svc, c in stack.ps().items()}
        ours = {c["Service"]: {k: c[k] for k in fields} | {"ID": c["ID"][:12]}
                for c in enginelib.project_containers(stack.project)}
        assert ours == theirs and theirs["grafana"]["State"] == "exited", (ours, theirs)
        res = stack.invoke("health", "--json")
        assert res.returncode == 1, out(res)
        doc = json.loads(res.stdout)
        assert doc["ok"] is False
        failing = {(c["service"], c["kind"]): c["detail"] for c in doc["checks"] if not c["ok"]}
        assert set(failing) == {("grafana", "container"), ("grafana", "https")}, failing
        assert failing[("grafana", "container")].startswith("container exited"), failing
        assert failing[("grafana", "https")] == "HTTP 404 (expected 200)", failing

        text = stack.invoke("health")
        assert text.returncode == 1
        bad = [line for line in text.stdout.splitlines() if "UNHEALTHY" in line]
        assert bad and all(line.startswith("grafana ") for line in bad), text.stdout
        assert "2 failing" in text.stdout
    finally:
        started = stack.compose("start", "grafana")
    assert started.returncode == 0, started.stderr
    res = stack.invoke("health", "--wait", "--timeout", "60", timeout=120)
    assert res.returncode == 0, out(res)
    # (--wait prints a progress line per attempt that still fails; the verdict is the last line.)
    last = res.stdout.strip().splitlines()[-1]
    assert "checks pass" in last and "failing" not in last, res.stdout


def test_alertmanager_reads_secret_files(running: Stack):
    """Alertmanager (uid 65534) reads smtp_password and slack_webhook from /run/secrets."""
    stack = running
    # Readable by the container's own user: same bytes as on the host.
    uid = stack.compose("exec", "-T", "alertmanager", "id", "-u").stdout.strip()
    assert uid == "65534"
    for name in ("smtp_password", "slack_webhook"):
        res = stack.compose("exec", "-T", "alertmanager", "sha256sum", f"/run/secrets/{name}")
        assert res.returncode == 0, res.stderr
        assert res.stdout.split()[0] == hashlib.sha256((stack.root / "secrets" / name).read_bytes()).hexdigest()

    # Alertmanager itself read slack_api_url_file when it notified: the only place the host
    # `hooks.slack.invalid` exists is that secret file's content (its URL is redacted in logs).
    if stack.alert_posted_at is None:
        alert = json.dumps([{"labels": {"alertname": "E2EProbe", "job": "e2e"}}]).encode()
        assert stack.https("alertmanager.localhost", "/api/v2/alerts", method="POST", body=alert, auth=True)[0] == 200
        stack.alert_posted_at = time.monotonic()
    deadline = stack.alert_posted_at + 90  # group_wait is 30 s in alertmanager.yml
    while True:
        logs = stack.logs("alertmanager")
        if "integration=slack" in logs and "hooks.slack.invalid" in logs or time.monotonic() > deadline:
            break
        time.sleep(2)
    slack = [line for line in logs.splitlines() if "integration=slack" in line]
    assert any("hooks.slack.invalid" in line for line in slack), logs[-3000:]
    assert "permission denied" not in logs.lower() and "no such file" not in logs.lower(), logs[-3000:]
    assert (stack.root / "secrets" / "slack_webhook").read_text().strip() not in logs  # never logged


def test_down_then_up_reuses_secrets_and_data(running: Stack):
    """invoke down, invoke up: nothing regenerated, every data dir found again by its service."""
    stack = running
    model = stack.render(with_override=False)
    prepared = ("secrets", ".env")
    before = file_digest(stack.root, *prepared)
    assert any(k.startswith("secrets/certs/") for k in before)
    lines_before = boot_lines(stack, model)
    assert lines_before and all(n >= 1 for n in lines_before.values()), lines_before
    marker = stack.root / "data" / "grafana" / f"e2e-{uuid.uuid4().hex[:8]}"
    stack.data_write(marker, "written before down\n")
    assert stack.data_entries(stack.root / "data" / "prometheus")  # the real Prometheus' TSDB
    ids_before = {svc: stack.container_id(svc) for svc in model["services"]}

    down = stack.invoke("down", timeout=300)
    assert down.returncode == 0, out(down)
    assert stack.ps() == {}, "containers left after invoke down"
    assert stack.data_read(marker) == "written before down\n"

    up = stack.invoke("up", "--timeout", "240")
    assert up.returncode == 0, out(up)
    for step in BOOTSTRAP_STEPS:
        line = next(line for line in up.stdout.splitlines() if line.startswith(f"{step}:"))
        assert "nothing changed" in line, line
    assert file_digest(stack.root, *prepared) == before, "a secret, certificate or .env changed"
    assert stack.data_read(marker) == "written before down\n"
    ids_after = {svc: stack.container_id(svc) for svc in model["services"]}
    assert all(ids_after[s] and ids_after[s] != ids_before[s] for s in ids_before), "containers not recreated"
    # Each stand-in started once more and appended to the file it wrote before: same data.
    lines_after = boot_lines(stack, model)
    assert lines_after == {k: n + 1 for k, n in lines_before.items()}, (lines_before, lines_after)

    health = stack.invoke("health", "--json")
    assert health.returncode == 0, out(health)


def test_data_dir_with_wrong_owner_fails_up_naming_service_and_dir(running: Stack):
    """A data dir chowned to another uid: invoke up fails naming the service and the directory."""
    stack = running
    loki = stack.root / "data" / "loki"
    owner = stack.data_owner(loki)
    stack.data_chown(loki, "4242:4242")  # through the engine: the host user may not own either uid
    try:
        up = stack.invoke("up", "--timeout", "60")
        assert up.returncode != 0, out(up)
        text = up.stdout + up.stderr
        # The owner as the host sees it, and as a container does where the engine maps uids.
        engine = enginelib.info()
        host_owner = f"{engine.host_uid(4242)}:{engine.host_gid(4242)}"
        assert "data/loki (loki)" in text and f"owned by {host_owner}" in text and "10001" in text, out(up)
        if host_owner != "4242:4242":
            assert "(uid 4242 in a container)" in text, out(up)
        assert "Traceback" not in text
        # The stand-in catches it too (it is not a vacuous check): as uid 10001 it cannot write.
        run = stack.compose("run", "--rm", "--no-deps", "-T", "loki", timeout=120)
        assert run.returncode != 0
        assert "cannot write into data directory /loki as uid 10001:10001" in run.stdout + run.stderr
    finally:
        stack.data_chown(loki, owner)

    # Same for a secret its service's uid cannot read (grafana runs as 472; 0400 root file).
    secret = stack.root / "secrets" / "grafana_admin_password"
    mode = secret.stat().st_mode & 0o7777
    os.chmod(secret, 0o400)
    try:
        pre = stack.invoke("preflight", "--json")
        assert pre.returncode != 0
        found = [f for f in json.loads(pre.stdout)["findings"] if f["id"] == "secret.unreadable"]
        assert [f.get("service") for f in found] == ["grafana"], found
        run = stack.compose("run", "--rm", "--no-deps", "-T", "grafana", timeout=120)
        assert run.returncode != 0
        assert "secret /run/secrets/grafana_admin_password is not readable by uid 472:0" in run.stdout + run.stderr
    finally:
        os.chmod(secret, mode)

    # Nothing of the running stack was touched.
    health = stack.invoke("health", "--json")
    assert health.returncode == 0, out(health)



# Capability bits of /proc/<pid>/status (linux/capability.h), for the ones the stack adds back.
CAP_BITS = {"CHOWN": 0, "DAC_OVERRIDE": 1, "FOWNER": 3, "KILL": 5, "SETGID": 6, "SETUID": 7}


def api_request(stack: Stack, method: str, path: str, body: str = "") -> tuple[int, str]:
    """One raw HTTP/1.0 request to the Docker API proxy, sent from inside the Traefik container
    (busybox nc): the proxy is on the internal docker-api network, which only Traefik joins."""
    request = (f"{method} {path} HTTP/1.0\r\nHost: docker\r\nContent-Type: application/json\r\n"
               f"Content-Length: {len(body.encode())}\r\n\r\n{body}")
    res = stack.compose("exec", "-T", "traefik", "sh", "-c", 'printf "%s" "$1" | nc docker-proxy 2375',
                        "sh", request, timeout=60)
    assert res.returncode == 0, out(res)
    status_line, _, rest = res.stdout.partition("\n")
    m = re.match(r"HTTP/1\.[01] (\d{3})", status_line)
    assert m, res.stdout[:500]
    # (stdout is read as text: universal newlines have turned each CRLF into LF)
    return int(m.group(1)), rest.replace("\r\n", "\n").partition("\n\n")[2]


def test_least_privilege_and_the_read_only_docker_api(running: Stack):
    """Least privilege on the running stack: every container runs with no-new-privileges, every
    capability dropped but its reviewed ones, and a read-only root where the file says so; the
    real Traefik, Prometheus, Alertmanager (and the real database tier) run that way; Traefik
    holds no Docker socket and reads the API through the proxy, which refuses a write that the
    engine itself would accept."""
    import http.client
    import socket
    import subprocess

    from readiness.system.engine import socket_path

    stack = running
    model = stack.render(with_override=False)
    project = model["name"]

    def inspect(ref: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["docker", "inspect", "--format", "{{json .HostConfig}}", ref],
                              capture_output=True, text=True, timeout=60)

    # 1. What the engine applied to every container is what the compose files say.
    for svc, spec in sorted(model["services"].items()):
        res = inspect(stack.container_id(svc))
        assert res.returncode == 0, res.stderr
        host = json.loads(res.stdout)
        assert "no-new-privileges:true" in (host.get("SecurityOpt") or []), (svc, host.get("SecurityOpt"))
        assert host.get("CapDrop") == ["ALL"], (svc, host.get("CapDrop"))
        added = sorted(str(c).upper().removeprefix("CAP_") for c in host.get("CapAdd") or [])
        assert added == sorted(spec.get("cap_add") or []), (svc, host.get("CapAdd"))
        assert bool(host.get("ReadonlyRootfs")) == bool(spec.get("read_only")), svc
        mounts = [*(host.get("Binds") or []), *(m.get("Source", "") for m in host.get("Mounts") or [])]
        assert svc == "docker-proxy" or not any("docker.sock" in m for m in mounts), (svc, mounts)

    # 2. The real programs' PID 1: no_new_privs set, the bounding set is exactly the capabilities
    #    added back, and a process that dropped to its user has none left (Prometheus,
    #    Alertmanager, HAProxy, Patroni, Valkey after setpriv).
    real = [s for s in sorted(model["services"]) if image_kind(str(model["services"][s].get("image", "")))
            and s not in one_shot_services(model)]
    assert {"traefik", "prometheus", "alertmanager"} <= set(real), real
    for svc in real:
        res = stack.compose("exec", "-T", svc, "cat", "/proc/1/status", timeout=60)
        assert res.returncode == 0, out(res)
        fields = dict(re.findall(r"^(\w+):\s+(.*)$", res.stdout, re.M))
        allowed = sum(1 << CAP_BITS[c] for c in model["services"][svc].get("cap_add") or [])
        assert fields["NoNewPrivs"] == "1", svc
        assert int(fields["CapBnd"], 16) == allowed, (svc, fields["CapBnd"], hex(allowed))
        assert int(fields["CapEff"], 16) & ~allowed == 0, (svc, fields["CapEff"])
        if fields["Uid"].split()[0] != "0":
            assert int(fields["CapEff"], 16) == 0, (svc, fields["Uid"], fields["CapEff"])

    # 3. Through the proxy, the read-only calls of Traefik's Docker provider answer, with this
    #    stack's containers (the routes the scenarios above used were found this way).
    assert api_request(stack, "HEAD", "/_ping")[0] == 200
    status, body = api_request(stack, "GET", "/v1.41/containers/json")
    assert status == 200
    names = {n for c in json.loads(body) for n in c["Names"]}
    assert f"/{project}-traefik-1" in names, sorted(names)[:20]

    # 4. A write is refused and never reaches the engine; so are the other calls off the list.
    helper = str((model.get("x-readiness") or {}).get("helper-image") or "busybox:1.37.0")
    name = f"{project}-refused-{uuid.uuid4().hex[:8]}"
    create = json.dumps({"Image": helper, "Cmd": ["true"]})
    assert api_request(stack, "POST", f"/v1.41/containers/create?name={name}", create)[0] == 403
    assert inspect(name).returncode != 0, f"the proxy let {name} be created"
    traefik_id = stack.container_id("traefik")
    for method, path in (("DELETE", f"/v1.41/containers/{traefik_id}?force=1"),
                         ("POST", f"/v1.41/containers/{traefik_id}/exec"),
                         ("GET", f"/v1.41/containers/{traefik_id}/logs?stdout=1"),
                         ("GET", f"/v1.41/containers/{traefik_id}/export"),
                         ("GET", "/v1.41/images/json"), ("GET", "/v1.41/info"),
                         ("GET", "/v1.41/containers/../images/json"), ("POST", "/v1.41/images/create?fromImage=x")):
        assert api_request(stack, method, path)[0] == 403, (method, path)
    assert stack.ps()["traefik"]["State"] == "running"
    # HAProxy logs a request once its response has gone out, and the engine's log driver
    # then takes its time: waited for, not read at once.
    wait_for("the refused create in docker-proxy's log",
             lambda: f"POST /v1.41/containers/create?name={name}" in stack.logs("docker-proxy"), timeout=30)

    # The control: the engine itself accepts this very request (so the 403 is the proxy's).
    path = socket_path(enginelib.cli_endpoint())
    if path:
        class UnixConnection(http.client.HTTPConnection):
            def connect(self) -> None:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.settimeout(30)
                self.sock.connect(path)

        conn = UnixConnection("docker")
        try:
            conn.request("POST", f"/v1.41/containers/create?name={name}", body=create,
                         headers={"Content-Type": "application/json"})
            assert conn.getresponse().status == 201
        finally:
            conn.close()
            subprocess.run(["docker", "rm", "-f", name], capture_output=True, timeout=60)

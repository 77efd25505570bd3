"""End-to-end: ``invoke doctor`` on the session's stack, after its services logged secrets.

Four services of different images -- etcd (a Debian root filesystem), Traefik (busybox), and
two contract fakes (Python on Debian) -- write into their own log (their PID 1's stdout) every
secret value of ``secrets/``, URL-encoded and in base64 (HTTP Basic), between bytes that are
not UTF-8, plus credentials the toolkit cannot know (a URL's password, a bearer token). The
lines are read back with ``docker compose logs`` first, so the scan below proves something.
Then ``invoke doctor --json``: its document is valid, every part was gathered (logs of each
service, the Patroni cluster with its leader, ``docker info``), and no member of the archive --
nor its names, nor anything nested in it -- nor the command's stdout or stderr holds any of
those values in any encoding the redaction covers (tests/test_doctor.py's ``forms``). Runs
after test_verify.py and before test_backup.py (conftest orders the files).
"""

from __future__ import annotations

import base64
import json
import stat
import subprocess
from pathlib import Path
from urllib.parse import quote

import pytest
from jsonschemas import validator
from test_doctor import archive_members, forms, leaks

from . import realdb
from .stack import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.docker]

#: Services that log the secrets: each has a shell (busybox or Debian's) to write with.
LOGGERS = ("etcd", "traefik", "grafana", "minio")
#: Credentials in shapes the toolkit knows only by their shape (no file holds them).
UNKNOWN_PASSWORD = "Unknown0Shape0Password42"
UNKNOWN_TOKEN = "9c1d7e2f4a6b8c0d1e3f5a7b9c0d2e4f"


def secret_values(stack: Stack) -> dict[str, bytes]:
    """Every value in the clone's secrets/ (what doctor promises to redact), by file name; not
    the empty ones (a lock file)."""
    root = stack.root / "secrets"
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name not in ("README.md", ".gitkeep") and len(p.read_bytes().strip()) >= 4}


def log_lines(values: dict[str, bytes]) -> bytes:
    """Each value as is, URL-encoded between bytes that are not UTF-8, and in an HTTP Basic
    credential; of a certificate (public: only its lines as they are are redacted) or a key, one
    line. Every line holds one secret."""
    lines = []
    for name, value in values.items():
        plain = value.strip()
        public = b"\n" in plain and b"PRIVATE KEY" not in plain
        if b"\n" in plain:
            plain = next(line for line in plain.splitlines() if not line.startswith(b"-----"))
        lines.append(b"doctor-e2e " + name.encode() + b" is " + plain)
        if not public:
            lines += [b"doctor-e2e url-encoded \xff\xfe" + quote(plain.decode(), safe="").encode() + b"\xc3(",
                      b"doctor-e2e basic " + base64.b64encode(b"admin:" + plain)]
    lines += [f"doctor-e2e connecting to https://deploy:{UNKNOWN_PASSWORD}@registry.invalid/v2/".encode(),
              f"doctor-e2e Authorization: Bearer {UNKNOWN_TOKEN}".encode()]
    return b"\n".join(lines) + b"\n"


def write_to_log(stack: Stack, service: str, data: bytes) -> None:
    """``data`` into the service's log: its PID 1's stdout, written from inside (stdin, never argv),
    as the container's user (PID 1's: root without capabilities may not open another's fds)."""
    cid = stack.container_id(service)
    assert cid, f"{service} has no container"
    res = subprocess.run(["docker", "exec", "-i", cid, "sh", "-c", "cat > /proc/1/fd/1"], input=data,
                         capture_output=True, timeout=60)
    assert res.returncode == 0, f"{service}: {res.stderr.decode(errors='replace')}"


def test_a_doctor_bundle_from_services_that_logged_secrets_holds_none_of_them(running: Stack):
    stack = running
    values = secret_values(stack)
    assert {"patroni_superuser_password", "valkey_password", "opensearch_admin_password",
            "certs/key.pem"} <= set(values), sorted(values)
    lines = log_lines(values)
    for service in LOGGERS:
        write_to_log(stack, service, lines)
    probe = values["valkey_password"].strip().decode()
    for service in LOGGERS:  # the secrets are in the logs: without redaction the scan below fails
        logged = stack.logs(service)
        assert f"valkey_password is {probe}" in logged and UNKNOWN_PASSWORD in logged, f"{service}: {logged[-2000:]}"

    res = stack.invoke("doctor", "--json", "--tail", "300", timeout=900)
    assert res.returncode == 0, res.stdout + res.stderr
    doc = json.loads(res.stdout)
    errors = sorted(validator("doctor").iter_errors(doc), key=str)
    assert not errors, [e.message for e in errors]
    archive_path = Path(doc["path"])
    assert archive_path.parent == stack.root / ".readiness" / "doctor"
    assert stat.S_IMODE(archive_path.stat().st_mode) == 0o600

    secrets = [*values.values(), UNKNOWN_PASSWORD.encode(), UNKNOWN_TOKEN.encode()]
    printed = (res.stdout + res.stderr).encode()
    assert [f[:4] for v in secrets for f in forms(v) if f in printed] == [], "a secret went to stdout or stderr"
    archive = archive_path.read_bytes()
    found = leaks(archive, secrets)
    assert found == [], "\n".join(found)

    parts = {p["name"]: p for p in doc["parts"]}
    services = set(stack.render(with_override=True)["services"])
    assert {f"logs/{s}" for s in services} <= set(parts)
    not_gathered = {n: p["error"] for n, p in parts.items() if not p["ok"]}
    assert not_gathered == {}, not_gathered
    assert doc["redacted"] >= len(LOGGERS) * lines.count(b"\n"), "one replacement at least per line logged"

    top = archive_path.name.removesuffix(".tar.gz")
    files = {name.removeprefix(f"/{top}/"): data for name, data in archive_members(archive)
             if name.startswith(f"/{top}/")}
    for service in LOGGERS:
        log = files[f"logs/{service}.log"]
        assert log.count(b"doctor-e2e ") == lines.count(b"\n"), service
        assert all(b"[REDACTED]" in line for line in log.splitlines() if b"doctor-e2e " in line), service
        assert b"registry.invalid" in log and b"Authorization: Bearer [REDACTED]" in log, service
    assert all(files[f"logs/{s}.log"].strip() for s in services if s != "postgres-init"), \
        [s for s in services if not files[f"logs/{s}.log"].strip()]
    assert b"Server Version" in files["engine/docker-info.txt"] or b"Server:" in files["engine/docker-info.txt"]
    assert b"services:" in files["model/compose-config.yaml"]
    index = json.loads(files["index.json"])
    assert index["parts"] == doc["parts"] and index["redaction"]["unreadable"] == []
    for name in ("preflight", "status", "health", "verify"):
        json.loads(files[f"{name}.json"])
    assert json.loads(files["diskuse/data.json"]), "every data directory measured"
    if realdb.unavailable_reason() is None:
        [cluster_file] = [n for n in files if n.startswith("patroni/") and n.endswith(".json")]
        cluster = json.loads(files[cluster_file])["cluster"]
        roles = [m.get("role") for m in cluster["members"]]
        assert roles.count("leader") == 1 and len(roles) == 2, cluster
    stack.events.append(f"doctor: {doc['bytes']} bytes, {len(doc['parts'])} parts, {doc['redacted']} redactions")
    archive_path.unlink()

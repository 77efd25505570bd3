"""``invoke verify`` without an engine: the HTTPS client's pinning against a real TLS server,
the verdicts a probe step turns into, the ``x-readiness.verify`` values, and the output.

The probes themselves run against the real programs and the contract fakes in the e2e suite
(tests/e2e/test_verify.py); here, what can be proved with no stack at all. The TLS server is a
real one (Python's ``ssl`` on 127.0.0.1, a certificate made by certfactory.py).
"""

from __future__ import annotations

import json
import ssl
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
from certfactory import authority, issue, key_pem, pem
from jsonschemas import validator

from readiness.errors import ToolkitError
from readiness.output import Output
from readiness.run import httpclient
from readiness.run import verify as verifylib
from readiness.run.verify.core import Context, Failed, expect
from readiness.stack.model import Model, x_problems

NOW = datetime.now(timezone.utc)


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory) -> Iterator[tuple[int, Path, Path, list[str]]]:
    """HTTPS on 127.0.0.1 for ``grafana.localhost`` only: (port, its CA, a foreign CA, Host headers seen)."""
    folder = tmp_path_factory.mktemp("tls")
    ca, other = authority("verify test CA", not_before=NOW - timedelta(days=1)), authority("foreign CA")
    leaf, key = issue(ca, ["grafana.localhost"], not_before=NOW - timedelta(days=1),
                      not_after=NOW + timedelta(days=30))
    (folder / "cert.pem").write_bytes(pem(leaf))
    (folder / "key.pem").write_bytes(key_pem(key))
    (folder / "ca.pem").write_bytes(pem(ca.cert))
    (folder / "other.pem").write_bytes(pem(other.cert))
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            seen.append(self.headers.get("Host", ""))
            body = json.dumps({"path": self.path}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(folder / "cert.pem", folder / "key.pem")
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], folder / "ca.pem", folder / "other.pem", seen
    finally:
        server.shutdown()


def test_the_client_reaches_a_name_that_does_not_resolve_with_tls_verified_for_it(tls_server):
    port, ca, _, seen = tls_server
    session = httpclient.session("127.0.0.1", ca)
    resp = session.get(f"https://grafana.localhost:{port}/api/health", timeout=5)
    assert resp.status_code == 200 and resp.json() == {"path": "/api/health"}
    assert seen[-1] == f"grafana.localhost:{port}"  # the user's Host header, not the address


def test_a_certificate_for_another_name_or_from_another_ca_is_refused(tls_server):
    port, ca, other, _ = tls_server
    with pytest.raises(requests.exceptions.SSLError, match="(?i)hostname|match"):
        httpclient.session("127.0.0.1", ca).get(f"https://prometheus.localhost:{port}/", timeout=5)
    with pytest.raises(requests.exceptions.SSLError, match="certificate verify failed"):
        httpclient.session("127.0.0.1", other).get(f"https://grafana.localhost:{port}/", timeout=5)


def test_the_pool_manager_pins_for_libraries_built_on_urllib3(tls_server):
    port, ca, _, seen = tls_server
    pool = httpclient.PinnedPoolManager("127.0.0.1", ca)
    resp = pool.request("GET", f"https://grafana.localhost:{port}/s3")
    assert resp.status == 200 and json.loads(resp.data) == {"path": "/s3"}
    assert seen[-1] == f"grafana.localhost:{port}"


# ------------------------------------------------------------------ verdicts


def model(services: dict, tmp_path: Path, secrets: dict | None = None) -> Model:
    return Model(tmp_path, {"name": "t", "services": services, "secrets": secrets or {}})


def test_a_step_that_raises_becomes_a_failing_verdict_with_what_came_back(tmp_path):
    ctx = Context(model({}, tmp_path), tmp_path / "ca.pem")

    def refused() -> str:
        raise ConnectionRefusedError(111, "Connection refused")

    v = ctx.attempt("valkey", "set and get", "SET k", refused, "the general fix")
    assert (v.ok, v.service, v.check, v.tried, v.fix) == (False, "valkey", "set and get", "SET k", "the general fix")
    assert "Connection refused" in v.got

    def wrong() -> str:
        expect(False, "read back 'x'", "a fix for this case")
        return "unreachable"

    v = ctx.attempt("valkey", "set and get", "GET k", wrong, "the general fix")
    assert (v.ok, v.got, v.fix) == (False, "read back 'x'", "a fix for this case")
    v = ctx.attempt("valkey", "set and get", "GET k", lambda: "equal", "the general fix")
    assert (v.ok, v.got, v.fix) == (True, "equal", "")


def test_probe_names_are_valid_for_buckets_indices_and_tables(tmp_path):
    ctx = Context(model({}, tmp_path), tmp_path / "ca.pem")
    name = ctx.name("s3")
    assert name.startswith("readiness-verify-s3-") and name == name.lower() and 3 <= len(name) <= 63
    assert ctx.name("s3") == name  # one token per run: every probe object of a run is found by it
    assert Context(model({}, tmp_path), tmp_path).name("s3") != name


def test_a_file_a_service_reads_is_found_through_its_bind_mount(tmp_path):
    services = {"prometheus": {"volumes": [
        {"type": "bind", "source": str(tmp_path / "infra" / "prometheus"), "target": "/etc/prometheus"},
        {"type": "bind", "source": str(tmp_path / "data" / "prometheus"), "target": "/prometheus"}]}}
    ctx = Context(model(services, tmp_path), tmp_path)
    assert ctx.host_path("prometheus", "/etc/prometheus/rules/core.yml") == tmp_path / "infra/prometheus/rules/core.yml"
    with pytest.raises(Failed, match="not bind-mounted"):
        ctx.host_path("prometheus", "/etc/other/file")


def test_credentials_come_from_the_login_secrets(tmp_path):
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "user").write_text("root-user\n")
    (tmp_path / "secrets" / "pw").write_text("s3cret\n")
    secrets = {"user": {"file": str(tmp_path / "secrets" / "user")}, "pw": {"file": str(tmp_path / "secrets" / "pw")}}
    services = {"minio": {"x-readiness": {"login": {"user-secret": "user", "secret": "pw"}}},
                "grafana": {"x-readiness": {"login": {"user": "admin", "secret": "pw"}}}}
    ctx = Context(model(services, tmp_path, secrets), tmp_path)
    assert ctx.login("minio") == ("root-user", "s3cret")
    assert ctx.login("grafana") == ("admin", "s3cret")


# ------------------------------------------------------------------ x-readiness.verify


def test_a_malformed_verify_value_names_the_service_and_key(tmp_path):
    m = model({"valkey": {"x-readiness": {"verify": "valkey"}}}, tmp_path)
    assert x_problems(m) == [("services.valkey.x-readiness.verify",
                                      "must be a mapping with a `probe` kind and plain option values "
                                      "(e.g. {probe: valkey})")]
    assert x_problems(model({"valkey": {"x-readiness": {"verify": {"probe": "valkey"}}}}, tmp_path)) == []


def test_an_unknown_probe_kind_is_refused_with_the_known_ones(tmp_path):
    m = model({"cache": {"x-readiness": {"verify": {"probe": "memcached"}}}}, tmp_path)
    with pytest.raises(ToolkitError) as err:
        verifylib.run(m, tmp_path / "ca.pem")
    assert "services.cache.x-readiness.verify.probe: no probe of kind 'memcached'" in err.value.message
    assert "valkey" in err.value.fix and "postgres" in err.value.fix


def test_every_kind_the_shipped_stack_asks_for_has_a_probe():
    """The repository's compose files, as written (no engine needed to read them)."""
    import yaml

    root = Path(__file__).resolve().parent.parent
    asked = set()
    for path in root.glob("infra/*/docker-compose.yml"):
        text = path.read_text()
        for doc in [yaml.safe_load(text)]:
            for spec in [*(doc.get("services") or {}).values(), *(v for k, v in doc.items() if k.startswith("x-"))]:
                verify = (spec.get("x-readiness") or {}).get("verify") if isinstance(spec, dict) else None
                if verify:
                    asked.add(verify["probe"])
    assert asked and asked <= set(verifylib.PROBES), asked - set(verifylib.PROBES)
    assert {"traefik", "keycloak", "s3", "postgres", "patroni", "valkey", "opensearch", "prometheus",
            "alertmanager", "grafana", "loki", "etcd"} <= asked


# ------------------------------------------------------------------ output


def test_a_failure_says_what_was_tried_what_came_back_and_the_fix():
    verdicts = [verifylib.Verdict("valkey", "set and get", False, "AUTH, SET key EX 60", "NOREPLICAS Not enough "
                                  "good replicas to write.", "CONFIG GET min-replicas-to-write"),
                verifylib.Verdict("grafana", "database", True, "GET /api/health", "database ok")]
    text = verifylib.to_text(sorted(verdicts, key=verifylib.Verdict.sort_key), ["docker-proxy"], Output())
    assert "valkey: set and get failed" in text
    assert "tried: AUTH, SET key EX 60" in text and "got:   NOREPLICAS" in text
    assert "fix:   CONFIG GET min-replicas-to-write" in text
    assert "not verified (no x-readiness.verify): docker-proxy" in text
    assert text.rstrip().endswith("verify: 1/2 checks pass on 2 services, 1 failing")
    doc = verifylib.as_doc(verdicts, ["docker-proxy"])
    assert doc["ok"] is False and [v["service"] for v in doc["verdicts"]] == ["grafana", "valkey"]
    assert not list(validator("verify").iter_errors(doc))
    assert not list(validator("verify").iter_errors(verifylib.as_doc(verdicts[1:], [])))
    # A failing verdict without a fix is not a valid document: every failure says what to do.
    broken = verifylib.as_doc([verifylib.Verdict("x", "y", False, "t", "g", "")], [])
    assert list(validator("verify").iter_errors(broken))

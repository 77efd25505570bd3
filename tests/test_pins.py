"""`invoke pins`: the image pins, what a real registry says of them, and digests that fix them.

The registry is Debian's ``docker-registry`` (the CNCF distribution registry, 2.8, the one the
e2e suite pulls from) on 127.0.0.1, filled through the Registry HTTP API itself (two blobs and
a Docker v2 schema 2 manifest under a tag): no Docker engine is needed. A second registry
process serves the same storage with token authentication ("Token Authentication
Specification" of the distribution project): its tokens are real JWTs, signed by a key the
registry trusts, issued by a small token service here that grants anonymous pulls of one
repository only. The CLI runs on copies of the mini stack (Compose renders it: no engine).
Parsing of references and of ``WWW-Authenticate`` and the rewrite of ``.env.example`` are
tested on their own.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import gzip
import hashlib
import io
import json
import re
import socket
import subprocess
import tarfile
import threading
import time
import urllib.parse
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from conftest import free_port, require_tool, run_invoke
from jsonschemas import validator

from readiness.errors import ToolkitError
from readiness.run import pins
from readiness.run.pins import Reference, parse_challenges, parse_reference

REGISTRY_BIN = "/usr/bin/docker-registry"  # Debian package `docker-registry`
MANIFEST_V2 = "application/vnd.docker.distribution.manifest.v2+json"
SERVICE, ISSUER = "pins-test-registry", "pins-test-issuer"
DIGEST = "sha256:" + "a" * 64


# ------------------------------------------------------------------------------ pure parts

@pytest.mark.parametrize(("ref", "want"), [
    ("busybox", Reference("docker.io", "library/busybox", "latest", None)),
    ("busybox:1.37.0", Reference("docker.io", "library/busybox", "1.37.0", None)),
    ("grafana/grafana:13.2.0", Reference("docker.io", "grafana/grafana", "13.2.0", None)),
    ("docker.io/valkey/valkey:8.1.11", Reference("docker.io", "valkey/valkey", "8.1.11", None)),
    ("index.docker.io/haproxy", Reference("docker.io", "library/haproxy", "latest", None)),
    ("ghcr.io/zalando/spilo-17:4.0-p3", Reference("ghcr.io", "zalando/spilo-17", "4.0-p3", None)),
    ("quay.io/minio/minio:RELEASE.2025-09-07T16-13-09Z",
     Reference("quay.io", "minio/minio", "RELEASE.2025-09-07T16-13-09Z", None)),
    ("localhost/x", Reference("localhost", "x", "latest", None)),
    ("localhost:5000/a/b:c", Reference("localhost:5000", "a/b", "c", None)),
    ("127.0.0.1:5000/e2e/x:present", Reference("127.0.0.1:5000", "e2e/x", "present", None)),
    ("[::1]:5000/x:1", Reference("[::1]:5000", "x", "1", None)),
    ("Registry/x:1", Reference("Registry", "x", "1", None)),  # an upper-case first component is a host
    (f"busybox:1.37.0@{DIGEST}", Reference("docker.io", "library/busybox", "1.37.0", DIGEST)),
    (f"ghcr.io/a/b@{DIGEST}", Reference("ghcr.io", "a/b", None, DIGEST)),
    ("a.b__c-d--e:v1", Reference("docker.io", "library/a.b__c-d--e", "v1", None)),
])
def test_references_are_split_as_docker_splits_them(ref, want):
    got = parse_reference(ref)
    assert got == want
    assert got.host == ("registry-1.docker.io" if want.registry == "docker.io" else want.registry)
    assert got.manifest == (want.digest or want.tag)


@pytest.mark.parametrize(("ref", "why"), [
    ("Busybox:1", "is not valid"), ("busybox:1:2", "is not valid"), ("x@sha256:123", "digest"),
    ("x:-1", "tag"), ("a//b", "is not valid"), ("", "empty"), (" busybox", "blanks"),
    ("bad_host:5000:1/x", "registry"), ("x:" + "t" * 129, "tag"), ("a" * 256, "longer"),
    ("busybox:1.0\u00e9", "tag"), ("busybox:\u0661\u0662", "tag"),  # Go's \w is ASCII: no letter or digit beyond
])
def test_a_reference_docker_refuses_is_refused_with_the_reason(ref, why):
    with pytest.raises(pins.BadReference, match=why):
        parse_reference(ref)


def test_loopback_registries_are_this_machine():
    for registry in ("localhost", "localhost:5000", "127.0.0.1", "127.1.2.3:443", "[::1]:5000", "::1"):
        assert pins.is_loopback(registry), registry
    for registry in ("docker.io", "registry-1.docker.io", "10.0.0.1:5000", "localhost.example:5000", "[::2]:5000"):
        assert not pins.is_loopback(registry), registry


def test_www_authenticate_challenges():
    hub = ('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
           'scope="repository:library/busybox:pull,push"')
    [c] = parse_challenges(hub)
    assert c.scheme == "bearer" and c.params == {"realm": "https://auth.docker.io/token",
                                                 "service": "registry.docker.io",
                                                 "scope": "repository:library/busybox:pull,push"}
    two = parse_challenges('Basic realm="r e,alm", Bearer Realm=https://a.example/t , service="x\\"y", error=x')
    assert [(c.scheme, c.params) for c in two] == [
        ("basic", {"realm": "r e,alm"}), ("bearer", {"realm": "https://a.example/t", "service": 'x"y', "error": "x"})]
    assert pins.bearer(hub).params["service"] == "registry.docker.io"
    assert pins.bearer('Basic realm="registry"') is None and pins.bearer("Bearer") is None  # no realm: no token
    assert parse_challenges("") == [] and parse_challenges('Bearer realm="unterminated') == [
        pins.Challenge("bearer", {"realm": ""})]


def test_digests_are_written_in_place_and_nothing_else_moves(tmp_path):
    path = tmp_path / ".env.example"
    text = ("\ufeffA_IMAGE=reg.example/a:1\r\n# a comment B_IMAGE=reg.example/b:2\r\n"
            "export B_IMAGE=\"reg.example/b:2\"  # quoted, with a comment\r\n"
            "C_IMAGE: 'reg.example/c:3'\r\nD_IMAGE=reg.example/a:1\r\nE_IMAGE=\"old\" A_IMAGE=reg.example/a:1\r\n"
            "PLAIN=reg.example/a:1\r\nE_IMAGE=reg.example/e:5 \r\n")
    new = {"A_IMAGE": f"reg.example/a:1@{DIGEST}", "B_IMAGE": f"reg.example/b:2@{DIGEST}",
           "C_IMAGE": f"reg.example/c:3@{DIGEST}", "E_IMAGE": f"reg.example/e:5@{DIGEST}"}
    out = pins.with_digests(text, path, new)
    assert out == text.replace('"reg.example/b:2"', f'"reg.example/b:2@{DIGEST}"').replace(
        "'reg.example/c:3'", f"'reg.example/c:3@{DIGEST}'").replace(
        "E_IMAGE=reg.example/e:5 ", f"E_IMAGE=reg.example/e:5@{DIGEST} ").replace(
        '"old" A_IMAGE=reg.example/a:1', f'"old" A_IMAGE=reg.example/a:1@{DIGEST}')  # A_IMAGE's last line
    values = pins.envfile.parse_text(out, path).values
    assert values["A_IMAGE"] == new["A_IMAGE"] and values["D_IMAGE"] == "reg.example/a:1"
    assert pins.with_digests(out, path, {}) == out
    multi = 'A_IMAGE="reg.example/a:1\nstill the value"\n'
    with pytest.raises(ToolkitError, match="cannot find the value of A_IMAGE"):
        pins.with_digests(multi, path, {"A_IMAGE": f"x@{DIGEST}"})


def test_the_verdict_tells_a_failed_check_from_an_unreachable_registry():
    def pin(status):
        return pins.Pin("X_IMAGE", "x:1", ".env:1", (), status=status)

    assert pins.verdict([pin(pins.Status.PRESENT), pin(pins.Status.SKIPPED)]) == (True, 0)
    assert pins.verdict([pin(pins.Status.PRESENT), pin(pins.Status.UNREACHABLE)]) == (False, 69)
    for failed in (pins.Status.ABSENT, pins.Status.DENIED, pins.Status.INVALID, pins.Status.ERROR):
        assert pins.verdict([pin(pins.Status.UNREACHABLE), pin(failed)]) == (False, 1)


def test_connection_failures_are_named_and_only_transient_ones_retried():
    import ssl
    import urllib.error

    host = "registry.example:5000"
    cases = [
        (urllib.error.URLError(ConnectionRefusedError(111, "Connection refused")), "connection refused", False),
        (urllib.error.URLError(socket.gaierror(socket.EAI_NONAME, "Name or service not known")),
         "registry.example does not resolve", False),
        (urllib.error.URLError(socket.gaierror(socket.EAI_AGAIN, "Temporary failure")), "temporary DNS", True),
        (TimeoutError("timed out"), "timed out", True),
        (ConnectionResetError(104, "reset"), "dropped", True),
        (urllib.error.URLError(ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number")), "TLS", False),
    ]
    for exc, words, transient in cases:
        failure = pins._failure(exc, host)
        assert words in failure.reason and failure.transient is transient, (exc, failure)


class StandIn:
    """A registry stand-in for what distribution never does: refuse ``HEAD``, leave out
    ``Docker-Content-Digest``, answer 503. Counts the requests per path."""

    def __init__(self, manifest: bytes) -> None:
        self.seen: dict[str, int] = {}
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def answer(self, code: int, body: bytes = b"", kind: str = "application/json") -> None:
                self.send_response(code)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command == "GET":
                    self.wfile.write(body)

            def do_HEAD(self) -> None:  # noqa: N802 - the name http.server calls
                stand_in.seen[f"HEAD {self.path}"] = stand_in.seen.get(f"HEAD {self.path}", 0) + 1
                self.answer(405)

            def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
                stand_in.seen[self.path] = stand_in.seen.get(self.path, 0) + 1
                if self.path == "/v2/":
                    self.answer(200, b"{}")
                elif self.path == "/v2/a/manifests/1":
                    self.answer(200, manifest, MANIFEST_V2)
                elif self.path.startswith("/v2/busy/"):
                    self.answer(503, b'{"errors":[{"code":"UNAVAILABLE"}]}')
                else:
                    self.answer(404, b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}')

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_get_when_head_is_refused_the_body_digest_and_a_busy_registry():
    manifest = b'{"schemaVersion": 2, "mediaType": "%s"}' % MANIFEST_V2.encode()
    server = StandIn(manifest)
    try:
        def pin(value: str) -> pins.Pin:
            return pins.Pin(value.rsplit("/", 1)[-1], value, ".env.example:1", ())

        found, records = pins.resolve([pin(f"{server.address}/a:1"), pin(f"{server.address}/a:2")])
        assert [(p.status, p.digest) for p in found] == [
            ("present", "sha256:" + hashlib.sha256(manifest).hexdigest()), ("absent", None)]
        assert server.seen["HEAD /v2/a/manifests/1"] == 1 and server.seen["/v2/a/manifests/1"] == 1
        assert records[server.address]["endpoint"] == f"http://{server.address}"

        [busy], records = pins.resolve([pin(f"{server.address}/busy:1")])
        assert busy.status == "unreachable" and "503 Service Unavailable" in busy.detail
        assert server.seen["/v2/busy/manifests/1"] == pins.ATTEMPTS  # tried again: 503 is transient
        assert records[server.address]["reachable"] is False
    finally:
        server.stop()


# ------------------------------------------------------------------------------ a real registry

class Served:
    """``docker-registry serve`` on 127.0.0.1:<port>, storing under ``data`` (shared by two
    processes: the storage driver keeps no state of its own)."""

    def __init__(self, binary: str, root: Path, data: Path, **extra) -> None:
        self.port = free_port()
        root.mkdir(parents=True, exist_ok=True)
        config = root / "config.yml"
        config.write_text(yaml.safe_dump({
            "version": 0.1, "log": {"level": "warn"},
            "storage": {"filesystem": {"rootdirectory": str(data)}},
            "http": {"addr": f"127.0.0.1:{self.port}"}, **extra}))
        self.log_path = root / "registry.log"
        self.log = self.log_path.open("w")
        self.proc = subprocess.Popen([binary, "serve", str(config)], stdout=self.log, stderr=self.log,
                                     stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and self.proc.poll() is None:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"docker-registry did not listen on 127.0.0.1:{self.port}: {self.log_path.read_text()}")

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.log.close()


def _http(method: str, url: str, data: bytes | None = None, headers: dict[str, str] | None = None):
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=30) as resp:
        return resp.status, resp.headers, resp.read()


def upload_blob(base: str, repo: str, blob: bytes) -> dict:
    """One blob through the API (``POST .../blobs/uploads/``, then ``PUT <location>&digest=``)."""
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    status, headers, _ = _http("POST", f"{base}/v2/{repo}/blobs/uploads/")
    assert status == 202, status
    location = urllib.parse.urljoin(base + "/", headers["Location"])
    location += ("&" if "?" in location else "?") + urllib.parse.urlencode({"digest": digest})
    status, headers, _ = _http("PUT", location, blob, {"Content-Type": "application/octet-stream"})
    assert status == 201 and headers["Docker-Content-Digest"] == digest, (status, dict(headers))
    return {"digest": digest, "size": len(blob)}


def push_image(address: str, repo: str, tags: list[str]) -> str:
    """A one-layer image (a real gzipped tar and its config) under ``tags``; returns the manifest's digest."""
    base = f"http://{address}"
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        content = uuid.uuid4().bytes * 64
        info = tarfile.TarInfo("pins-test.bin")
        info.size = len(content)
        tar.addfile(info, io.BytesIO(content))
    diff_id = "sha256:" + hashlib.sha256(raw.getvalue()).hexdigest()
    layer = upload_blob(base, repo, gzip.compress(raw.getvalue(), mtime=0))
    config = upload_blob(base, repo, json.dumps({
        "architecture": "amd64", "os": "linux", "config": {"Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]}}).encode())
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": MANIFEST_V2,
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", **config},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", **layer}],
    }, indent=3).encode()
    digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
    for tag in tags:
        status, headers, _ = _http("PUT", f"{base}/v2/{repo}/manifests/{tag}", manifest,
                                   {"Content-Type": MANIFEST_V2})
        assert status == 201 and headers["Docker-Content-Digest"] == digest, (status, dict(headers))
    return digest


# ------------------------------------------------------------------------------ token authentication

def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def libtrust_key_id(public_key) -> str:
    """The key ID distribution's registry looks a token's ``kid`` up by (libtrust's ``KeyID``:
    base32 of the first 240 bits of the SHA-256 of the DER public key, in groups of four)."""
    from cryptography.hazmat.primitives import serialization

    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    s = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode().rstrip("=")
    return ":".join(s[i:i + 4] for i in range(0, len(s), 4))


class TokenService:
    """A token realm as the specification describes it: ``GET /token?service=&scope=`` answers
    ``{"access_token": <JWT>}``, RS256-signed by a key whose certificate the registry trusts.
    Anonymous pulls are granted for ``public`` repositories only; every query is recorded."""

    def __init__(self, root: Path, public: set[str]) -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import padding, rsa
        from cryptography.x509.oid import NameOID

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pins-test-token-issuer")])
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
                .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
        self.bundle = root / "token-ca.pem"
        self.bundle.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        self.queries: list[dict[str, str]] = []
        kid, service = libtrust_key_id(key.public_key()), self

        def token(scope: str) -> str:
            kind, _, rest = scope.partition(":")
            repo, _, actions = rest.rpartition(":")
            granted = [{"type": kind, "name": repo, "actions": ["pull"]}] if (
                kind == "repository" and repo in public and "pull" in actions.split(",")) else []
            t = int(time.time())
            head = _b64(json.dumps({"typ": "JWT", "alg": "RS256", "kid": kid}).encode())
            claims = _b64(json.dumps({"iss": ISSUER, "sub": "", "aud": SERVICE, "exp": t + 300, "nbf": t - 10,
                                      "iat": t, "jti": uuid.uuid4().hex, "access": granted}).encode())
            signature = key.sign(f"{head}.{claims}".encode(), padding.PKCS1v15(), hashes.SHA256())
            return f"{head}.{claims}.{_b64(signature)}"

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
                query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query))
                service.queries.append({**query, "authorization": self.headers.get("Authorization") or ""})
                body = json.dumps({"access_token": token(query.get("scope", "")), "expires_in": 300}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.realm = f"http://127.0.0.1:{self.server.server_address[1]}/token"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# ------------------------------------------------------------------------------ fixtures

@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """The plain registry, with ``e2e/x:present`` (its digest), ``e2e/helper:1`` and ``e2e/private:1``."""
    binary = require_tool(REGISTRY_BIN, "the pins tests ask Debian's docker-registry, the e2e suite's registry "
                                        "(apt-get install docker-registry)")
    root = tmp_path_factory.mktemp("registry")
    served = Served(binary, root / "plain", root / "data")
    try:
        digests = {"x": push_image(served.address, "e2e/x", ["present", "also"]),
                   "helper": push_image(served.address, "e2e/helper", ["1"]),
                   "private": push_image(served.address, "e2e/private", ["1"])}
        yield served, digests, binary, root
    finally:
        served.stop()


@pytest.fixture(scope="module")
def token_registry(registry):
    """The same storage behind token authentication; anonymous pulls of ``e2e/x`` and ``e2e/helper`` only."""
    _, _, binary, root = registry
    tokens = TokenService(root, public={"e2e/x", "e2e/helper"})
    served = Served(binary, root / "token", root / "data", auth={"token": {
        "realm": tokens.realm, "service": SERVICE, "issuer": ISSUER, "rootcertbundle": str(tokens.bundle)}})
    try:
        yield served, tokens
    finally:
        served.stop()
        tokens.stop()


def project(mini_files: Path, **images: str) -> Path:
    """The mini stack with ``.env`` = its ``.env.example`` plus ``images`` (last assignment wins)."""
    text = (mini_files / ".env.example").read_text()
    (mini_files / ".env").write_text(text + "".join(f"{k}={v}\n" for k, v in images.items()))
    return mini_files


def document(res: subprocess.CompletedProcess[str]) -> dict:
    assert "Traceback" not in res.stdout + res.stderr, res.stdout + res.stderr
    doc = json.loads(res.stdout)
    errors = sorted(validator("pins").iter_errors(doc), key=str)
    assert not errors, errors
    return doc


def by_variable(doc: dict) -> dict[str, dict]:
    return {p["variable"]: p for p in doc["pins"]}


# ------------------------------------------------------------------------------ the CLI

def test_check_finds_a_present_tag_with_its_digest_and_names_an_absent_one(registry, mini_files, compose_cli):
    served, digests, _, _ = registry
    address = served.address
    mini = project(mini_files, WEB_IMAGE=f"{address}/e2e/x:present", PROXY_IMAGE=f"{address}/e2e/x:absent",
                   HELPER_IMAGE=f"{address}/e2e/helper:1", OTHER_IMAGE=f"{address}/e2e/x:also")
    res = run_invoke(mini, "pins", "--check", "--json")
    assert res.returncode == 1, res.stdout + res.stderr
    doc = document(res)
    assert doc["ok"] is False and doc["checked"] is True and doc["written"] is False
    found = by_variable(doc)
    assert set(found) == {"WEB_IMAGE", "PROXY_IMAGE", "HELPER_IMAGE", "OTHER_IMAGE"}
    web, proxy = found["WEB_IMAGE"], found["PROXY_IMAGE"]
    assert web["status"] == "present" and web["digest"] == digests["x"] and web["services"] == ["web"]
    assert (web["registry"], web["repository"], web["tag"]) == (address, "e2e/x", "present")
    assert proxy["status"] == "absent" and proxy["digest"] is None and proxy["services"] == ["proxy"]
    assert proxy["detail"] == f"{address}/e2e/x has no tag absent"
    assert re.fullmatch(r"\.env:\d+", proxy["where"])
    assert found["HELPER_IMAGE"]["helper"] is True and found["HELPER_IMAGE"]["digest"] == digests["helper"]
    assert found["OTHER_IMAGE"]["services"] == [] and found["OTHER_IMAGE"]["digest"] == digests["x"]
    assert doc["registries"] == [{"registry": address, "endpoint": f"http://{address}", "reachable": True,
                                  "error": ""}]

    text = run_invoke(mini, "pins", "--check")
    assert text.returncode == 1 and "Traceback" not in text.stdout + text.stderr
    [line] = [ln for ln in text.stdout.splitlines() if ln.startswith("pins:") and "e2e/x:absent" in ln]
    assert "PROXY_IMAGE in .env:" in line and "services proxy" in line and "fix: set PROXY_IMAGE in .env:" in line, line
    assert digests["x"] in text.stdout and "1 absent" in text.stdout and "3 present" in text.stdout


def test_an_unreachable_registry_exits_69_and_says_so_once(mini_files, compose_cli):
    closed = f"127.0.0.1:{free_port()}"  # nothing listens there
    mini = project(mini_files, WEB_IMAGE=f"{closed}/e2e/x:1", PROXY_IMAGE=f"{closed}/e2e/y:2",
                   HELPER_IMAGE=f"{closed}/e2e/z:3")
    res = run_invoke(mini, "pins", "--check", "--json", timeout=120)
    assert res.returncode == pins.EXIT_UNAVAILABLE, res.stdout + res.stderr
    doc = document(res)
    assert {p["status"] for p in doc["pins"]} == {"unreachable"}
    [record] = doc["registries"]
    assert record["registry"] == closed and record["reachable"] is False and "refused" in record["error"]
    text = run_invoke(mini, "pins", "--check", timeout=120)
    assert text.returncode == 69 and "Traceback" not in text.stdout + text.stderr
    lines = [ln for ln in text.stdout.splitlines() if "cannot be reached" in ln]
    assert len(lines) == 1 and f"registry {closed} cannot be reached" in lines[0], text.stdout
    assert "HELPER_IMAGE, PROXY_IMAGE, WEB_IMAGE" in lines[0] and "fix:" in lines[0]


def test_a_registry_that_wants_a_token_gets_an_anonymous_one(registry, token_registry, mini_files, compose_cli):
    _, digests, _, _ = registry
    served, tokens = token_registry
    address = served.address
    mini = project(mini_files, WEB_IMAGE=f"{address}/e2e/x:present", PROXY_IMAGE=f"{address}/e2e/x:present",
                   HELPER_IMAGE=f"{address}/e2e/helper:1")
    res = run_invoke(mini, "pins", "--check", "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    found = by_variable(document(res))
    assert {v: p["digest"] for v, p in found.items()} == {"WEB_IMAGE": digests["x"], "PROXY_IMAGE": digests["x"],
                                                          "HELPER_IMAGE": digests["helper"]}
    # Two variables that name one image: each with its own service (one question to the registry).
    assert (found["WEB_IMAGE"]["services"], found["PROXY_IMAGE"]["services"]) == (["web"], ["proxy"])
    # One anonymous token per repository, for exactly what is read.
    assert sorted(q["scope"] for q in tokens.queries) == ["repository:e2e/helper:pull", "repository:e2e/x:pull"]
    assert {q["service"] for q in tokens.queries} == {SERVICE} and not any(q["authorization"] for q in tokens.queries)

    # A repository the token service grants no anonymous pull of: refused, a failed check.
    mini = project(mini_files, WEB_IMAGE=f"{address}/e2e/x:present", PROXY_IMAGE=f"{address}/e2e/private:1",
                   HELPER_IMAGE=f"{address}/e2e/helper:1")
    res = run_invoke(mini, "pins", "--check", "--json")
    assert res.returncode == 1, res.stdout + res.stderr
    private = by_variable(document(res))["PROXY_IMAGE"]
    assert private["status"] == "denied" and "anonymous" in private["detail"] and private["digest"] is None


def test_without_a_flag_the_pins_are_listed_and_no_registry_is_asked(mini_files, compose_cli):
    closed = f"127.0.0.1:{free_port()}"
    mini = project(mini_files, WEB_IMAGE=f"{closed}/e2e/x:1")
    res = run_invoke(mini, "pins", "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    doc = document(res)
    assert doc["registries"] == [] and {p["status"] for p in doc["pins"]} == {"listed"}
    assert by_variable(doc)["WEB_IMAGE"]["value"] == f"{closed}/e2e/x:1"
    assert re.fullmatch(r"\.env:\d+", by_variable(doc)["PROXY_IMAGE"]["where"])
    text = run_invoke(mini, "pins")
    assert text.returncode == 0 and "WEB_IMAGE" in text.stdout and f"{closed}/e2e/x:1" in text.stdout


def test_digests_pin_each_tag_of_env_example_once_and_write_nothing_when_one_is_absent(registry, mini_files,
                                                                                      compose_cli):
    served, digests, _, _ = registry
    address = served.address
    example = mini_files / ".env.example"
    original = example.read_text()
    project(mini_files)  # .env as `invoke env` would write it (the model is rendered from it)
    text = (original.replace("WEB_IMAGE=busybox:1.36.1", f"WEB_IMAGE={address}/e2e/x:present")
            .replace("PROXY_IMAGE=busybox:1.36.1", f'PROXY_IMAGE="{address}/e2e/x:also"  # quoted')
            .replace("HELPER_IMAGE=busybox:1.37.0", f"HELPER_IMAGE={address}/e2e/helper:1@{digests['helper']}"))
    assert text.count(address) == 3
    example.write_bytes(text.encode())
    example.chmod(0o644)

    res = run_invoke(mini_files, "pins", "--digests", "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    doc = document(res)
    assert doc["written"] is True and doc["digests"] is True and doc["checked"] is False
    assert [(c["variable"], c["old"], c["new"]) for c in doc["changes"]] == [
        ("WEB_IMAGE", f"{address}/e2e/x:present", f"{address}/e2e/x:present@{digests['x']}"),
        ("PROXY_IMAGE", f"{address}/e2e/x:also", f"{address}/e2e/x:also@{digests['x']}")]
    assert by_variable(doc)["HELPER_IMAGE"]["status"] == "present"  # already pinned: checked, not rewritten
    want = text.replace(f"{address}/e2e/x:present", f"{address}/e2e/x:present@{digests['x']}").replace(
        f"{address}/e2e/x:also", f"{address}/e2e/x:also@{digests['x']}")
    assert example.read_bytes() == want.encode()
    assert example.stat().st_mode & 0o777 == 0o644

    again = run_invoke(mini_files, "pins", "--digests")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "nothing changed" in again.stdout and example.read_bytes() == want.encode()

    absent = want.replace(f"{address}/e2e/x:also@{digests['x']}", f"{address}/e2e/x:absent")
    absent = absent.replace(f"{address}/e2e/x:present@{digests['x']}", f"{address}/e2e/x:present")
    example.write_bytes(absent.encode())
    res = run_invoke(mini_files, "pins", "--digests", "--json")
    assert res.returncode == 1, res.stdout + res.stderr
    doc = document(res)
    assert doc["written"] is False and doc["changes"] == [] and by_variable(doc)["PROXY_IMAGE"]["status"] == "absent"
    assert example.read_bytes() == absent.encode()
    assert "nothing was written" in res.stderr and "PROXY_IMAGE" in res.stderr

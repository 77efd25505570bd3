"""`invoke doctor` without an engine: the redaction (readiness.run.redact) shape by shape and
value by value, on bytes that need not be text; the secret values read from a project; the
parts gathered one by one, each failure its own file; the archive written atomically, 0600.

The commands are a fake runner here (what `docker compose logs` and a Patroni member would
print, secrets included), and, at the end, the real CLI with an engine that does not answer:
the bundle is still written, and holds no secret. The engine side -- services that really
logged their secrets -- is tests/e2e/test_doctor.py, which uses :func:`archive_members` and
:func:`forms` from here to scan every member of the archive.
"""

from __future__ import annotations

import base64
import calendar
import errno
import gzip
import io
import json
import os
import random
import re
import stat
import sys
import tarfile
import threading
import time
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from conftest import copy_repo, run_invoke
from jsonschemas import validator

from readiness import output
from readiness.cli import Outcome
from readiness.errors import ToolkitError
from readiness.run import doctor, redact
from readiness.run.redact import MARKER, Redactor, secret_key, variants
from readiness.stack.model import ComposeCLI, Model
from readiness.system import runner


@pytest.fixture(autouse=True)
def _own_output() -> Iterator[None]:
    """Each test prints to the streams pytest gives it (never to an earlier test's closed one)."""
    output.configure(out=sys.stdout, err=sys.stderr)
    yield
    output.configure()


# ------------------------------------------------------------------------- scanning an archive (shared with e2e)


def archive_members(data: bytes, name: str = "") -> Iterator[tuple[str, bytes]]:
    """Every byte string an archive holds, opened recursively: the raw bytes at each level,
    each member's name, each member's content -- a tar (any compression), a gzip, a zip inside
    one opened in turn."""
    yield name or "(the file)", data
    buffer = io.BytesIO(data)
    if data[:2] == b"\x1f\x8b":
        try:
            inner = gzip.decompress(data)
        except (OSError, EOFError):
            inner = None
        if inner is not None and not _is_tar(inner):
            yield from archive_members(inner, f"{name}!gunzip")
            return
    if _is_tar(data):
        with tarfile.open(fileobj=buffer, mode="r:*") as tar:
            for member in tar.getmembers():
                path = f"{name}/{member.name}"
                yield f"name of {path}", member.name.encode("utf-8", "surrogateescape")
                yield f"link of {path}", member.linkname.encode("utf-8", "surrogateescape")
                handle = tar.extractfile(member) if member.isfile() else None
                if handle is not None:
                    yield from archive_members(handle.read(), path)
    elif zipfile.is_zipfile(buffer):
        with zipfile.ZipFile(buffer) as archive:
            for info in archive.infolist():
                yield f"name of {name}/{info.filename}", info.filename.encode()
                yield from archive_members(archive.read(info), f"{name}/{info.filename}")


def _is_tar(data: bytes) -> bool:
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
            tar.getmembers()
        return True
    except (tarfile.TarError, OSError, EOFError):
        return False


def forms(value: bytes) -> set[bytes]:
    """Every form of a secret value that must not be in the archive: those the redactor looks
    for, and, independently of its code, the value itself, URL-encoded and in base64."""
    plain = value.strip()
    independent = {plain, quote(plain.decode(), safe="").encode(), base64.b64encode(plain)}
    return {f for f in variants(value) | independent if len(f) >= redact.MIN_LENGTH}


def leaks(archive: bytes, values: Iterable[bytes]) -> list[str]:
    """``member: which form of which value`` for every secret found anywhere in ``archive``."""
    wanted = {f: n for n, v in enumerate(values) for f in forms(v)}
    return [f"{where}: form {form[:4]!r}... of value #{n}" for where, data in archive_members(archive)
            for form, n in wanted.items() if form in data]


# ------------------------------------------------------------------------- shapes


SHAPED = [
    (b"connecting to postgres://app:s3cr3t-Pa55@db:5432/app?sslmode=require",
     b"connecting to postgres://app:[REDACTED]@db:5432/app?sslmode=require"),
    (b"redis://:hunter2hunter2@valkey:6379/0", b"redis://:[REDACTED]@valkey:6379/0"),
    (b"db password=Sup3rValue ok", b"db password=[REDACTED] ok"),
    (b"PGPASSWORD=abc123xyz psql", b"PGPASSWORD=[REDACTED] psql"),
    (b"?user=a&access_token=tok123456&x=1", b"?user=a&access_token=[REDACTED]&x=1"),
    (b'{"password": "a \\"quoted\\" one", "user": "bob"}', b'{"password": "[REDACTED]", "user": "bob"}'),
    (b"{'client_secret': 'abcdef123'}", b"{'client_secret': '[REDACTED]'}"),
    (b"  SMTP_PASSWORD: plainvalue9\n  OTHER: 1\n", b"  SMTP_PASSWORD: [REDACTED]\n  OTHER: 1\n"),
    (b"a: password=xyz12", b"a: password=[REDACTED]"),
    (b"api_key=AbCdEf123456 cache_key=users:1", b"api_key=[REDACTED] cache_key=users:1"),
    (b"Authorization: Bearer abc.def.ghi-123", b"Authorization: Bearer [REDACTED]"),
    (b"authorization: Basic YWRtaW46c2VjcmV0\r\nHost: x", b"authorization: Basic [REDACTED]\r\nHost: x"),
    (b'headers={"Authorization": "Basic YWRtaW46c2VjcmV0"}', b'headers={"Authorization": "Basic [REDACTED]"}'),
    (b"Authorization: 0123456789abcdef", b"Authorization: [REDACTED]"),
    (b"sent Bearer 9f8e7d6c5b4a39281706f5e4 upstream", b"sent Bearer [REDACTED] upstream"),
    (b"valkey-server --requirepass abcdefgh123 --port 6379", b"valkey-server --requirepass [REDACTED] --port 6379"),
    (b"cli --password s3cret99 -h db", b"cli --password [REDACTED] -h db"),
    (b"-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\nq83v\n-----END RSA PRIVATE KEY-----\n",
     b"-----BEGIN RSA PRIVATE KEY-----\n[REDACTED]\n-----END RSA PRIVATE KEY-----\n"),
    (b"x | -----BEGIN PRIVATE KEY-----\nx | MIIEvQIBADANBgkq\n(cut)", b"x | -----BEGIN PRIVATE KEY-----\n[REDACTED]\n"),
    (b"key id AKIAIOSFODNN7EXAMPLE in use", b"key id [REDACTED] in use"),
    (b"token ghp_0123456789abcdefghijABCDEFGHIJ012345", b"token [REDACTED]"),
    (b"xoxb-1234567890-abcdefghij", b"[REDACTED]"),
    (b"jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig_Nature-1", b"jwt [REDACTED]"),
    (b"POST https://hooks.slack.com/services/T0/B0/XyZ", b"POST https://hooks.slack.com/services/[REDACTED]"),
]


@pytest.mark.parametrize("text, expected", SHAPED, ids=[s[:24].decode("latin-1") for s, _ in SHAPED])
def test_each_credential_shape_is_redacted_and_only_its_secret(text, expected):
    r = Redactor()
    assert r.bytes(text) == expected
    assert r.count >= 1
    before = r.count
    assert r.bytes(expected) == expected and r.count == before, "redacting again changes nothing"


ORDINARY = [
    b"Enter password:",
    b"password authentication failed for user \"postgres\"",
    b"the password must be 16 characters; passwords are rotated yearly",
    b"FATAL: password: ",
    b"msg=\"token expired\" level=warn",
    b"tokenizer: standard",
    b"key=session:1234 routing_key=orders",
    b"VALKEY_PORT=6379\nKEYCLOAK_IMAGE=quay.io/keycloak/keycloak:26.8.2\nKEYCLOAK_ADMIN_USER=admin",
    b"GF_SECURITY_ADMIN_PASSWORD__FILE: /run/secrets/grafana_admin_password",
    b"MINIO_ROOT_PASSWORD_FILE=/run/secrets/minio_root_password",
    b"password_encryption: scram-sha-256",
    b"password: null\nsecret: ''\ntoken: true\npassword_required: false",
    b"PGPASSWORD=$(cat /run/secrets/patroni_superuser_password) psql -c 'select 1'",
    b"password: ${SMTP_PASSWORD}",
    b"bypass=1 passive=yes compass: north passed=3",
    b"Bearer authentication is required",
    b"Authorization header missing",
    b"https://example.com:8443/path?x=1 and user@example.com",
    b"-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\n-----END CERTIFICATE-----",
    b"tries: 3, pwd=/home/user/infra",
]


@pytest.mark.parametrize("text", ORDINARY, ids=[s[:24].decode("latin-1") for s in ORDINARY])
def test_ordinary_text_is_left_alone(text):
    r = Redactor()
    assert r.bytes(text) == text
    assert r.count == 0


def test_a_secret_name_is_not_a_secret_value():
    """``secret: smtp_password`` in the rendered model names the secret; its value is elsewhere."""
    text = b"x-readiness:\n  login:\n    secret: smtp_password\n    user-secret: minio_root_user\n"
    assert Redactor(names=[b"smtp_password", b"minio_root_user"]).bytes(text) == text
    assert Redactor().bytes(text) != text  # without the names, the shape alone takes them


@pytest.mark.parametrize("name, variable, secret", [
    ("SMTP_PASSWORD", True, True), ("PGPASSWORD", True, True), ("DB_PASS", True, True), ("API_KEY", True, True),
    ("MINIO_KEY", True, True), ("MINIO_KEY", False, False), ("signingKey", False, True), ("AUTH_TOKEN", True, True),
    ("clientSecret", False, True), ("KC_DB_PASSWORD", True, True), ("GITHUB_TOKEN", True, True),
    ("VALKEY_PORT", True, False), ("KEYCLOAK_IMAGE", True, False), ("KEYCLOAK_ADMIN_USER", True, False),
    ("GF_SECURITY_ADMIN_PASSWORD__FILE", True, False), ("PASSWORD_FILE", True, False), ("PWD", True, False),
    ("OLDPWD", True, False), ("tokenizer", False, False), ("passive", True, False), ("AUTH_ENABLED", True, False),
    ("password_encryption", False, False), ("token_type", False, False), ("cache_key", False, False),
])
def test_which_names_hold_secrets(name, variable, secret):
    assert secret_key(name, variable=variable) is secret


# ------------------------------------------------------------------------- known values


SECRET = b"Zq8RmW2xLp4Tn7Vb9Kc3Hd6F\n"  # as a secret file holds it: a trailing newline


def test_a_known_value_is_redacted_in_every_encoding_a_log_may_show():
    plain = SECRET.strip()
    symbols = b"Ab1@%+=_-.:~^,Zy9"  # the "password" charset's symbols: encodings differ from the value
    r = Redactor([SECRET, symbols])
    text = b"\n".join([
        b"as is: " + plain,
        b"inside a word: xx" + plain + b"yy",
        b"url: " + quote(symbols.decode(), safe="").encode(),
        b"url, lower-case hex: " + re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(),
                                          quote(symbols.decode(), safe="")).encode(),
        b"json: " + json.dumps(symbols.decode())[1:-1].encode(),
        b"compose: " + symbols.replace(b"$", b"$$"),
        b"base64: " + base64.b64encode(plain),
        b"urlsafe base64 unpadded: " + base64.urlsafe_b64encode(symbols).rstrip(b"="),
        b"basic auth: " + base64.b64encode(b"admin:" + plain),
        b"inside a json in base64: " + base64.b64encode(b'{"pw":"' + symbols + b'","n":1}'),
    ])
    out = r.bytes(text)
    assert leaks_in(out, [SECRET, symbols]) == []
    assert out.count(MARKER) == 10 and r.count >= 10
    assert out.startswith(b"as is: [REDACTED]\ninside a word: xx[REDACTED]yy\n")


def leaks_in(data: bytes, values: list[bytes]) -> list[bytes]:
    return [f for v in values for f in forms(v) if f in data]


def test_redaction_is_binary_safe_and_touches_nothing_else():
    rng = random.Random(20)
    noise = [bytes(b for b in rng.randbytes(4000) if b not in b"=:\"' \t\n") for _ in range(3)]
    data = noise[0] + SECRET.strip() + noise[1] + b"\xff\xfe\x00" + SECRET.strip() + noise[2]
    r = Redactor([SECRET])
    out = r.bytes(data)
    assert out == noise[0] + MARKER + noise[1] + b"\xff\xfe\x00" + MARKER + noise[2]
    assert r.count == 2
    latin = "pässwörd-Välue-1".encode("latin-1")  # not UTF-8: no text encodings, the bytes themselves
    assert Redactor([latin]).bytes(b"\x00" + latin + b"\x00") == b"\x00" + MARKER + b"\x00"


def test_a_value_holding_another_is_replaced_whole():
    inner, outer = b"InnerSecret1234", b"prefix-InnerSecret1234-suffix"
    assert Redactor([inner, outer]).bytes(b"[" + outer + b"] [" + inner + b"]") == b"[[REDACTED]] [[REDACTED]]"


def test_short_values_the_decision():
    """Under 4 characters: not replaced (it would turn the bundle to noise), counted; 4 to 7:
    replaced where it stands alone, not inside a longer word; 8 and more: everywhere."""
    r = Redactor([b"ab1", b"adm1n", b"Longer8x"])
    assert r.bytes(b"ab1 tab1e adm1n adm1nistrator xLonger8xx") == b"ab1 tab1e [REDACTED] adm1nistrator x[REDACTED]x"
    known = redact.Known()
    for value in (b"ab1\n", b"true", b"", b"adm1n"):
        known.add(value)
    assert known.short == 1 and known.values == {b"adm1n"}, "placeholders are no secret, and not counted short"
    assert any("shorter than 4" in w for w in doctor.warnings_of(known))


def test_multi_line_values_are_redacted_line_by_line_but_not_their_armour():
    pem = b"-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUabc\nZmFrZSBjZXJ0aWZpY2F0ZQ==\n-----END CERTIFICATE-----\n"
    r = Redactor([pem])
    out = r.bytes(b"log: MIIBszCCAVmgAwIBAgIUabc and -----BEGIN CERTIFICATE----- stays")
    assert out == b"log: [REDACTED] and -----BEGIN CERTIFICATE----- stays"


def project_with_secrets(tmp_path: Path) -> tuple[Path, Model, dict[str, bytes]]:
    """A project copy's files as the toolkit leaves them: secrets/ (a certificate's key in
    certs/, an htpasswd file and its plaintext), .env with one secret-looking key, and a model
    whose secrets registry also names a file outside secrets/."""
    project = tmp_path / "project"
    (project / "secrets" / "certs").mkdir(parents=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    values = {
        "secrets/smtp_password": b"Smtp0Password0Value01\n",
        "secrets/certs/key.pem": b"-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n"
                                 b"-----END PRIVATE KEY-----\n",
        "secrets/traefik_dashboard_htpasswd": b"admin:$2y$05$abcdefghijklmnopqrstuv\n",
        "secrets/traefik_dashboard_htpasswd.password": b"Dashboard0Plain0Text\n",
        "../elsewhere/api_token": b"Token0Outside0Secrets\n",
    }
    for rel, data in values.items():
        (project / rel).write_bytes(data)
    (project / "secrets" / "README.md").write_text("how secrets work: no value here\n")
    (project / "secrets" / ".gitkeep").write_text("")
    (project / ".env").write_text("LOCAL_DOMAIN=localhost\nSMTP_PASSWORD=Env0Password0Value\n"
                                  "KEYCLOAK_ADMIN_USER=admin\nINHERITED_TOKEN\n")
    rendered = {"name": "demo", "services": {}, "secrets": {
        "smtp_password": {"file": str(project / "secrets/smtp_password")},
        "traefik_dashboard_htpasswd": {"file": str(project / "secrets/traefik_dashboard_htpasswd")},
        "api_token": {"file": str(elsewhere / "api_token")},
        "missing": {"file": str(project / "secrets/not_yet_created")}}}
    values[".env SMTP_PASSWORD"] = b"Env0Password0Value"
    values["environment INHERITED_TOKEN"] = b"Inherited0Token0Value"
    return project, Model(project, rendered, cli=ComposeCLI(("docker", "compose"), (2, 30, 0))), values


def test_known_values_come_from_the_secrets_files_the_model_and_env(tmp_path):
    project, model, values = project_with_secrets(tmp_path)
    environ = {"INHERITED_TOKEN": "Inherited0Token0Value", "PWD": str(project), "HOME": "/root"}
    known = redact.known_values(project, model, environ)
    assert known.values == set(values.values())
    assert known.unreadable == [] and known.short == 0
    assert known.names == {b"smtp_password", b"traefik_dashboard_htpasswd", b"api_token", b"missing"}
    without_model = redact.known_values(project, None, {})
    assert without_model.values == {v for k, v in values.items() if k.startswith("secrets/") or k.startswith(".env")}


def test_a_secret_file_that_cannot_be_read_is_named_never_guessed(tmp_path, monkeypatch):
    project, model, _ = project_with_secrets(tmp_path)
    real = Path.read_bytes

    def refuse(self: Path) -> bytes:
        if self.name == "smtp_password":
            raise PermissionError(13, "Permission denied", str(self))
        return real(self)

    monkeypatch.setattr(Path, "read_bytes", refuse)
    known = redact.known_values(project, model, {})
    assert known.unreadable == ["secrets/smtp_password: Permission denied"]
    assert doctor.warnings_of(known) == ["secrets/smtp_password: Permission denied: cannot be read, so its value is "
                                         "not redacted"]


# ------------------------------------------------------------------------- gathering, with a fake engine


LOGGED = b"Logged0Secret0Value01"


def fake_model(project: Path) -> Model:
    env = {"ETCD3_HOSTS": "etcd:2379", "SCOPE": "demo-pg"}
    rendered = {"name": "demo", "services": {"etcd": {}, "pg-1": {"environment": env}, "pg-2": {"environment": env},
                                              "web": {}},
                "secrets": {"smtp_password": {"file": str(project / "secrets/smtp_password")}}}
    return Model(project, rendered, cli=ComposeCLI(("docker", "compose"), (2, 30, 0)))


def fake_runner(secret: bytes, *, down: set[str] = frozenset(), slow: float = 0.0):
    """``runner.run`` as a running stack answers: every service logs ``secret`` (in several
    encodings, with a byte that is not UTF-8), Patroni's cluster state holds a credential-shaped
    URL; the services in ``down`` fail."""
    plain = secret.strip().decode()

    def run(args, **kwargs):
        args = list(args)
        time.sleep(slow)
        if args[:2] == ["docker", "info"] and "--format" in args:
            return runner.Result(tuple(args), 1, "", "no engine for the toolkit's own look")
        if args[:2] in (["docker", "version"], ["docker", "info"]):
            return runner.Result(tuple(args), 0, f"Server: fake\n HTTP Proxy: http://proxy:{plain}@proxy:3128\n", "")
        if args[:3] == ["docker", "system", "df"]:
            return runner.Result(tuple(args), 0, "TYPE TOTAL\nImages 3\n", "")
        service = args[-1]
        if "logs" in args:
            if service in down:
                return runner.Result(tuple(args), 1, "", f"service {service} is not running")
            line = (f"{service}-1  | 2026-01-01T00:00:00Z starting with password {plain}, url "
                    f"{quote(plain, safe='')}, b64 {base64.b64encode(plain.encode()).decode()} \ufffd\n")
            return runner.Result(tuple(args), 0, line * 3, "")
        if "exec" in args:
            doc = {"members": [{"name": "pg-1", "role": "leader", "state": "running",
                                "api_url": f"http://patroni:{plain}@pg-1:8008/patroni"}]}
            return runner.Result(tuple(args), 0, json.dumps(doc), "")
        if "config" in args:
            return runner.Result(tuple(args), 0, f"services:\n  web:\n    environment:\n      NOTE: {plain}\n", "")
        if "version" in args:
            return runner.Result(tuple(args), 0, "Docker Compose version v2.30.0\n", "")
        raise AssertionError(f"unexpected command {args}")

    return run


def documents(secret: bytes) -> dict:
    plain = secret.strip().decode()

    def preflight() -> Outcome:
        output.current().text(f"a finding that quotes {plain}")
        return Outcome({"findings": [{"detail": f"connect to postgres://u:{plain}@db"}]}, ok=False)

    def status() -> Outcome:
        raise ToolkitError(f"docker compose ps failed with {plain}", fix="start the engine")

    def health() -> Outcome:
        return 1 / 0  # a bug in a step: its part says so, the bundle goes on

    def verify() -> Outcome:
        output.current().say("verify", "proving things")
        return Outcome({"verdicts": []}, ok=True)

    return {"preflight": preflight, "status": status, "health": health, "verify": verify}


def run_doctor(tmp_path: Path, monkeypatch, *, to: str | None = None, down: set[str] = frozenset(),
               load=None) -> tuple[Path, dict, Path]:
    project = tmp_path / "project"
    (project / "secrets").mkdir(parents=True, exist_ok=True)
    (project / "secrets" / "smtp_password").write_bytes(LOGGED + b"\n")
    monkeypatch.setattr(runner, "run", fake_runner(LOGGED, down=down))
    path, doc = doctor.run(project, load or (lambda: fake_model(project)), documents(LOGGED), tail=50, to=to)
    return path, doc, project


def test_every_part_is_gathered_on_its_own_and_no_secret_reaches_the_archive(tmp_path, monkeypatch, capsys):
    before = output.configure(out=sys.stdout, err=sys.stderr)  # capsys's streams
    saved = (before.json, before.colour, before.out, before.err)
    path, doc, project = run_doctor(tmp_path, monkeypatch, down={"web"})
    assert (before.json, before.colour, before.out, before.err) == saved, "the caller's output is given back"
    assert not sorted(validator("doctor").iter_errors({"ok": True, **doc}), key=str)
    parts = {p["name"]: p for p in doc["parts"]}
    assert [p["name"] for p in doc["parts"]] == ["engine", "model", "preflight", "status", "health", "verify",
                                                 "patroni", "diskuse", "logs/etcd", "logs/pg-1", "logs/pg-2",
                                                 "logs/web"]
    assert {n for n, p in parts.items() if not p["ok"]} == {"status", "health", "logs/web"}
    assert parts["preflight"]["passed"] is False and parts["verify"]["passed"] is True
    assert parts["status"]["error"] == "docker compose ps failed with [REDACTED]"
    assert parts["health"]["error"] == "internal error: ZeroDivisionError: division by zero"
    assert parts["logs/web"]["error"] == "`docker compose logs` exited 1: service web is not running"
    assert doc["redacted"] >= 20 and doc["path"] == str(path)

    archive = path.read_bytes()
    assert leaks(archive, [LOGGED]) == []
    files = {name: data for name, data in archive_members(archive) if not name.startswith(("name of", "link of"))}
    top = path.name.removesuffix(".tar.gz")
    index = json.loads(files[f"/{top}/index.json"])
    assert index["parts"] == doc["parts"] and index["redaction"]["known_values"] == 1
    assert b"[REDACTED]" in files[f"/{top}/logs/pg-1.log"] and files[f"/{top}/logs/pg-1.log"].count(b"\n") == 3
    assert json.loads(files[f"/{top}/patroni/demo-pg.json"])["cluster"]["members"][0]["role"] == "leader"
    assert files[f"/{top}/preflight.txt"].strip() == b"a finding that quotes [REDACTED]"
    assert b"verify: proving things" in files[f"/{top}/verify.txt"]
    assert b"ZeroDivisionError" in files[f"/{top}/health.error.txt"]
    assert f"/{top}/logs/web.error.txt" in files and f"/{top}/logs/web.log" not in files
    assert b"Server: fake" in files[f"/{top}/engine/docker-info.txt"]
    printed = capsys.readouterr()
    assert LOGGED.decode() not in printed.out + printed.err
    assert "doctor: wrote " in printed.out and "status: not gathered: docker compose ps failed with [REDACTED]" in \
        printed.out


def test_without_a_model_the_parts_that_need_one_say_so_and_the_rest_are_gathered(tmp_path, monkeypatch):
    def broken():
        raise ToolkitError("required variable LOCAL_DOMAIN is missing a value", fix="set it in .env")

    _, doc, _ = run_doctor(tmp_path, monkeypatch, load=broken)
    parts = {p["name"]: p for p in doc["parts"]}
    assert parts["engine"]["ok"] and parts["model"]["ok"] and parts["preflight"]["ok"]
    for name in ("patroni", "logs"):
        assert not parts[name]["ok"] and "LOCAL_DOMAIN" in parts[name]["error"], parts[name]
    assert not parts["diskuse"]["ok"] and parts["diskuse"]["files"] == ["diskuse/docker-system-df.txt"]


def test_a_part_that_does_not_end_in_time_is_left_behind(tmp_path, monkeypatch):
    release = threading.Event()
    monkeypatch.setitem(doctor.BOUNDS, "verify", 0.3)
    project = tmp_path / "project"
    project.mkdir()
    monkeypatch.setattr(runner, "run", fake_runner(LOGGED))
    steps = documents(LOGGED)

    def stuck() -> Outcome:
        output.current().say("verify", "waiting for ever")
        release.wait(30)
        output.current().say("verify", "woke up late")
        return Outcome({})

    steps["verify"] = stuck
    t0 = time.monotonic()
    _, doc = doctor.run(project, lambda: fake_model(project), steps, tail=5, to=None)
    release.set()
    assert time.monotonic() - t0 < 20
    [verify] = [p for p in doc["parts"] if p["name"] == "verify"]
    assert (verify["ok"], verify["files"]) == (False, ["verify.error.txt"])
    assert verify["error"] == "verify did not finish within 0.3 s: left behind"
    later = [p for p in doc["parts"] if p["name"] in ("patroni", "logs/web")]
    assert len(later) == 2 and all(p["ok"] for p in later), "the parts after it are gathered"


def test_the_archive_is_written_atomically_0600_in_a_private_directory(tmp_path, monkeypatch):
    path, doc, project = run_doctor(tmp_path, monkeypatch)
    directory = project / ".readiness" / "doctor"
    assert path.parent == directory
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert path.name.startswith("doctor-") and path.name.endswith("Z.tar.gz")
    assert sorted(p.name for p in directory.iterdir()) == [path.name], "no temporary file is left"
    with tarfile.open(path) as tar:
        members = tar.getmembers()
    top = path.name.removesuffix(".tar.gz")
    assert [m.name for m in members if m.isfile()][0] == f"{top}/index.json"
    assert all(m.name.startswith(top) and m.uid == 0 and not m.uname for m in members)
    assert {stat.S_IMODE(m.mode) for m in members} == {0o600, 0o700}
    assert doc["bytes"] == path.stat().st_size

    # The same second again: a new name, the first archive untouched.
    first = path.read_bytes()
    same_second = calendar.timegm(time.strptime(top.removeprefix("doctor-"), "%Y%m%dT%H%M%SZ"))
    again = doctor.write(directory, [doctor.Part("x", {"x.txt": b"x"})], Redactor(), {}, same_second)
    assert again.name == f"{top}-2.tar.gz" and path.read_bytes() == first

    # A disk that fills up while the archive is written: no archive, no temporary file.
    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(ToolkitError, match="No space left"):
        doctor.write(directory, [doctor.Part("x", {"x.txt": b"x" * 100_000})], Redactor(), {}, same_second + 3600)
    assert sorted(p.name for p in directory.iterdir()) == sorted([path.name, again.name])


def test_to_chooses_the_directory_and_a_place_it_cannot_go_fails_before_the_work(tmp_path, monkeypatch):
    path, _, _ = run_doctor(tmp_path, monkeypatch, to=str(tmp_path / "reports"))
    assert path.parent == tmp_path / "reports"
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(ToolkitError, match="cannot create directory"):
        doctor.run(tmp_path, lambda: fake_model(tmp_path), {}, tail=5, to=str(blocker / "sub"))


def test_member_names_are_redacted_too():
    r = Redactor([LOGGED])
    data = doctor.archive_bytes("top", [(r.text(f"logs/{LOGGED.decode()}.log"), b"x")], time.time())
    assert leaks(data, [LOGGED]) == []
    assert "top/logs/[REDACTED].log" in [n.decode() for w, n in archive_members(data) if w.startswith("name of")]


def test_the_scanner_finds_a_secret_in_a_nested_archive():
    """The e2e scan must be able to fail: a secret in a gzip inside a zip inside a tar.gz is found."""
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as z:
        z.writestr("deep.gz", gzip.compress(b"x " + base64.b64encode(LOGGED) + b" y"))
    data = doctor.archive_bytes("top", [("nested.zip", inner.getvalue()), ("plain.txt", b"nothing")], time.time())
    found = leaks(data, [LOGGED + b"\n"])
    assert found and all(f.startswith("/top/nested.zip/deep.gz!gunzip: form ") for f in found), found


def test_tail_must_be_a_positive_number(tmp_path):
    from readiness import steps

    for tail in (0, -3, "many"):
        with pytest.raises(ToolkitError, match="--tail") as exc:
            steps.doctor(tmp_path, tail=tail, to=None)
        assert exc.value.code == output.EXIT_USAGE


# ------------------------------------------------------------------------- the real CLI, no engine


def test_invoke_doctor_json_with_no_engine_still_writes_a_bundle_without_secrets(tmp_path, compose_cli):
    """The Compose CLI renders the model without an engine; every part that needs the engine
    fails on its own, and the archive holds the model with the secret values that .env and
    secrets/ put into it replaced."""
    project = copy_repo(tmp_path / "repo")
    file_value, env_value = b"File0Secret0Value0123\n", "Env0Secret0Value0456"
    (project / "secrets" / "smtp_password").write_bytes(file_value)
    (project / "override.yml").write_text("services:\n  valkey:\n    environment:\n      DOCTOR_NOTE: ${DOCTOR_NOTE}\n"
                                          "      DOCTOR_PASSWORD: ${DOCTOR_PASSWORD}\n")
    env = (project / ".env.example").read_text() + f"\nDOCTOR_NOTE={file_value.strip().decode()}\n" \
        f"DOCTOR_PASSWORD={env_value}\n"
    (project / ".env").write_text(env)
    res = run_invoke(project, "doctor", "--json", "--tail", "20", timeout=240,
                     env={"DOCKER_HOST": "unix:///nonexistent/docker.sock",
                          "READINESS_EXTRA_COMPOSE_FILES": "override.yml"})
    assert res.returncode == 0, res.stdout + res.stderr
    doc = json.loads(res.stdout)
    assert not sorted(validator("doctor").iter_errors(doc), key=str)
    parts = {p["name"]: p for p in doc["parts"]}
    assert parts["model"]["ok"] and not parts["engine"]["ok"] and not parts["logs/valkey"]["ok"]
    assert "Cannot connect" in parts["engine"]["error"] or "nonexistent" in parts["engine"]["error"]
    archive = Path(doc["path"]).read_bytes()
    assert leaks(archive, [file_value, env_value.encode()]) == []
    assert file_value.strip().decode() not in res.stdout + res.stderr and env_value not in res.stdout + res.stderr
    config = next(data for name, data in archive_members(archive)
                  if name.endswith("/model/compose-config.yaml") and not name.startswith(("name of", "link of")))
    assert b"DOCTOR_NOTE: '[REDACTED]'" in config or b"DOCTOR_NOTE: [REDACTED]" in config, config
    assert b"DOCTOR_PASSWORD: [REDACTED]" in config or b"DOCTOR_PASSWORD: '[REDACTED]'" in config
    assert os.path.dirname(doc["path"]) == str(project / ".readiness" / "doctor")

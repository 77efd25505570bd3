"""Helpers of the fault-injection suite: project copies, recorded runs, kills, invariants.

Every subprocess the suite starts goes through :func:`run` or :func:`kill_after`, which put
its stdout/stderr in the :data:`LEDGER`; the secret-hygiene test scans all of it for every
secret value the suite generated. The rows of the reliability table live there too: a test
asserts its outcome through :meth:`Row.check`, which records the claim only once it held, so
the table (``report.py``) says what was asserted and nothing else.
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import shutil
import signal
import ssl
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from conftest import FIXTURES, REPO, clean_env, free_port, invoke_env  # tests/conftest.py

from readiness.prepare import certs
from readiness.prepare import secrets as secretslib
from readiness.stack import envfile

from . import report

INJECT = Path(__file__).resolve().parent / "inject"


# ------------------------------------------------------------------------------ the ledger


@dataclass
class Row:
    """One row of the reliability table, filled by the assertions of the tests that ran."""

    fault: str
    cases: int = 0
    claims: dict[str, int] = field(default_factory=dict)  # claim -> times asserted (and held)
    figures: list[str] = field(default_factory=list)  # measured, not asserted
    kept: int = 0  # assertions that data already written was kept
    lost_note: str | None = None  # for rows where data loss is not what is measured
    failure: str | None = None
    skipped: str | None = None

    def check(self, condition: object, claim: str, detail: object = "", *, keeps_data: bool = False) -> None:
        """Assert ``condition``; ``claim`` goes into the table only once it held.

        Raises AssertionError (not pytest's Failed) so that Hypothesis shrinks on it.
        """
        if not condition:
            raise AssertionError(f"{claim}: NOT TRUE\n{detail}" if detail != "" else f"{claim}: NOT TRUE")
        self.claims[claim] = self.claims.get(claim, 0) + 1
        if keeps_data:
            self.kept += 1

    def figure(self, text: str) -> None:
        self.figures.append(text)

    @property
    def status(self) -> str:
        if self.failure:
            return report.FAILED
        return report.PASSED if self.claims else report.NOT_RUN

    @property
    def outcome(self) -> str:
        if self.failure:
            return f"FAILED: {self.failure}"
        if not self.claims:
            return f"not run ({self.skipped})" if self.skipped else "not run"
        text = "; ".join(f"{claim} ({n}x)" if n > 1 else claim for claim, n in self.claims.items())
        return text + (f". Measured, not asserted: {', '.join(self.figures)}" if self.figures else "")

    @property
    def lost(self) -> str:
        if self.status != report.PASSED:
            return "not established"
        if self.lost_note:
            return self.lost_note
        if not self.kept:
            return "not measured"
        return f"nothing lost ({self.kept} check{'s' if self.kept > 1 else ''})"


@dataclass
class Ledger:
    """What the suite did, for the hygiene scan and the reliability table."""

    outputs: list[tuple[str, str]] = field(default_factory=list)  # (label, text)
    secret_values: dict[str, str] = field(default_factory=dict)  # value -> where it was seen
    rows: dict[str, Row] = field(default_factory=dict)
    current_test: str = ""
    touched: dict[str, set[str]] = field(default_factory=dict)  # test node id -> row keys

    def output(self, label: str, *texts: str | bytes | None) -> None:
        for text in texts:
            if isinstance(text, bytes):
                text = text.decode("utf-8", "replace")
            if text:
                self.outputs.append((label, text))

    def row(self, key: str) -> Row:
        """The row ``key``; a failure of the current test marks it failed (``conftest.py``)."""
        row = self.rows.get(key) or self.rows.setdefault(key, Row(ROWS[key][0]))
        self.touched.setdefault(self.current_test, set()).add(key)
        return row

    def test_failed(self, nodeid: str, reason: str) -> None:
        for key in self.touched.get(nodeid, ()):
            self.rows[key].failure = self.rows[key].failure or reason

    def test_skipped(self, module: str, reason: str) -> None:
        for key, (fault, test_module) in ROWS.items():
            if test_module == module:
                self.rows.setdefault(key, Row(fault)).skipped = reason

    def harvest(self, root: Path) -> None:
        """Remember every secret value found under any ``secrets/`` directory below ``root``."""
        for secrets_dir in root.rglob("secrets"):
            if secrets_dir.is_dir():
                for path, value in secret_values(secrets_dir):
                    self.secret_values.setdefault(value, str(path))

    def result(self, **settings: object) -> dict:
        """Every row of the table, in order, as the JSON artifact keeps it."""
        rows = []
        for key, (fault, _) in ROWS.items():
            row = self.rows.get(key) or Row(fault)
            rows.append({"key": key, "fault": fault, "cases": row.cases, "outcome": row.outcome, "lost": row.lost,
                         "status": row.status})
        return {**settings, "rows": rows}


#: Row key -> (fault or input class as the table shows it, test that fills it). Order = table order.
ROWS: dict[str, tuple[str, str]] = {
    "kill.env": ("SIGKILL mid-write or at a random moment of `invoke env` (.env created or extended)",
                 "test_interrupt"),
    "kill.secrets": ("SIGKILL mid-write or at a random moment of `invoke secrets` (secret files created)",
                     "test_interrupt"),
    "kill.certs": ("SIGKILL mid-write or at a random moment of `invoke certs` (pair issued, or replaced with a backup)",
                   "test_interrupt"),
    "kill.control": ("Control: the same kill test on a copy whose writes are in place (not atomic)",
                     "test_interrupt"),
    "race.bootstrap": ("Two `invoke bootstrap` started at once on a fresh stack", "test_concurrency"),
    "disk.full": ("Full disk: `secrets/` on a 16 KiB tmpfs filled up", "test_storage"),
    "disk.readonly": ("Read-only bind mount over `secrets/` / the project", "test_storage"),
    "engine.before-up": ("Second Docker engine stopped before `invoke up`", "test_engine"),
    "engine.during-up": ("Second Docker engine stopped during `up --wait`", "test_engine"),
    "input.env-parse": ("Generated `.env` text through `envfile.parse_text`", "test_hostile_input"),
    "input.env-ensure": ("Generated `.env` files through `envfile.ensure` (append missing keys)",
                         "test_hostile_input"),
    "input.interpolation": ("Generated interpolation strings through `check_compose.unescaped_refs`",
                            "test_hostile_input"),
    "input.compose-oracle": ("The same strings checked against `docker compose config`", "test_hostile_input"),
    "input.names": ("Generated secret and service names through secrets/preflight", "test_hostile_input"),
    "hygiene.outputs": ("Every stdout/stderr of the suite scanned for every generated secret value",
                        "test_zz_hygiene"),
    "hygiene.guard": ("A commit tracking a file under `secrets/` (guard, pre-commit, preflight)", "test_guard"),
    "hygiene.modes": ("Modes of generated secrets and keys against the table in secrets/README.md",
                      "test_guard"),
}

LEDGER = Ledger()


# ------------------------------------------------------------------------------ running


def cli_env(project: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a toolkit run: the one ``run_invoke`` uses (tests/conftest.py)."""
    return invoke_env(project, extra)


def invoke_argv(*args: str, search_root: Path = REPO) -> list[str]:
    return [sys.executable, "-m", "invoke", "--search-root", str(search_root), *args]


def run(project: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 300,
        search_root: Path = REPO, label: str = "") -> subprocess.CompletedProcess[str]:
    """``invoke ARGS`` on ``project`` in a subprocess; its output goes to the ledger."""
    res = subprocess.run(invoke_argv(*args, search_root=search_root), cwd=project, env=cli_env(project, env),
                         capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    LEDGER.output(label or f"invoke {' '.join(args)}", res.stdout, res.stderr)
    return res


@dataclass
class Killed:
    returncode: int
    finished_first: bool  # the run ended on its own before the kill
    stdout: str
    stderr: str


def begins(log: Path, under: str | None = None) -> int:
    """How many writes the injector has started (``begin`` lines in its log), all of them or
    only those of files under the directory ``under``."""
    try:
        lines = [line.split(" ", 2) for line in log.read_text().splitlines()]
    except OSError:
        return 0
    prefix = os.path.realpath(under) + os.sep if under else ""
    return sum(1 for parts in lines if parts[1:2] == ["begin"] and parts[2].startswith(prefix))


def kill_after(project: Path, delay: float, *args: str, env: dict[str, str] | None = None,
               search_root: Path = REPO, on_begin: tuple[Path, int, str | None] | None = None) -> Killed:
    """Start ``invoke ARGS``, SIGKILL its whole process group after ``delay`` seconds.

    With ``on_begin=(log, n, under)`` the kill comes as soon as the injector logs the n-th write it
    starts (of a file under ``under``, when that is not None; ``delay`` is then only a
    deadline): such a kill always lands mid-write, since the
    injector pauses between the pieces of every write. The group includes the ``docker
    compose`` and ``mkcert`` children, as when a machine loses power or the OOM killer takes
    the session.
    """
    proc = subprocess.Popen(invoke_argv(*args, search_root=search_root), cwd=project, env=cli_env(project, env),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.monotonic() + delay
    while time.monotonic() < deadline and proc.poll() is None:
        if on_begin is not None and begins(on_begin[0], on_begin[2]) >= on_begin[1]:
            break
        time.sleep(min(0.002 if on_begin else 0.005, max(0.0, deadline - time.monotonic())))
    finished = proc.poll() is not None
    with contextlib.suppress(ProcessLookupError):  # also when it ended: no straggler may survive
        os.killpg(proc.pid, signal.SIGKILL)
    out, err = proc.communicate(timeout=60)
    LEDGER.output(f"killed invoke {' '.join(args)}", out, err)
    return Killed(proc.returncode, finished, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"))


def failure_problems(res: subprocess.CompletedProcess[str], *needles: str) -> list[str]:
    """What keeps ``res`` from being a clean failure: non-zero exit, one paragraph starting with
    ``error:``, no traceback, every needle in it."""
    text = res.stdout + res.stderr
    out = []
    if res.returncode == 0:
        out.append("exit 0")
    if "Traceback" in text:
        out.append("a traceback")
    if "error: " not in res.stderr:
        out.append("no `error:` paragraph")
    out += [f"{needle!r} not in stderr" for needle in needles if needle not in res.stderr]
    return out + ([f"output:\n{text}"] if out else [])


# ------------------------------------------------------------------------------ projects


def make_mini(dest: Path) -> tuple[Path, str]:
    """A copy of the mini stack with its own network name and port (like the ``mini`` fixture)."""
    shutil.copytree(FIXTURES / "mini", dest)
    net = f"readiness-faults-{uuid.uuid4().hex[:8]}"
    example = dest / ".env.example"
    text = example.read_text().replace("MINI_NETWORK=readiness-mini-edge", f"MINI_NETWORK={net}")
    example.write_text(text.replace("WEB_PORT=18080", f"WEB_PORT={free_port()}"))
    return dest, net


def network_ids(name: str, env: dict[str, str] | None = None) -> list[str]:
    res = subprocess.run(["docker", "network", "ls", "-q", "--filter", f"name=^{re.escape(name)}$"],
                         capture_output=True, text=True, env=clean_env(env))
    return res.stdout.split()


def remove_network(name: str, env: dict[str, str] | None = None) -> None:
    """Remove every network called ``name`` (by id: two of them may exist after a race)."""
    ids = network_ids(name, env)
    if ids:
        subprocess.run(["docker", "network", "rm", *ids], capture_output=True, env=clean_env(env))


def copy_readiness(dest: Path) -> Path:
    """A throwaway copy of tasks.py + the readiness package (for mutation checks)."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy2(REPO / "tasks.py", dest / "tasks.py")
    shutil.copytree(REPO / "readiness", dest / "readiness", ignore=shutil.ignore_patterns("__pycache__"))
    return dest


# ------------------------------------------------------------------------------ invariants


def secret_policies(project: Path) -> dict[str, dict]:
    """name -> {"file": Path, **x-readiness} from the project's root compose file, as written."""
    doc = yaml.safe_load((project / "docker-compose.yml").read_text())
    out = {}
    for name, spec in (doc.get("secrets") or {}).items():
        if spec.get("file"):
            out[name] = {"file": (project / spec["file"]).resolve(), **(spec.get("x-readiness") or {})}
    return out


def value_problem(value: str, charset: str, length: int) -> str | None:
    """Why ``value`` breaks the charset/length policy (the one ``secrets.generate_value`` follows)."""
    if len(value) != length:
        return f"length {len(value)}, policy {length}"
    alphabet = secretslib.CHARSETS[charset]
    if any(c not in alphabet for c in value):
        return "character outside the charset"
    if charset == "alnum" and not value[0].isalpha():
        return "does not start with a letter"
    if charset == "password":
        classes = (str.islower, str.isupper, str.isdigit, lambda c: c in secretslib.SYMBOLS)
        if not all(any(test(c) for c in value) for test in classes):
            return "misses a character class"
    return None


def secret_problems(project: Path) -> list[str]:
    """Every present secret file must be complete and follow its policy; absent is fine."""
    out = []
    for name, pol in secret_policies(project).items():
        path: Path = pol["file"]
        if pol.get("certificate") or not path.exists():
            continue
        content = path.read_text(encoding="utf-8", errors="replace")
        charset, length = str(pol.get("charset", "alnum")), int(pol.get("length", secretslib.DEFAULT_LENGTH))
        if pol.get("format") == "htpasswd":
            user = str(pol.get("htpasswd-user", "admin"))
            sidecar = path.with_name(path.name + ".password")
            if not re.fullmatch(re.escape(user) + r":\{SHA\}[A-Za-z0-9+/]{27}=\n", content):
                out.append(f"{name}: not a complete htpasswd line ({len(content)} bytes)")
            elif not sidecar.exists():
                out.append(f"{name}: htpasswd present but its plaintext {sidecar.name} is missing")
            elif secretslib.htpasswd_line(user, sidecar.read_text().strip()) != content:
                out.append(f"{name}: htpasswd does not match {sidecar.name}")
            continue
        template = pol.get("template")
        if template:
            head, _, tail = template.partition("{value}")
            if not (content.startswith(head) and content.endswith(tail)):
                out.append(f"{name}: does not match its template ({len(content)} bytes)")
                continue
            content = content[len(head):len(content) - len(tail)]
        problem = value_problem(content, charset, length)
        if problem:
            out.append(f"{name}: {problem}")
    for sidecar in (project / "secrets").glob("*.password"):
        problem = value_problem(sidecar.read_text(), "alnum", secretslib.DEFAULT_LENGTH)
        if problem:
            out.append(f"{sidecar.name}: {problem}")
    return out


def pem_problem(path: Path, label: str) -> str | None:
    """None when ``path`` is one complete PEM block whose DER length matches its ASN.1 header."""
    text = path.read_text(errors="replace")
    m = re.fullmatch(rf"-----BEGIN {label}-----\n([A-Za-z0-9+/=\n]+)-----END {label}-----\n", text)
    if not m:
        return f"{path.name}: not one complete PEM {label} block ({len(text)} bytes)"
    try:
        der = base64.b64decode(m.group(1), validate=False)
    except ValueError:
        return f"{path.name}: PEM body is not base64"
    if len(der) < 4 or der[0] != 0x30:
        return f"{path.name}: DER does not start with a SEQUENCE"
    if der[1] < 0x80:
        want = 2 + der[1]
    else:
        n = der[1] & 0x7F
        want = 2 + n + int.from_bytes(der[2:2 + n], "big")
    return None if want == len(der) else f"{path.name}: DER is {len(der)} bytes, its header says {want}"


def cert_problems(project: Path, domain: str | None = "localhost") -> list[str]:
    """cert.pem, when present, parses, matches key.pem, chains to rootCA.pem and covers the names.

    When cert.pem is absent, key.pem and rootCA.pem may be there or not, but each present one
    must be a complete PEM block. Backups must be complete too. ``domain`` None checks the pair
    and its chain only (right after a kill the old pair may still be there for the old names).
    """
    directory = project / "secrets" / "certs"
    paths = certs.CertPaths(directory / "cert.pem", directory / "key.pem")
    out = []
    for path, label in ((paths.key, "PRIVATE KEY"), (paths.ca, "CERTIFICATE"), (paths.cert, "CERTIFICATE")):
        if path.exists():
            problem = pem_problem(path, label)
            if problem:
                out.append(problem)
    for backup in sorted(directory.glob("backup-*")):
        for path in sorted(backup.iterdir()):
            problem = pem_problem(path, "PRIVATE KEY" if path.name == "key.pem" else "CERTIFICATE")
            if problem:
                out.append(f"{backup.name}/{problem}")
    if paths.cert.exists() and not out:
        names = certs.required_names([f"web.{domain}", f"dash.{domain}"]) if domain else []
        out += certs.problems(paths, names, min_days=0)
    return out


def env_problems(project: Path, before: bytes | None) -> list[str]:
    """.env parses; every key=value it had before is unchanged, its old bytes are a prefix."""
    path = project / ".env"
    if not path.exists():
        return ["the .env that existed is gone"] if before else []
    data = path.read_bytes()
    parsed = envfile.parse_text(data.decode("utf-8", "replace"), path)
    out = [f".env line {n}: {msg}" for n, msg in parsed.errors]
    if before is not None:
        old = envfile.parse_text(before.decode(), path).values
        new = parsed.values
        out += [f".env: {k} changed or vanished" for k, v in old.items() if new.get(k) != v]
        if not data.startswith(before):
            out.append(".env: the bytes that were there before were not kept")
    if before is None:  # a fresh .env is a copy of the example, never a part of it
        example = (project / ".env.example").read_bytes()
        if not data.startswith(example):
            out.append(".env: created, but not a complete copy of .env.example")
    return out


def stray_files(project: Path) -> list[str]:
    """Temporary files or dirs a killed run left behind (they may hold partial secrets)."""
    found = []
    for base in (project, project / "secrets", project / "secrets" / "certs"):
        if base.is_dir():
            found += [str(p.relative_to(project)) for p in base.iterdir()
                      if (p.name.startswith(".") and p.name.endswith(".tmp")) or p.name.startswith(".mkcert-")]
    return sorted(found)


def snapshot(project: Path) -> dict[str, bytes]:
    """Bytes of .env, every secret file and the certificate files that exist now."""
    out = {}
    for path in [project / ".env", *sorted((project / "secrets").rglob("*"))]:
        transient = path.name.endswith((".lock", ".tmp")) or any(
            part.startswith((".mkcert-", "backup-")) for part in path.parts)
        if path.is_file() and not transient:
            out[str(path.relative_to(project))] = path.read_bytes()
    return out


def stable_values(snap: dict[str, bytes], project: Path, domain: str = "localhost") -> dict[str, bytes]:
    """The part of a snapshot a later run must never change: complete secrets, a valid pair, .env.

    A key or CA without its certificate (a run killed between two renames) is not a pair yet:
    the next run may replace it.
    """
    keep = {k: v for k, v in snap.items() if not k.startswith("secrets/certs/") and k != ".env"}
    if (project / "secrets" / "certs" / "cert.pem").is_file() and not cert_problems(project, domain):
        keep.update({k: v for k, v in snap.items() if k.startswith("secrets/certs/")})
    return keep


# ------------------------------------------------------------------------------ secret values


def secret_values(secrets_dir: Path) -> list[tuple[Path, str]]:
    """(file, value) for every secret value stored under ``secrets_dir``.

    Templates are reduced to the random part, htpasswd files to their digest, private keys
    to each line of their base64 body; public material (certificates, the CA) is skipped.
    """
    out: list[tuple[Path, str]] = []
    for path in sorted(secrets_dir.rglob("*")):
        if not path.is_file() or path.name in secretslib.ALLOWED_TRACKED or path.suffix == ".lock":
            continue
        if path.name in ("cert.pem", certs.CA_FILE) or path.name.endswith(".tmp"):
            continue
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        if "PRIVATE KEY" in text:
            out += [(path, line) for line in text.splitlines() if len(line) >= 40 and "-----" not in line]
            continue
        text = text.strip()
        if "{SHA}" in text:
            out.append((path, text.split("{SHA}", 1)[1]))
        elif text.startswith("https://"):
            out.append((path, text.rsplit("/", 1)[-1]))
        elif len(text) >= 12:
            out.append((path, text))
    return out


def handshake_ok(project: Path) -> bool:
    """A verifying TLS client that trusts only rootCA.pem accepts cert.pem/key.pem.

    A real TLS handshake through memory buffers, with OpenSSL (the ``ssl`` module) on both
    ends: a check independent of readiness.prepare.certs, which judges the pair with ``cryptography``.
    """
    d = project / "secrets" / "certs"
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(d / "cert.pem", d / "key.pem")
    client = ssl.create_default_context(cafile=str(d / "rootCA.pem"))
    bios = [ssl.MemoryBIO() for _ in range(4)]  # client in/out, server in/out
    tls_client = client.wrap_bio(bios[0], bios[1], server_hostname="web.localhost")
    tls_server = server.wrap_bio(bios[2], bios[3], server_side=True)
    for _ in range(8):
        try:
            tls_client.do_handshake()
            return True
        except ssl.SSLWantReadError:
            pass
        except ssl.SSLError:
            return False
        bios[2].write(bios[1].read())
        with contextlib.suppress(ssl.SSLWantReadError):
            tls_server.do_handshake()
        bios[0].write(bios[3].read())
    return False

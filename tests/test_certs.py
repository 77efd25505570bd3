"""Tests for readiness.prepare.certs: the checks on certificates made here, issuing through the real mkcert.

The checking tests build their CA, leaves and keys with ``cryptography`` (shaped like mkcert's:
see certfactory.py), so each bad case -- foreign CA, missing name,
expired, encrypted key, ... -- is made exactly, with no mkcert and no waiting for a date.
Everything that writes files (:func:`certs.ensure`) runs the real mkcert with a temporary
CAROOT, since that is the production path, and one test checks that a real mkcert pair passes
the check. No mocks.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import threading
import time
from datetime import timedelta, timezone
from pathlib import Path

import pytest
from certfactory import DAY, NOW, Authority, authority, issue, key_pem, new_key, pem
from conftest import require_tool  # tests/conftest.py
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from readiness.errors import ToolkitError
from readiness.prepare import certs
from readiness.prepare.certs import CertPaths
from readiness.system import fsutil

HOSTS = ["grafana.localhost", "prometheus.localhost", "traefik.localhost"]
NAMES = certs.required_names(HOSTS)


def _paths(directory: Path) -> CertPaths:
    return CertPaths(cert=directory / "cert.pem", key=directory / "key.pem")


def _write(directory: Path, ca: Authority, leaf: x509.Certificate, key: ec.EllipticCurvePrivateKey,
           *, chain: tuple[x509.Certificate, ...] = ()) -> CertPaths:
    """cert.pem (leaf, then ``chain``), key.pem and rootCA.pem in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = _paths(directory)
    paths.cert.write_bytes(b"".join(pem(c) for c in (leaf, *chain)))
    paths.key.write_bytes(key_pem(key))
    paths.ca.write_bytes(pem(ca.cert))
    return paths


@pytest.fixture(scope="session")
def ca() -> Authority:
    return authority()


@pytest.fixture(scope="session")
def other_ca() -> Authority:
    return authority("another CA")


@pytest.fixture
def pair(tmp_path: Path, ca: Authority) -> CertPaths:
    """A valid pair for NAMES at NOW, made by ``ca``."""
    return _write(tmp_path / "certs", ca, *issue(ca, NAMES))


# --- helpers for the mkcert tests -----------------------------------------------------------


@pytest.fixture
def mkcert() -> None:
    """The production path needs mkcert: CI installs it (.ci/run), elsewhere skip and say why."""
    require_tool("mkcert", "needed to test issuing; the checks are tested without it")


@pytest.fixture(scope="session")
def caroot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One mkcert CA for the session (mkcert creates it on first use): CA creation costs ~1 s."""
    return tmp_path_factory.mktemp("caroot") / "ca"


def _make(directory: Path, names: list[str], caroot: Path) -> CertPaths:
    paths = _paths(directory)
    changed, _ = certs.ensure(paths, names, caroot=caroot)
    assert changed
    return paths


def _snapshot(paths: CertPaths) -> dict[str, tuple[str, int, int]]:
    out = {}
    for path in (paths.cert, paths.key, paths.ca):
        st = path.stat()
        out[path.name] = (hashlib.sha256(path.read_bytes()).hexdigest(), st.st_mtime_ns, st.st_mode)
    return out


def _load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _san(path: Path) -> set[str]:
    """SAN entries as plain names (IPs in compressed form), read independently of the module."""
    san = _load(path).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {*san.get_values_for_type(x509.DNSName), *(ip.compressed for ip in san.get_values_for_type(x509.IPAddress))}


def _overwrite(path: Path, data: bytes) -> None:
    path.unlink()  # the file is read-only (0400/0444); the directory is ours
    path.write_bytes(data)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _backups(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("backup-"))


def _no_temp_left(directory: Path) -> bool:
    return not any(p.name.startswith(".mkcert-") for p in directory.iterdir())


def _old_backups(directory: Path, count: int) -> list[str]:
    """``count`` backups as :func:`certs.ensure` names them, older than any it will make now."""
    made = []
    for i in range(count):
        backup = directory / f"backup-2020010{i + 1}T000000Z"
        backup.mkdir(mode=0o700)
        (backup / "key.pem").write_bytes(key_pem(new_key()))
        made.append(backup.name)
    return made


# --- names ----------------------------------------------------------------------------------


def test_required_names_sorted_unique_with_loopback_names() -> None:
    got = certs.required_names(["b.localhost", "A.localhost", "b.localhost", "localhost", " ::1 ", ""])
    assert got == ["a.localhost", "b.localhost", "localhost", "127.0.0.1", "::1"]
    assert certs.required_names(["0:0:0:0:0:0:0:1", "127.0.0.1"]) == ["localhost", "127.0.0.1", "::1"]


def test_required_names_refuses_a_wildcard() -> None:
    with pytest.raises(ToolkitError) as err:
        certs.required_names(["*.localhost"])
    assert "explicitly" in (err.value.fix or "")


# --- checks on certificates made here (no mkcert) -------------------------------------------


def test_valid_pair_has_no_problems(pair: CertPaths) -> None:
    assert certs.problems(pair, NAMES, now=NOW) == []
    assert certs.problems(pair, [], now=NOW) == []  # nothing to cover: the chain still holds


def test_problems_lists_every_missing_file(tmp_path: Path) -> None:
    assert certs.problems(_paths(tmp_path / "certs"), NAMES) == [
        "cert.pem is missing",
        "key.pem is missing",
        "rootCA.pem is missing",
    ]


def test_a_directory_in_place_of_a_file_is_named(pair: CertPaths) -> None:
    pair.key.unlink()
    pair.key.mkdir()
    assert certs.problems(pair, NAMES, now=NOW) == ["key.pem is not a regular file"]


def _problems_as_nobody(paths: CertPaths) -> list[str]:
    """``problems`` run by an unprivileged user (root reads every file, whatever its mode).

    A forked child changes into the directory, drops to uid/gid 65534 and checks relative
    paths, so the temp dirs above (0700, root's) need not be opened to other users.
    """
    if os.geteuid() != 0:
        return certs.problems(paths, NAMES, now=NOW)
    directory = paths.cert.parent
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            os.close(read_end)
            os.chdir(directory)
            os.setgid(65534)
            os.setuid(65534)
            found = certs.problems(_paths(Path(".")), NAMES, now=NOW)
            os.write(write_end, json.dumps(found).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        data = pipe.read()
    os.waitpid(pid, 0)
    return json.loads(data)


def test_an_unreadable_key_is_named(pair: CertPaths) -> None:
    os.chmod(pair.key, 0o400)  # as mkcert's key is installed: only its owner may read it
    os.chmod(pair.cert.parent, 0o711)
    if os.geteuid() != 0:
        os.chmod(pair.key, 0o000)

    assert _problems_as_nobody(pair) == ["key.pem is not readable (Permission denied)"]


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda pem: pem[: len(pem) // 2], id="truncated"),
        pytest.param(lambda pem: b"this is not a certificate\n", id="garbage"),
        pytest.param(lambda pem: b"", id="empty"),
        pytest.param(lambda pem: x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER),
                     id="DER"),
    ],
)
def test_a_damaged_certificate_is_a_reason_not_an_exception(pair: CertPaths, damage) -> None:
    pair.cert.write_bytes(damage(pair.cert.read_bytes()))
    assert certs.problems(pair, NAMES, now=NOW) == ["cert.pem is not a PEM certificate"]


def test_a_damaged_ca_is_named_and_the_names_still_checked(pair: CertPaths) -> None:
    pair.ca.write_bytes(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    assert certs.problems(pair, NAMES, now=NOW) == ["rootCA.pem is not a PEM certificate"]
    assert certs.problems(pair, [*NAMES, "extra.localhost"], now=NOW) == [
        "rootCA.pem is not a PEM certificate",
        "cert.pem does not cover extra.localhost",
    ]


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", id="garbage-body"),
        pytest.param(b"not a key\n", id="no-pem"),
        pytest.param(None, id="a-certificate"),
    ],
)
def test_a_damaged_key_is_a_reason(pair: CertPaths, content: bytes | None) -> None:
    pair.key.write_bytes(content if content is not None else pair.cert.read_bytes())
    assert certs.problems(pair, NAMES, now=NOW) == ["key.pem is not a PEM private key"]


def test_the_key_of_another_pair_does_not_match(pair: CertPaths) -> None:
    other_key = key_pem(new_key())
    pair.key.write_bytes(other_key)

    reasons = certs.problems(pair, NAMES, now=NOW)

    assert reasons == ["key.pem does not match cert.pem"]
    key_lines = [line for line in other_key.decode().splitlines() if len(line) > 16]
    assert key_lines and not any(line in reason for line in key_lines for reason in reasons)


@pytest.mark.parametrize("fmt", [serialization.PrivateFormat.PKCS8, serialization.PrivateFormat.TraditionalOpenSSL],
                         ids=["pkcs8", "traditional"])
def test_an_encrypted_key_is_reported_as_such(tmp_path: Path, ca: Authority,
                                              fmt: serialization.PrivateFormat) -> None:
    leaf, key = issue(ca, NAMES)
    paths = _write(tmp_path / "certs", ca, leaf, key)
    paths.key.write_bytes(key_pem(key, fmt=fmt, password=b"correct horse"))

    assert certs.problems(paths, NAMES, now=NOW) == ["key.pem is encrypted (Traefik needs an unencrypted key)"]


def test_a_leaf_from_another_ca_does_not_chain(tmp_path: Path, ca: Authority, other_ca: Authority) -> None:
    paths = _write(tmp_path / "certs", ca, *issue(other_ca, [n for n in NAMES if n != "grafana.localhost"]))

    # The chain error must not hide which names the foreign leaf lacks.
    assert certs.problems(paths, NAMES, now=NOW) == [
        "cert.pem does not chain to rootCA.pem",
        "cert.pem does not cover grafana.localhost",
    ]


def test_an_intermediate_in_cert_pem_completes_the_chain(tmp_path: Path, ca: Authority) -> None:
    intermediate = authority("intermediate", issuer=ca)
    leaf, key = issue(intermediate, NAMES)

    with_it = _write(tmp_path / "with", ca, leaf, key, chain=(intermediate.cert,))
    without = _write(tmp_path / "without", ca, leaf, key)

    assert certs.problems(with_it, NAMES, now=NOW) == []
    assert certs.problems(without, NAMES, now=NOW) == ["cert.pem does not chain to rootCA.pem"]


def test_an_uncovered_name_is_named_in_the_order_given(tmp_path: Path, ca: Authority) -> None:
    paths = _write(tmp_path / "certs", ca, *issue(ca, ["prometheus.localhost", "localhost", "127.0.0.1", "::1"]))

    assert certs.problems(paths, NAMES, now=NOW) == [
        "cert.pem does not cover grafana.localhost",
        "cert.pem does not cover traefik.localhost",
    ]
    assert certs.problems(paths, ["PROMETHEUS.localhost"], now=NOW) == []  # DNS is case-insensitive
    assert certs.problems(paths, ["bad name.localhost"], now=NOW) == ["'bad name.localhost' is not a valid hostname"]


def test_ip_names_need_ip_address_entries(tmp_path: Path, ca: Authority) -> None:
    no_v6 = _write(tmp_path / "a", ca, *issue(ca, [*HOSTS, "localhost", "127.0.0.1"]))
    as_dns = _write(tmp_path / "b", ca, *issue(ca, NAMES, ip_as_dns=True))

    assert certs.problems(no_v6, NAMES, now=NOW) == ["cert.pem does not cover ::1"]
    # An address written as a DNS name does not count: clients match IPs against IP entries only.
    assert certs.problems(as_dns, NAMES, now=NOW) == [
        "cert.pem does not cover 127.0.0.1",
        "cert.pem does not cover ::1",
    ]


def test_a_client_certificate_is_not_a_server_certificate(tmp_path: Path, ca: Authority) -> None:
    paths = _write(tmp_path / "certs", ca, *issue(ca, NAMES, usage=ExtendedKeyUsageOID.CLIENT_AUTH))

    [reason] = certs.problems(paths, NAMES, now=NOW)

    assert reason.startswith("cert.pem is not accepted as a TLS server certificate (")


def test_expiry_rules_follow_the_clock(tmp_path: Path, ca: Authority) -> None:
    not_before, not_after = NOW - 10 * DAY, NOW + 100 * DAY
    paths = _write(tmp_path / "certs", ca, *issue(ca, NAMES, not_before=not_before, not_after=not_after))

    assert certs.problems(paths, NAMES, now=not_after - 10 * DAY) == ["cert.pem expires in 10 days (less than 30)"]
    assert certs.problems(paths, NAMES, now=not_after - 10 * DAY, min_days=5) == []
    assert certs.problems(paths, NAMES, now=not_after - 31 * DAY) == []
    assert certs.problems(paths, NAMES, now=not_after - 1.5 * DAY) == ["cert.pem expires in 1 day (less than 30)"]
    assert certs.problems(paths, NAMES, now=not_after + timedelta(hours=1)) == [
        f"cert.pem expired on {not_after:%Y-%m-%d %H:%M} UTC"]
    assert certs.problems(paths, NAMES, now=not_before - DAY) == [
        f"cert.pem is not valid before {not_before:%Y-%m-%d %H:%M} UTC"]
    # A naive clock is UTC; an aware one in another zone is the same moment.
    naive = (not_after + timedelta(hours=1)).replace(tzinfo=None)
    assert certs.problems(paths, NAMES, now=naive) == certs.problems(paths, NAMES, now=not_after + timedelta(hours=1))
    plus2 = (not_after - 10 * DAY).astimezone(timezone(timedelta(hours=2)))
    assert certs.problems(paths, NAMES, now=plus2) == ["cert.pem expires in 10 days (less than 30)"]


def test_an_expired_ca_is_reported_once_as_a_date(tmp_path: Path) -> None:
    short_ca = authority("short-lived CA", not_before=NOW - 100 * DAY, not_after=NOW + 10 * DAY)
    paths = _write(tmp_path / "certs", short_ca, *issue(short_ca, NAMES, not_after=NOW + 400 * DAY))

    later = NOW + 20 * DAY
    assert certs.problems(paths, NAMES, now=later) == [f"rootCA.pem expired on {NOW + 10 * DAY:%Y-%m-%d %H:%M} UTC"]
    assert certs.problems(paths, NAMES, now=NOW) == []  # the CA has no 30-day rule: mkcert's lasts 10 years


# --- issuing through the real mkcert (the production path) ----------------------------------


@pytest.mark.usefixtures("mkcert")
def test_fresh_generate_creates_the_three_files_and_passes_the_check(tmp_path: Path, caroot: Path) -> None:
    directory = tmp_path / "secrets" / "certs"
    paths = _paths(directory)

    changed, reasons = certs.ensure(paths, NAMES, caroot=caroot)

    assert changed is True
    assert reasons == ["cert.pem is missing", "key.pem is missing", "rootCA.pem is missing"]
    assert _mode(directory) == 0o700
    assert _mode(paths.key) == 0o400
    assert _mode(paths.cert) == 0o444
    assert _mode(paths.ca) == 0o444
    assert set(NAMES) <= _san(paths.cert)  # read independently of the module under test
    assert paths.ca.read_bytes() == (caroot / "rootCA.pem").read_bytes()
    # cryptography's verifier accepts mkcert's leaf + rootCA.pem as mkcert makes them.
    assert certs.problems(paths, NAMES) == []
    assert certs.problems(paths, [*NAMES, "other.localhost"]) == ["cert.pem does not cover other.localhost"]
    assert sorted(p.name for p in directory.iterdir() if not p.name.startswith(".certs.lock")) == [
        "cert.pem",
        "key.pem",
        "rootCA.pem",
    ]


@pytest.mark.usefixtures("mkcert")
def test_second_ensure_changes_no_byte(tmp_path: Path, caroot: Path) -> None:
    paths = _make(tmp_path / "certs", NAMES, caroot)
    before = _snapshot(paths)
    listing = sorted(os.listdir(paths.cert.parent))

    assert certs.ensure(paths, NAMES, caroot=caroot) == (False, [])

    assert _snapshot(paths) == before
    assert sorted(os.listdir(paths.cert.parent)) == listing


@pytest.mark.usefixtures("mkcert")
def test_a_missing_name_is_named_and_regenerated_with_a_backup(tmp_path: Path, caroot: Path) -> None:
    fewer = [n for n in NAMES if n != "grafana.localhost"]
    paths = _make(tmp_path / "certs", fewer, caroot)
    old = {p.name: p.read_bytes() for p in (paths.cert, paths.key)}

    assert certs.problems(paths, NAMES) == ["cert.pem does not cover grafana.localhost"]
    changed, reasons = certs.ensure(paths, NAMES, caroot=caroot)

    assert (changed, reasons) == (True, ["cert.pem does not cover grafana.localhost"])
    assert "grafana.localhost" in _san(paths.cert)
    assert certs.problems(paths, NAMES) == []
    [backup] = _backups(paths.cert.parent)
    assert _mode(paths.cert.parent / backup) == 0o700
    kept = {p.name: p.read_bytes() for p in (paths.cert.parent / backup).iterdir()}
    assert kept == old  # rootCA.pem unchanged: not kept
    assert paths.cert.read_bytes() != old["cert.pem"]
    assert _no_temp_left(paths.cert.parent)


@pytest.mark.usefixtures("mkcert")
def test_ensure_renews_a_cert_close_to_expiry(tmp_path: Path, caroot: Path) -> None:
    paths = _make(tmp_path / "certs", NAMES, caroot)
    old_cert = paths.cert.read_bytes()
    soon = _load(paths.cert).not_valid_after_utc - 10 * DAY

    changed, reasons = certs.ensure(paths, NAMES, caroot=caroot, now=soon)

    assert (changed, reasons) == (True, ["cert.pem expires in 10 days (less than 30)"])
    assert paths.cert.read_bytes() != old_cert
    [backup] = _backups(paths.cert.parent)
    assert (paths.cert.parent / backup / "cert.pem").read_bytes() == old_cert


@pytest.mark.usefixtures("mkcert")
def test_a_damaged_cert_is_replaced_and_kept(tmp_path: Path, caroot: Path) -> None:
    paths = _make(tmp_path / "certs", NAMES, caroot)
    broken = paths.cert.read_bytes()[:100]
    _overwrite(paths.cert, broken)

    changed, reasons = certs.ensure(paths, NAMES, caroot=caroot)

    assert (changed, reasons) == (True, ["cert.pem is not a PEM certificate"])
    assert certs.problems(paths, NAMES) == []
    [backup] = _backups(paths.cert.parent)
    assert (paths.cert.parent / backup / "cert.pem").read_bytes() == broken


@pytest.mark.usefixtures("mkcert")
def test_regenerating_keeps_only_the_newest_backups(tmp_path: Path, caroot: Path) -> None:
    directory = tmp_path / "certs"
    paths = _make(directory, NAMES[1:], caroot)
    old = _old_backups(directory, 4)
    (directory / "backup-notes").mkdir()  # not a name ensure() makes: not its to delete

    changed, _ = certs.ensure(paths, NAMES, caroot=caroot)

    assert changed
    backups = _backups(directory)
    assert "backup-notes" in backups
    ours = [b for b in backups if b != "backup-notes"]
    assert len(ours) == certs.KEEP_BACKUPS == 3
    assert ours[:2] == old[-2:]  # the two newest of the old ones, then the one just made
    assert ours[2] > old[-1] and (directory / ours[2] / "key.pem").is_file()
    assert _no_temp_left(directory)


def test_a_usable_pair_still_prunes_old_backups(pair: CertPaths) -> None:
    directory = pair.cert.parent
    old = _old_backups(directory, 5)
    before = _snapshot(pair)

    assert certs.ensure(pair, NAMES, now=NOW) == (False, [])  # no mkcert needed: nothing to issue

    assert _backups(directory) == old[-certs.KEEP_BACKUPS:]
    assert _snapshot(pair) == before
    assert _no_temp_left(directory)


def test_pruning_waits_for_the_lock(pair: CertPaths) -> None:
    directory = pair.cert.parent
    old = _old_backups(directory, 5)
    done = threading.Event()

    def run() -> None:
        certs.ensure(pair, NAMES, now=NOW)
        done.set()

    # Another "run" holds the lock (flock is per open file, so two threads contend for it).
    with fsutil.file_lock(directory / ".certs.lock"):
        worker = threading.Thread(target=run)
        worker.start()
        time.sleep(0.5)
        assert not done.is_set() and _backups(directory) == old  # nothing deleted without the lock
    worker.join(timeout=30)

    assert done.is_set() and _backups(directory) == old[-certs.KEEP_BACKUPS:]


def test_missing_mkcert_raises_with_install_commands(
    tmp_path: Path, caroot: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    paths = _paths(tmp_path / "certs")

    with pytest.raises(ToolkitError) as err:
        certs.ensure(paths, NAMES, caroot=caroot)

    assert err.value.message == "mkcert is not installed"
    fix = err.value.fix or ""
    assert "apt-get" in fix and "brew" in fix and "WSL" in fix
    assert not paths.cert.parent.exists()  # nothing was touched


@pytest.mark.usefixtures("mkcert")
def test_mkcert_failure_reports_its_error_and_keeps_the_old_pair(tmp_path: Path, caroot: Path) -> None:
    paths = _make(tmp_path / "certs", NAMES[1:], caroot)
    before = _snapshot(paths)
    not_a_dir = tmp_path / "caroot-is-a-file"
    not_a_dir.write_text("")

    with pytest.raises(ToolkitError) as err:
        certs.ensure(paths, NAMES, caroot=not_a_dir)

    assert "failed to create the CAROOT" in err.value.message  # mkcert's own stderr
    assert err.value.fix
    assert _snapshot(paths) == before
    assert _backups(paths.cert.parent) == []
    assert _no_temp_left(paths.cert.parent)


@pytest.mark.usefixtures("mkcert")
def test_concurrent_runs_regenerate_once(tmp_path: Path, caroot: Path) -> None:
    paths = _paths(tmp_path / "certs")
    results: list[tuple[bool, list[str]]] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(certs.ensure(paths, NAMES, caroot=caroot))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert errors == []
    assert sorted(changed for changed, _ in results) == [False, True]
    assert certs.problems(paths, NAMES) == []

"""Tests for readiness.certs against the real mkcert and the real ssl module.

No mocks: a wrong check here would let a probe fail later against a bad certificate, or
churn a good one on every bootstrap, so every test drives mkcert with a temporary CAROOT
and asserts on files, modes and the reasons given.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import shutil
import ssl
import stat
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from readiness import certs
from readiness.certs import CertPaths
from readiness.errors import ToolkitError

pytestmark = pytest.mark.skipif(shutil.which("mkcert") is None, reason="mkcert is not installed")

HOSTS = ["grafana.localhost", "prometheus.localhost", "traefik.localhost"]
NAMES = certs.required_names(HOSTS)


@pytest.fixture(scope="session")
def caroot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One CA for the session (mkcert creates it on first use): CA creation costs ~1 s."""
    return tmp_path_factory.mktemp("caroot") / "ca"


@pytest.fixture(scope="session")
def other_caroot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("other-caroot") / "ca"


def _paths(directory: Path) -> CertPaths:
    return CertPaths(cert=directory / "cert.pem", key=directory / "key.pem")


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


def _decode(path: Path) -> dict[str, Any]:
    return ssl._ssl._test_decode_cert(str(path))  # type: ignore[attr-defined]


def _san(path: Path) -> set[str]:
    """SAN entries as plain names, IPs normalised (ssl prints ::1 as 0:0:0:0:0:0:0:1)."""
    names = set()
    for kind, value in _decode(path)["subjectAltName"]:
        names.add(ipaddress.ip_address(value).compressed if kind == "IP Address" else value)
    return names


def _not_after(path: Path) -> datetime:
    return datetime.fromtimestamp(ssl.cert_time_to_seconds(_decode(path)["notAfter"]), timezone.utc)


def _overwrite(path: Path, data: bytes) -> None:
    path.unlink()  # the file is read-only (0400/0444); the directory is ours
    path.write_bytes(data)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _backups(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.name.startswith("backup-"))


def _no_temp_left(directory: Path) -> bool:
    return not any(p.name.startswith(".mkcert-") for p in directory.iterdir())


def test_required_names_sorted_unique_with_loopback_names() -> None:
    got = certs.required_names(["b.localhost", "A.localhost", "b.localhost", "localhost", " ::1 ", ""])
    assert got == ["a.localhost", "b.localhost", "localhost", "127.0.0.1", "::1"]
    assert certs.required_names(["0:0:0:0:0:0:0:1", "127.0.0.1"]) == ["localhost", "127.0.0.1", "::1"]


def test_required_names_refuses_a_wildcard() -> None:
    with pytest.raises(ToolkitError) as err:
        certs.required_names(["*.localhost"])
    assert "explicitly" in (err.value.fix or "")


def test_problems_lists_every_missing_file(tmp_path: Path) -> None:
    assert certs.problems(_paths(tmp_path / "certs"), NAMES) == [
        "cert.pem is missing",
        "key.pem is missing",
        "rootCA.pem is missing",
    ]


def test_fresh_generate_creates_the_three_files(tmp_path: Path, caroot: Path) -> None:
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
    assert certs.problems(paths, NAMES) == []
    assert sorted(p.name for p in directory.iterdir() if not p.name.startswith(".certs.lock")) == [
        "cert.pem",
        "key.pem",
        "rootCA.pem",
    ]


def test_second_ensure_changes_no_byte(tmp_path: Path, caroot: Path) -> None:
    paths = _make(tmp_path / "certs", NAMES, caroot)
    before = _snapshot(paths)
    listing = sorted(os.listdir(paths.cert.parent))

    assert certs.ensure(paths, NAMES, caroot=caroot) == (False, [])

    assert _snapshot(paths) == before
    assert sorted(os.listdir(paths.cert.parent)) == listing


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
    assert _mode(backup) == 0o700
    assert {p.name: p.read_bytes() for p in backup.iterdir()} == old  # rootCA.pem unchanged: not kept
    assert paths.cert.read_bytes() != old["cert.pem"]
    assert _no_temp_left(paths.cert.parent)


def test_loopback_ipv6_must_be_covered(tmp_path: Path, caroot: Path) -> None:
    paths = _make(tmp_path / "certs", ["localhost", "127.0.0.1"], caroot)
    assert certs.problems(paths, certs.required_names([])) == ["cert.pem does not cover ::1"]


def test_key_of_another_pair_does_not_match(tmp_path: Path, caroot: Path) -> None:
    paths = _make(tmp_path / "a", NAMES, caroot)
    other = _make(tmp_path / "b", NAMES, caroot)
    _overwrite(paths.key, other.key.read_bytes())

    reasons = certs.problems(paths, NAMES)

    assert reasons == ["key.pem does not match cert.pem"]
    key_lines = [line for line in other.key.read_text().splitlines() if len(line) > 16]
    assert key_lines and not any(line in reason for line in key_lines for reason in reasons)
    assert certs.ensure(paths, NAMES, caroot=caroot)[0] is True
    assert certs.problems(paths, NAMES) == []


def test_leaf_from_another_ca_does_not_chain(tmp_path: Path, caroot: Path, other_caroot: Path) -> None:
    paths = _make(tmp_path / "a", NAMES, caroot)
    foreign = _make(tmp_path / "b", [n for n in NAMES if n != "grafana.localhost"], other_caroot)
    _overwrite(paths.cert, foreign.cert.read_bytes())
    _overwrite(paths.key, foreign.key.read_bytes())

    # The chain error must not hide which names the foreign leaf lacks.
    assert certs.problems(paths, NAMES) == [
        "cert.pem does not chain to rootCA.pem",
        "cert.pem does not cover grafana.localhost",
    ]
    changed, _ = certs.ensure(paths, NAMES, caroot=caroot)
    assert changed and certs.problems(paths, NAMES) == []


def test_expiry_rule_uses_not_after_and_now(tmp_path: Path, caroot: Path) -> None:
    paths = _make(tmp_path / "certs", NAMES, caroot)
    not_after = _not_after(paths.cert)

    assert certs.problems(paths, NAMES, now=not_after - timedelta(days=10)) == [
        "cert.pem expires in 10 days (less than 30)"
    ]
    assert certs.problems(paths, NAMES, now=not_after - timedelta(days=10), min_days=5) == []
    assert certs.problems(paths, NAMES, now=not_after - timedelta(days=31)) == []
    expired = certs.problems(paths, NAMES, now=not_after + timedelta(hours=1))
    assert len(expired) == 1 and expired[0].startswith("cert.pem expired on ")
    early = certs.problems(paths, NAMES, now=datetime(2000, 1, 1, tzinfo=timezone.utc))
    assert any(r.startswith("cert.pem is not valid before ") for r in early)


def test_ensure_renews_a_cert_close_to_expiry(tmp_path: Path, caroot: Path) -> None:
    paths = _make(tmp_path / "certs", NAMES, caroot)
    old_cert = paths.cert.read_bytes()
    soon = _not_after(paths.cert) - timedelta(days=10)

    changed, reasons = certs.ensure(paths, NAMES, caroot=caroot, now=soon)

    assert (changed, reasons) == (True, ["cert.pem expires in 10 days (less than 30)"])
    assert paths.cert.read_bytes() != old_cert
    [backup] = _backups(paths.cert.parent)
    assert (backup / "cert.pem").read_bytes() == old_cert


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda pem: pem[: len(pem) // 2], id="truncated"),
        pytest.param(lambda pem: b"this is not a certificate\n", id="garbage"),
        pytest.param(lambda pem: b"", id="empty"),
    ],
)
def test_damaged_cert_is_a_reason_not_an_exception(tmp_path: Path, caroot: Path, damage: Any) -> None:
    paths = _make(tmp_path / "certs", NAMES, caroot)
    broken = damage(paths.cert.read_bytes())
    _overwrite(paths.cert, broken)

    assert certs.problems(paths, NAMES) == ["cert.pem is not a PEM certificate"]
    changed, _ = certs.ensure(paths, NAMES, caroot=caroot)
    assert changed and certs.problems(paths, NAMES) == []
    [backup] = _backups(paths.cert.parent)
    assert (backup / "cert.pem").read_bytes() == broken


def test_garbage_key_is_a_reason(tmp_path: Path, caroot: Path) -> None:
    paths = _make(tmp_path / "certs", NAMES, caroot)
    _overwrite(paths.key, b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    assert certs.problems(paths, NAMES) == ["key.pem is not a PEM private key"]


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

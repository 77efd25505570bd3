"""The local TLS certificate for the stack's ``*.localhost`` hostnames.

Traefik serves one certificate, made by mkcert, for every routed hostname. Health probes and
browsers then verify it against mkcert's ``rootCA.pem``, so a certificate that lacks a name,
does not match its key, was signed by another CA or is about to expire breaks them in a way
that is tedious to diagnose from the outside. This module answers "is the pair on disk
usable for these names?" (:func:`problems`, no subprocess, ~1 ms plus a one-off import) and repairs
it only when the answer is no (:func:`ensure`), so that running it on every bootstrap is
cheap and leaves a good pair untouched.

Why the checks look the way they do:

* Files are read with ``cryptography`` (PEM certificates and keys), and the decisive check
  is its X.509 path validator, ``cryptography.x509.verification``: a server verifier that
  trusts only rootCA.pem, asked once per hostname -- what a probe does, with a maintained
  RFC 5280 chain builder and hostname matcher instead of a re-implementation of either.
  Every hostname is listed explicitly (no ``*.localhost`` wildcard: see
  :func:`required_names`). The verifier API appeared in cryptography 42.0, hence the
  minimum in pyproject.toml.
* mkcert's certificates pass the verifier's default (strict RFC 5280) policy as they are,
  so no criterion is relaxed: its leaf carries the SANs, a serverAuth extended key usage and
  an Authority Key Identifier, its CA a critical basicConstraints, keyCertSign and a Subject
  Key Identifier (checked with mkcert 1.4.4 and cryptography 42.0.0, 43.0.0, 44.0.0 and
  50.0.2; ``tests/test_certs.py`` issues a real mkcert pair and runs this check on it).
* Chain and names are told apart by asking twice: once with rootCA.pem as the trust anchor,
  once with the leaf itself as the anchor (the chain is then trivially valid, so only the
  leaf and the name are judged). A chain error therefore never hides which names are missing,
  and no error message has to be parsed.
* The clock is injectable (``now``), so the 30-day rule is testable. Validity dates of the
  leaf and the CA are read and judged here, so that all expiry messages come from one place;
  the verifier is run at ``now`` too, moved to the nearest moment where both are valid when
  ``now`` is outside their validity, so that a date problem is reported once, as a date
  problem, and not also as a broken chain.
* The key matches the certificate when their public keys are equal, which is what a TLS
  server checks when it loads the pair.
* ``cryptography`` is imported when a check runs, not with this module: every task imports
  the toolkit, and that import alone costs 50-90 ms here.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ToolkitError
from ..stack.model import Model
from ..system import fsutil, runner
from . import secrets as secretslib

if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
    from cryptography.x509.verification import PolicyBuilder

#: Names every certificate carries besides the routed hostnames, so that the stack can also
#: be reached directly on the loopback interface (IPv4 and IPv6).
ALWAYS_NAMES: tuple[str, ...] = ("localhost", "127.0.0.1", "::1")

DIR_MODE = 0o700  # other host users must not list or read the key
KEY_MODE = 0o400
CERT_MODE = 0o444  # public material; readable by the uid of the container that serves it
CA_FILE = "rootCA.pem"
#: How many ``backup-*`` directories :func:`ensure` keeps. Each holds an old private key, so
#: they are not kept forever; a few are enough to roll back a bad renewal.
KEEP_BACKUPS = 3

_DAY = timedelta(days=1)
_INVALID_NAME = "not a valid hostname"


@dataclass(frozen=True)
class CertPaths:
    """Where the certificate and its key live; rootCA.pem is kept beside cert.pem.

    Keeping the CA next to the certificate lets probes and users verify the stack with one
    ``--cacert`` path, whatever CAROOT the machine's mkcert uses. ``cert`` and ``key`` are
    expected in one directory (the backups and the temp dir are made there).
    """

    cert: Path
    key: Path

    @property
    def ca(self) -> Path:
        """rootCA.pem beside cert.pem."""
        return self.cert.with_name(CA_FILE)


def cert_paths(model: Model) -> CertPaths | None:
    """The pair the stack mounts: the file secrets whose ``x-readiness.certificate`` is ``cert``
    and ``key`` (None when the stack declares no such pair)."""
    by_role = {s.certificate: s.path for s in secretslib.specs(model) if s.certificate}
    if "cert" not in by_role or "key" not in by_role:
        return None
    return CertPaths(cert=by_role["cert"], key=by_role["key"])


def root_ca(model: Model) -> Path:
    """``rootCA.pem`` the stack's certificate must chain to (what clients should trust)."""
    paths = cert_paths(model)
    return paths.ca if paths else model.project_dir / "secrets" / "certs" / CA_FILE


def required_names(hostnames: Iterable[str]) -> list[str]:
    """The names the certificate must cover: sorted unique hostnames, then the loopback names.

    Names are lower-cased (DNS is case-insensitive, mkcert keeps the case it is given) and IP
    addresses written in their compressed form, so the list, and hence the decision to
    regenerate, does not depend on how a hostname was spelled. A wildcard is refused: it
    does not verify for ``*.localhost`` in Python and browsers reject second-level
    wildcards, so each routed hostname has to be listed.
    """
    found: set[str] = set()
    for raw in hostnames:
        name = raw.strip().rstrip(".").lower()
        if not name:
            continue
        if "*" in name:
            raise ToolkitError(
                f"wildcard hostname {name!r} cannot be verified",
                fix="list every routed hostname explicitly (a *.localhost wildcard does not verify "
                "in Python and browsers reject second-level wildcards)",
            )
        with contextlib.suppress(ValueError):
            name = ipaddress.ip_address(name).compressed
        found.add(name)
    return sorted(found - set(ALWAYS_NAMES)) + list(ALWAYS_NAMES)


def problems(
    paths: CertPaths,
    names: Sequence[str],
    *,
    now: datetime | None = None,
    min_days: int = 30,
) -> list[str]:
    """Why the pair on disk is not usable for ``names``; an empty list means it is.

    Pure check, no subprocess, no writes: it runs on every bootstrap and must be cheap and
    safe. Each reason is one short sentence naming a file, never key material, in a stable
    order: missing/unreadable/malformed files (cert, key, CA), key match, validity dates,
    chain, then one line per uncovered name in the order given. Once a file is unusable the
    checks that depend on it are skipped (without rootCA.pem the names are still checked,
    the chain is not), so the list is complete only for usable files. ``now`` (default: the
    current time; a naive value is taken as UTC) and ``min_days`` decide how close to expiry
    is too close; the chain and names are verified at that time too.
    """
    moment = _moment(now)
    cert_name, ca_name = paths.cert.name, paths.ca.name
    reasons: list[str] = []

    chain = _load_certs(paths.cert, reasons)
    key = _load_key(paths.key, reasons)
    anchors = _load_certs(paths.ca, reasons)
    if chain is None:
        return reasons

    leaf = chain[0]
    if key is not None and not _same_key(leaf, key):
        reasons.append(f"{paths.key.name} does not match {cert_name}")
    reasons.extend(_validity(cert_name, leaf, moment, min_days))
    dated = [leaf]
    if anchors is not None:
        reasons.extend(_validity(ca_name, anchors[0], moment, None))
        dated.append(anchors[0])
    reasons.extend(_trust(cert_name, ca_name, chain, anchors, names, _verification_time(moment, dated)))
    return reasons


def ensure(
    paths: CertPaths,
    names: Sequence[str],
    *,
    caroot: Path | None = None,
    now: datetime | None = None,
    min_days: int = 30,
) -> tuple[bool, list[str]]:
    """Make the pair usable for ``names``; returns (regenerated, reasons it was needed).

    A usable pair is left byte-for-byte alone (``(False, [])``): bootstrap calls this every
    time and must not churn files that Traefik has loaded. Otherwise mkcert issues a new
    pair from the user's CA (env ``CAROOT``, else ``mkcert -CAROOT``; ``caroot`` overrides
    both), creating the CA if it is missing. The new files are made in a temp dir next to
    the target and renamed into place, and the previous files are first kept in
    ``backup-<UTC timestamp>/``, so a crash leaves the old set, the new one, or no cert.pem, and
    nothing is ever lost. Only the newest :data:`KEEP_BACKUPS` backups are kept (each holds a
    private key); older ones are deleted, also when the pair is usable. A lock serialises
    concurrent runs and every change to the directory; the check is repeated under it so
    that the second run finds the first one's result and changes nothing.
    """
    reasons = problems(paths, names, now=now, min_days=min_days)
    if not reasons:
        directory = paths.cert.parent
        # Temp dirs of a run killed after installing its pair, or backups beyond the few kept.
        if _stale_dirs(directory) or len(_backups(directory)) > KEEP_BACKUPS:
            with fsutil.file_lock(directory / ".certs.lock"):
                _sweep_stale(directory)
                _prune_backups(directory)
        return False, []
    mkcert = runner.which("mkcert")
    if mkcert is None:
        raise ToolkitError("mkcert is not installed", fix=runner.INSTALL_HINTS["mkcert"], code=127)

    directory = paths.cert.parent
    _private_dir(directory)
    with fsutil.file_lock(directory / ".certs.lock"):
        _sweep_stale(directory)
        reasons = problems(paths, names, now=now, min_days=min_days)
        if not reasons:
            return False, []
        ca_dir = _caroot(mkcert, caroot)
        _issue_and_install(mkcert, ca_dir, paths, names)
        _prune_backups(directory)

    # mkcert exiting 0 is not proof: an expired or foreign CA would still be unusable.
    remaining = problems(paths, names, min_days=0)
    if remaining:
        raise ToolkitError(
            "the certificate mkcert just issued is still not usable: " + "; ".join(remaining),
            where=str(paths.cert),
            fix=f"check mkcert's CA in {ca_dir}: if it has expired, move that directory aside and "
            "run again so that mkcert creates a new CA (then `mkcert -install` to trust it)",
        )
    return True, reasons


# --- checks ---------------------------------------------------------------------------------


def _moment(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(timezone.utc)
    if now.tzinfo is None:
        return now.replace(tzinfo=timezone.utc)
    return now.astimezone(timezone.utc)


def _read(path: Path, reasons: list[str]) -> bytes | None:
    """The bytes of ``path`` if it is a readable regular file; else None with the reason."""
    try:
        if not stat.S_ISREG(path.stat().st_mode):  # a FIFO would block the read below
            reasons.append(f"{path.name} is not a regular file")
            return None
        return path.read_bytes()
    except FileNotFoundError:
        reasons.append(f"{path.name} is missing")
    except OSError as exc:
        reasons.append(f"{path.name} is not readable ({exc.strerror or exc})")
    return None


def _load_certs(path: Path, reasons: list[str]) -> list[x509.Certificate] | None:
    """Every certificate in the PEM file ``path`` (at least one), or None with the reason."""
    from cryptography import x509

    data = _read(path, reasons)
    if data is None:
        return None
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError:  # no PEM block, a truncated one, or DER that does not parse
        reasons.append(f"{path.name} is not a PEM certificate")
        return None


def _load_key(path: Path, reasons: list[str]) -> PrivateKeyTypes | None:
    """The private key in ``path``, or None with the reason (never any key material)."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    data = _read(path, reasons)
    if data is None:
        return None
    try:
        # Only the public half is used here (compared with the certificate's, as a TLS server
        # does when it loads the pair). Skipping the RSA consistency check (primality tests)
        # saves ~50 ms per run for mkcert's RSA-2048 keys; nothing is signed with this object.
        return load_pem_private_key(data, password=None, unsafe_skip_rsa_key_validation=True)
    except TypeError:  # cryptography's way of saying "encrypted, and no password given"
        reasons.append(f"{path.name} is encrypted (Traefik needs an unencrypted key)")
    except UnsupportedAlgorithm:
        reasons.append(f"{path.name} holds a private key of an unsupported type")
    except ValueError:
        reasons.append(f"{path.name} is not a PEM private key")
    return None


def _same_key(cert: x509.Certificate, key: PrivateKeyTypes) -> bool:
    """Whether ``key`` is the private half of ``cert``'s public key."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    spki = (Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    try:
        return cert.public_key().public_bytes(*spki) == key.public_key().public_bytes(*spki)
    except (ValueError, UnsupportedAlgorithm):
        return False


def _validity(label: str, cert: x509.Certificate, moment: datetime, min_days: int | None) -> list[str]:
    """Date problems of one certificate; ``min_days`` None skips the early-renewal rule."""
    not_before, not_after = cert.not_valid_before_utc, cert.not_valid_after_utc
    if moment < not_before:
        return [f"{label} is not valid before {_date(not_before)}"]
    if moment > not_after:  # RFC 5280: notAfter is the last moment of validity
        return [f"{label} expired on {_date(not_after)}"]
    days = (not_after - moment) // _DAY
    if min_days is not None and days < min_days:
        unit = "day" if days == 1 else "days"
        return [f"{label} expires in {days} {unit} (less than {min_days})"]
    return []


def _date(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def _verification_time(moment: datetime, certs: Sequence[x509.Certificate]) -> datetime:
    """``moment``, or the nearest moment when every one of ``certs`` is valid (if there is one)."""
    start = max(c.not_valid_before_utc for c in certs)
    end = min(c.not_valid_after_utc for c in certs)
    if start > end:  # the windows do not overlap: judge at least the leaf (certs[0]) in its own
        start, end = certs[0].not_valid_before_utc, certs[0].not_valid_after_utc
    return min(max(moment, start), end)


def _subject(name: str) -> x509.GeneralName:
    from cryptography import x509

    with contextlib.suppress(ValueError):
        return x509.IPAddress(ipaddress.ip_address(name))
    return x509.DNSName(name)


def _san_names(cert: x509.Certificate) -> list[str]:
    """The DNS names and IP addresses in ``cert``'s subjectAltName, as strings."""
    from cryptography import x509

    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (x509.ExtensionNotFound, ValueError):  # ValueError: a malformed extension
        return []
    return [*san.get_values_for_type(x509.DNSName),
            *(str(ip) for ip in san.get_values_for_type(x509.IPAddress))]


def _trust(
    cert_name: str,
    ca_name: str,
    chain: list[x509.Certificate],
    anchors: list[x509.Certificate] | None,
    names: Sequence[str],
    at: datetime,
) -> list[str]:
    """Chain and hostname problems of ``chain`` (leaf first), as the verifier judges them at ``at``."""
    from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

    leaf, intermediates = chain[0], chain[1:]

    def error(builder: PolicyBuilder, name: str) -> str | None:
        """Why the leaf fails for ``name`` under ``builder``'s trust store; None if it passes."""
        try:
            verifier = builder.build_server_verifier(_subject(name))
        except ValueError:  # not a DNS name the verifier accepts (a space, a wildcard, ...)
            return _INVALID_NAME
        try:
            verifier.verify(leaf, intermediates)
        except VerificationError as exc:
            return str(exc)
        return None

    # The leaf as its own trust anchor: the chain is trivially valid, only the leaf is judged.
    alone = PolicyBuilder().store(Store([leaf])).time(at)
    served: dict[str, str | None] = {}

    def alone_error(name: str) -> str | None:
        if name not in served:
            served[name] = error(alone, name)
        return served[name]

    wanted = list(dict.fromkeys(names))
    listed = _san_names(leaf)
    # A name the leaf serves on its own, to ask the CA about the chain with.
    probe = next((n for n in (*wanted, *listed) if alone_error(n) is None), None)
    if probe is None:
        usable = [n for n in listed if alone_error(n) != _INVALID_NAME]
        if usable:  # it fails even for a name it lists: not a server certificate at all
            return [f"{cert_name} is not accepted as a TLS server certificate ({alone_error(usable[0])})"]
        # No usable name in its subjectAltName: it covers none of the names (listed below).

    reasons: list[str] = []
    trusted = PolicyBuilder().store(Store(anchors)).time(at) if anchors else None
    chain_ok = trusted is not None and probe is not None and error(trusted, probe) is None
    if trusted is not None and probe is not None and not chain_ok:
        reasons.append(f"{cert_name} does not chain to {ca_name}")
    for name in wanted:
        why = error(trusted, name) if trusted is not None and chain_ok else alone_error(name)
        if why == _INVALID_NAME:
            reasons.append(f"{name!r} is not a valid hostname")
        elif why is not None:
            reasons.append(f"{cert_name} does not cover {name}")
    return reasons


# --- regeneration ---------------------------------------------------------------------------


def _private_dir(directory: Path) -> None:
    """Create ``directory`` if needed and close it to other users (the key lives there)."""
    fsutil.ensure_dir(directory, DIR_MODE)
    try:
        if stat.S_IMODE(directory.stat().st_mode) != DIR_MODE:
            os.chmod(directory, DIR_MODE)
    except OSError as exc:
        raise ToolkitError(
            f"cannot set mode 0700 on {directory}: {exc.strerror}",
            where=str(directory),
            fix=f"`sudo chown -R $(id -u):$(id -g) {directory}`, then run again",
        ) from None


def _caroot(mkcert: str, caroot: Path | None) -> Path:
    """The CA directory mkcert should use: argument, then env CAROOT, then mkcert's default."""
    if caroot is not None:
        return Path(os.path.abspath(caroot))
    env_root = os.environ.get("CAROOT", "").strip()
    if env_root:
        return Path(os.path.abspath(env_root))
    result = runner.run([mkcert, "-CAROOT"], timeout=30)
    location = result.stdout.strip()
    if not result.ok or not location:
        raise ToolkitError(
            "`mkcert -CAROOT` did not name a CA directory",
            fix="set CAROOT to a writable directory (for example `export CAROOT=~/.local/share/mkcert`) "
            "and run again",
        )
    return Path(location)


_TMP_PREFIX = ".mkcert-"


def _stale_dirs(directory: Path) -> list[Path]:
    try:
        return [p for p in directory.iterdir() if p.name.startswith(_TMP_PREFIX) and p.is_dir()]
    except OSError:
        return []


def _sweep_stale(directory: Path) -> None:
    """Remove the temp dirs of runs that were killed (they may hold a private key).

    Called only with the lock held: every live run makes its temp dir under the same lock,
    so any temp dir seen here belongs to a run that died.
    """
    for stale in _stale_dirs(directory):
        shutil.rmtree(stale, ignore_errors=True)


def _issue_and_install(mkcert: str, ca_dir: Path, paths: CertPaths, names: Sequence[str]) -> None:
    """Have mkcert write a new pair into a private temp dir, then swap it in losslessly."""
    directory = paths.cert.parent
    try:
        tmp = Path(tempfile.mkdtemp(prefix=_TMP_PREFIX, dir=directory))
    except OSError as exc:
        raise _install_error(directory, exc) from None
    try:
        new_cert, new_key = tmp / "cert.pem", tmp / "key.pem"
        result = runner.run(
            [mkcert, "-cert-file", str(new_cert), "-key-file", str(new_key), "--", *names],
            env={"CAROOT": str(ca_dir)},
        )
        if not result.ok or not new_cert.is_file() or not new_key.is_file():
            error = _mkcert_error(result.stderr)
            if str(tmp) in error:  # mkcert could not write beside the target (full disk, ...)
                raise ToolkitError(f"cannot write the new certificate in {directory}: {error}",
                                   where=str(directory), fix=_install_error(directory, OSError()).fix)
            raise ToolkitError(
                f"mkcert could not issue the certificate: {_mkcert_error(result.stderr)}",
                where=f"CAROOT={ca_dir}",
                fix=f"make sure {ca_dir} is a writable directory holding mkcert's CA (or absent, "
                "so that mkcert creates it) and that every hostname is valid, then run again",
            )
        try:
            ca_bytes = (ca_dir / CA_FILE).read_bytes()
        except OSError as exc:
            raise ToolkitError(
                f"mkcert's CA certificate {ca_dir / CA_FILE} cannot be read: {exc.strerror}",
                where=str(ca_dir),
                fix=f"make {ca_dir} readable for the current user, then run again",
            ) from None
        try:
            _install(paths, new_cert, new_key, ca_bytes)
        except OSError as exc:
            raise _install_error(directory, exc) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _install(paths: CertPaths, new_cert: Path, new_key: Path, ca_bytes: bytes) -> None:
    """Back up what will be replaced, then rename the new files over the old ones."""
    for path, mode in ((new_key, KEY_MODE), (new_cert, CERT_MODE)):
        os.chmod(path, mode)
        fsutil.fsync(path)  # mkcert does not: a crash after the rename must not leave an empty file

    replaced = [paths.key, paths.cert]
    ca_changed = True
    with contextlib.suppress(OSError):
        ca_changed = paths.ca.read_bytes() != ca_bytes
    if ca_changed:
        replaced.append(paths.ca)
    _backup([p for p in replaced if os.path.lexists(p)], paths.cert.parent)

    # cert.pem is the commit mark: it goes first (it is in the backup) and comes back last, so
    # a crash between two of these steps leaves either the old set or no cert.pem at all, never
    # a certificate beside a key or CA it does not match (the next run then issues a new pair).
    with contextlib.suppress(FileNotFoundError):
        os.unlink(paths.cert)
    os.replace(new_key, paths.key)
    if ca_changed:
        fsutil.atomic_write(paths.ca, ca_bytes, CERT_MODE)
    elif stat.S_IMODE(paths.ca.stat().st_mode) != CERT_MODE:
        os.chmod(paths.ca, CERT_MODE)
    os.replace(new_cert, paths.cert)
    fsutil.fsync(paths.cert.parent)
    if paths.key.parent != paths.cert.parent:
        fsutil.fsync(paths.key.parent)


def _backup(files: list[Path], directory: Path) -> Path | None:
    """Keep ``files`` in a new ``backup-<UTC>`` dir, leaving them in place.

    A hard link costs no copy and keeps the old file's inode and mode; the key and CA stay
    where they are until the new file is renamed over them (cert.pem is removed first, see
    :func:`_install`).
    """
    if not files:
        return None
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    backup = directory / f"backup-{stamp}"
    suffix = 1
    while True:
        try:
            backup.mkdir(mode=DIR_MODE)
            break
        except FileExistsError:  # two regenerations within one second
            suffix += 1
            backup = directory / f"backup-{stamp}-{suffix}"
    for path in files:
        target = backup / path.name
        try:
            os.link(path, target, follow_symlinks=True)
        except OSError:  # filesystems without hard links (some bind mounts)
            shutil.copy2(path, target)
            fsutil.fsync(target)
    fsutil.fsync(backup)
    fsutil.fsync(directory)
    return backup


_BACKUP_NAME = re.compile(r"backup-(\d{8}T\d{6}Z)(?:-(\d+))?")


def _backups(directory: Path) -> list[Path]:
    """The ``backup-*`` directories :func:`_backup` made, oldest first.

    Only names of its own pattern count (a ``backup-notes`` made by hand is not ours to
    delete), ordered by their timestamp and then their numeric suffix.
    """
    found: list[tuple[str, int, Path]] = []
    with contextlib.suppress(OSError):
        for path in directory.iterdir():
            match = _BACKUP_NAME.fullmatch(path.name)
            if match and path.is_dir() and not path.is_symlink():
                found.append((match[1], int(match[2] or 1), path))
    return [path for *_, path in sorted(found)]


def _prune_backups(directory: Path) -> None:
    """Delete all but the newest :data:`KEEP_BACKUPS` backups (each holds an old private key).

    Called only with the lock held. Each backup is first renamed to a temp-dir name, which
    is atomic: a run killed while deleting leaves a whole backup or a temp dir that the next
    run sweeps (:func:`_sweep_stale`), never a backup with half its files.
    """
    for old in _backups(directory)[:-KEEP_BACKUPS]:
        doomed = directory / f"{_TMP_PREFIX}pruned-{old.name}"
        try:
            os.rename(old, doomed)
        except OSError:
            continue  # left for the next run; nothing depends on it being gone now
        shutil.rmtree(doomed, ignore_errors=True)
    fsutil.fsync(directory)


def _mkcert_error(stderr: str) -> str:
    """mkcert's ERROR lines (its notes about the trust store are noise here)."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR")]
    return " ".join(errors or lines[-3:]) or "no error output"


def _install_error(directory: Path, exc: OSError) -> ToolkitError:
    return ToolkitError(
        f"cannot install the certificate in {directory}: {exc.strerror or exc}",
        where=str(directory),
        fix=f"make {directory} writable for the current user and free disk space if it is full "
        f"(`sudo chown -R $(id -u):$(id -g) {directory}`), then run again",
    )

"""The local TLS certificate for the stack's ``*.localhost`` hostnames.

Traefik serves one certificate, made by mkcert, for every routed hostname. Health probes and
browsers then verify it against mkcert's ``rootCA.pem``, so a certificate that lacks a name,
does not match its key, was signed by another CA or is about to expire breaks them in a way
that is tedious to diagnose from the outside. This module answers "is the pair on disk
usable for these names?" (:func:`problems`, no subprocess, a few tens of milliseconds) and
repairs it only when the answer is no (:func:`ensure`), so that running it on every
bootstrap is cheap and leaves a good pair untouched.

Why the checks look the way they do:

* Only the stdlib ``ssl`` module is used (no ``cryptography``): importing the toolkit must
  stay fast. The decisive check is therefore a real TLS handshake in memory
  (``ssl.MemoryBIO``) between a server loaded with cert.pem/key.pem and a client that trusts
  only rootCA.pem and checks the hostname -- exactly what a probe does, with OpenSSL's own
  chain building and hostname matching instead of a re-implementation of either. That is
  also why every hostname is listed explicitly: a ``*.localhost`` wildcard does not verify
  in Python, and OpenSSL, not this module, is the judge.
* Validity dates are read from the certificate and compared with an injectable ``now``
  (the handshake is told to ignore time), so the 30-day rule is testable and all expiry
  messages come from one place.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shutil
import ssl
import stat
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from . import fsutil, runner
from .errors import ToolkitError

#: Names every certificate carries besides the routed hostnames, so that the stack can also
#: be reached directly on the loopback interface (IPv4 and IPv6).
ALWAYS_NAMES: tuple[str, ...] = ("localhost", "127.0.0.1", "::1")

DIR_MODE = 0o700  # other host users must not list or read the key
KEY_MODE = 0o400
CERT_MODE = 0o444  # public material; readable by the uid of the container that serves it
CA_FILE = "rootCA.pem"

# OpenSSL's X509_V_FLAG_NO_CHECK_TIME (stable since 1.1.0, same value in LibreSSL). Python
# does not name it, but ``verify_flags`` passes any int through.
_NO_CHECK_TIME = 0x200000
# X509_V_ERR_* codes of a name that the certificate does not cover (host, e-mail, IP).
_NAME_MISMATCH = frozenset({62, 63, 64})
# X509_V_ERR_CERT_NOT_YET_VALID / _HAS_EXPIRED: only seen if the flag above is unsupported;
# dates are judged from the certificate against ``now`` instead.
_TIME_CODES = frozenset({9, 10})
_HANDSHAKE_ROUNDS = 8
_DAY = 86400.0


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
    checks that depend on it are skipped, so the list is complete only for usable files.
    ``now`` (default: the current time; a naive value is taken as UTC) and ``min_days``
    decide how close to expiry is too close.
    """
    moment = _timestamp(now)
    cert_name, ca_name = paths.cert.name, paths.ca.name
    reasons: list[str] = []

    cert_info = _decode_cert(paths.cert, reasons)
    key_present = _present(paths.key, reasons)
    ca_info = _decode_cert(paths.ca, reasons)
    if cert_info is None:
        return reasons

    server = _server_context(paths, reasons) if key_present else None
    reasons.extend(_validity(cert_name, cert_info, moment, min_days))
    if ca_info is not None:
        reasons.extend(_validity(ca_name, ca_info, moment, None))
    if server is None:
        return reasons

    chain_ctx = _client_context(cafile=paths.ca) if ca_info is not None else None
    if ca_info is not None and chain_ctx is None:
        reasons.append(f"{ca_name} is not a PEM certificate")
    self_ctx: ssl.SSLContext | None = None  # trusts cert.pem itself: hostname checks only
    chain_broken = False
    uncovered: list[str] = []
    wanted = list(dict.fromkeys(names))
    if chain_ctx is not None and not wanted:
        # Nothing to cover, but the chain still matters; a name mismatch is ignored here.
        chain_broken = _is_chain_error(_verify(server, chain_ctx, ALWAYS_NAMES[0]))
    for name in wanted:
        outcome = None
        if chain_ctx is not None and not chain_broken:
            outcome = _verify(server, chain_ctx, name)
            chain_broken = _is_chain_error(outcome)
        if chain_ctx is None or chain_broken:
            # A chain error hides whether the name is covered: ask again, trusting the leaf.
            if self_ctx is None:
                self_ctx = _client_context(cafile=paths.cert, partial_chain=True)
            outcome = _verify(server, self_ctx, name)
        if outcome is None:
            continue
        code, message = outcome
        if code in _NAME_MISMATCH:
            uncovered.append(f"{cert_name} does not cover {name}")
        elif code < 0:
            uncovered.append(f"{name!r} is not a valid hostname")
        else:
            uncovered.append(f"{cert_name} cannot be verified for {name}: {message}")
    if chain_broken:
        reasons.append(f"{cert_name} does not chain to {ca_name}")
    reasons.extend(uncovered)
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
    nothing is ever lost. A lock serialises concurrent runs; the check is repeated under it
    so that the second run finds the first one's result and changes nothing.
    """
    reasons = problems(paths, names, now=now, min_days=min_days)
    if not reasons:
        if _stale_dirs(paths.cert.parent):  # a run killed after installing its pair
            with fsutil.file_lock(paths.cert.parent / ".certs.lock"):
                _sweep_stale(paths.cert.parent)
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


def _timestamp(now: datetime | None) -> float:
    if now is None:
        return datetime.now(timezone.utc).timestamp()
    if now.tzinfo is None:
        now = now.replace(tzinfo=timezone.utc)
    return now.timestamp()


def _present(path: Path, reasons: list[str]) -> bool:
    """Whether ``path`` is an existing regular file; records why not."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        reasons.append(f"{path.name} is missing")
        return False
    except OSError as exc:
        reasons.append(f"{path.name} is not readable ({exc.strerror})")
        return False
    if not stat.S_ISREG(mode):
        reasons.append(f"{path.name} is not a regular file")
        return False
    return True


def _decode_cert(path: Path, reasons: list[str]) -> dict[str, Any] | None:
    """The first certificate in ``path`` as ``ssl`` decodes it, or None with a reason."""
    if not _present(path, reasons):
        return None
    try:
        # Private but long-standing CPython helper: the only stdlib way to read a PEM file's
        # dates and names without a connection.
        return ssl._ssl._test_decode_cert(str(path))  # type: ignore[attr-defined]
    except (ssl.SSLError, OSError, ValueError):
        if not os.access(path, os.R_OK):
            reasons.append(f"{path.name} is not readable (permission denied)")
        else:
            reasons.append(f"{path.name} is not a PEM certificate")
        return None


def _validity(label: str, info: dict[str, Any], moment: float, min_days: int | None) -> list[str]:
    """Date problems of one certificate; ``min_days`` None skips the early-renewal rule."""
    try:
        not_before = ssl.cert_time_to_seconds(info["notBefore"])
        not_after = ssl.cert_time_to_seconds(info["notAfter"])
    except (KeyError, ValueError):
        return [f"{label} has unreadable validity dates"]
    if moment < not_before:
        return [f"{label} is not valid before {_date(not_before)}"]
    if moment >= not_after:
        return [f"{label} expired on {_date(not_after)}"]
    days = int((not_after - moment) // _DAY)
    if min_days is not None and days < min_days:
        unit = "day" if days == 1 else "days"
        return [f"{label} expires in {days} {unit} (less than {min_days})"]
    return []


def _date(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _server_context(paths: CertPaths, reasons: list[str]) -> ssl.SSLContext | None:
    """A TLS server loaded with the pair, or None with the reason it cannot be loaded."""
    asked_for_passphrase = False

    def no_passphrase() -> bytes:
        # Without a callback OpenSSL would prompt on the terminal for an encrypted key.
        nonlocal asked_for_passphrase
        asked_for_passphrase = True
        return b""

    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.num_tickets = 0  # no session tickets: a third less work per handshake
    try:
        server.load_cert_chain(paths.cert, paths.key, password=no_passphrase)
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            reasons.append(f"{paths.key.name} does not match {paths.cert.name}")
        elif asked_for_passphrase:
            reasons.append(f"{paths.key.name} is encrypted (Traefik needs an unencrypted key)")
        else:
            reasons.append(f"{paths.key.name} is not a PEM private key")
        return None
    except OSError as exc:
        reasons.append(f"{paths.key.name} is not readable ({exc.strerror})")
        return None
    return server


def _client_context(*, cafile: Path, partial_chain: bool = False) -> ssl.SSLContext | None:
    """A verifying client that trusts only ``cafile`` (never the system store)."""
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED + check_hostname
    client.hostname_checks_common_name = False  # browsers ignore the CN; so must we
    with contextlib.suppress(ValueError, OverflowError):
        client.verify_flags |= _NO_CHECK_TIME
    if partial_chain:
        client.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    try:
        client.load_verify_locations(cafile=cafile)
    except (ssl.SSLError, OSError):
        return None
    return client


def _verify(server: ssl.SSLContext, client: ssl.SSLContext | None, name: str) -> tuple[int, str] | None:
    """Handshake in memory as a client connecting to ``name`` would.

    Returns None when verification passes, else (X509 verify code, message); code -1 means
    ``name`` is not a usable hostname at all.
    """
    if client is None:
        return (0, "no usable trust anchor")
    try:
        _handshake(server, client, name)
    except ssl.SSLCertVerificationError as exc:
        if exc.verify_code in _TIME_CODES:
            return None  # dates are judged separately, against ``now``
        return (exc.verify_code, str(exc.verify_message))
    except ssl.SSLError as exc:
        return (0, exc.reason or str(exc))
    except (ValueError, UnicodeError):
        return (-1, "invalid hostname")
    return None


def _is_chain_error(outcome: tuple[int, str] | None) -> bool:
    """Whether a verification outcome is about the chain rather than the name."""
    return outcome is not None and outcome[0] >= 0 and outcome[0] not in _NAME_MISMATCH


def _handshake(server: ssl.SSLContext, client: ssl.SSLContext, name: str) -> None:
    """Drive both ends of a TLS handshake through memory buffers until the client is done."""
    client_in, client_out, server_in, server_out = (ssl.MemoryBIO() for _ in range(4))
    tls_client = client.wrap_bio(client_in, client_out, server_hostname=name)
    tls_server = server.wrap_bio(server_in, server_out, server_side=True)
    for _ in range(_HANDSHAKE_ROUNDS):
        try:
            tls_client.do_handshake()
            return  # the client has verified the server: that is all we need
        except ssl.SSLWantReadError:
            pass
        server_in.write(client_out.read())
        with contextlib.suppress(ssl.SSLWantReadError):
            tls_server.do_handshake()
        client_in.write(server_out.read())
    raise ssl.SSLError("the in-memory TLS handshake did not complete")


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
        _fsync(path)  # mkcert does not: a crash after the rename must not leave an empty file

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
    _fsync(paths.cert.parent)
    if paths.key.parent != paths.cert.parent:
        _fsync(paths.key.parent)


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
            _fsync(target)
    _fsync(backup)
    _fsync(directory)
    return backup


def _fsync(path: Path) -> None:
    flags = os.O_RDONLY | (os.O_DIRECTORY if path.is_dir() else 0)
    with contextlib.suppress(OSError):
        fd = os.open(path, flags)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


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

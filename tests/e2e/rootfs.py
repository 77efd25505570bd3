"""Debian root filesystems for the e2e suite's real-program images: built once, imported anywhere.

The database tier and the cache (etcd, Patroni + PostgreSQL 17, HAProxy, Valkey) run their
real programs in the end-to-end suite. No registry is reachable, so their images start from
Debian root filesystems made with ``mmdebstrap`` (one per program, so that each container
copies only what it runs: the CI engine's ``vfs`` driver copies an image's whole rootfs for
every container). A rootfs is a plain tarball in a cache directory, named by a hash of its
recipe (suite, packages, users, excludes, the hook script); ``docker import`` turns it into an
image of whichever engine the suite talks to, so the tarball can be built by whoever can:

* root (CI runs ``python -m tests.e2e.rootfs build`` as root before the suites, which fills
  ``/var/cache/readiness-e2e/rootfs``, readable by every user);
* a non-root user with ``/etc/subuid`` and ``/etc/subgid`` ranges (``mmdebstrap --mode=unshare``);

and imported by anyone who can talk to the engine (a member of the ``docker`` group, a
rootless engine). A rootfs that is missing and cannot be built is an error in CI (``CI``
truthy) and a reason to skip elsewhere (:class:`Unavailable`).

    python -m tests.e2e.rootfs build [NAME...]   # build the missing tarballs (all by default)
    python -m tests.e2e.rootfs status            # which tarballs exist, where, and why not

Environment: ``READINESS_E2E_ROOTFS_CACHE`` (one directory for lookup and build),
``READINESS_E2E_DEBIAN_MIRROR`` (default ``http://deb.debian.org/debian``).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

#: Bump when the way a tarball is made changes in a way the recipe fields do not show.
RECIPE_VERSION = 1
CACHE_ENV = "READINESS_E2E_ROOTFS_CACHE"
MIRROR_ENV = "READINESS_E2E_DEBIAN_MIRROR"
SHARED_CACHE = Path("/var/cache/readiness-e2e/rootfs")
IMAGE_REPO = "readiness-e2e"

#: Paths left out of every rootfs (documentation and translations: nothing the stack runs).
COMMON_EXCLUDES = ("/usr/share/man/*", "/usr/share/doc/*", "/usr/share/info/*", "/usr/share/locale/*",
                   "/usr/share/lintian/*")


class Unavailable(RuntimeError):
    """A rootfs is missing and this machine cannot build it (the reason says why)."""


@dataclass(frozen=True)
class Recipe:
    """What goes into one rootfs. Every field is part of the cache key."""

    name: str
    suite: str
    packages: tuple[str, ...]
    #: (name, uid, gid, home, shell): the account the upstream image has, with its ids.
    #: Debian's packages create these accounts with whatever ids are free; the hooks reserve
    #: and then enforce the upstream ids.
    users: tuple[tuple[str, int, int, str, str], ...] = ()
    #: dpkg path excludes on top of COMMON_EXCLUDES.
    excludes: tuple[str, ...] = ()
    #: (path, target): a path of the installed system replaced by a symlink (as the upstream
    #: image's build does), e.g. a directory moved to a tmpfs.
    links: tuple[tuple[str, str], ...] = ()
    #: False for a suite whose Release file our mirror serves past its Valid-Until (sid).
    check_valid_until: bool = True
    why: str = ""


RECIPES: dict[str, Recipe] = {r.name: r for r in (
    Recipe("etcd", "trixie", ("etcd-server", "etcd-client"),
           why="etcd 3.5 and etcdctl (the upstream image is distroless etcd 3.6)"),
    Recipe("spilo", "trixie", ("postgresql-17", "patroni", "python3-etcd", "curl", "openssl"),
           users=(("postgres", 101, 103, "/var/lib/postgresql", "/bin/bash"),),
           # PostgreSQL's JIT provider and the LLVM/Z3 libraries it alone loads (~170 MB of a
           # ~330 MB rootfs): PostgreSQL runs without JIT when llvmjit.so is absent.
           excludes=("/usr/lib/x86_64-linux-gnu/libLLVM*", "/usr/lib/x86_64-linux-gnu/libz3*",
                     "/usr/lib/postgresql/*/lib/llvmjit*", "/usr/lib/postgresql/*/lib/bitcode/*"),
           # Spilo's build links /var/tmp to $RW_DIR/tmp: with a read-only root and a tmpfs on
           # /run it is the only temporary directory (Patroni's initdb writes its password file
           # there through Python's tempfile).
           links=(("/var/tmp", "/run/tmp"),),
           why="PostgreSQL 17, Patroni, curl and psql, postgres as 101:103 like Spilo"),
    Recipe("valkey", "trixie", ("valkey-server", "valkey-tools"),
           users=(("valkey", 999, 999, "/var/lib/valkey", "/usr/sbin/nologin"),),
           why="valkey-server and valkey-cli 8.1, valkey as 999:999 like valkey/valkey"),
    Recipe("python", "trixie", ("python3",),
           why="Python 3 for the contract fakes of what cannot run here (Keycloak, MinIO, OpenSearch, Grafana, "
               "Loki): fakes/*.py"),
    Recipe("haproxy", "sid", ("haproxy",),
           users=(("haproxy", 99, 99, "/var/lib/haproxy", "/usr/sbin/nologin"),),
           check_valid_until=False,
           why="HAProxy 3.2 (the shipped haproxy.cfg needs >= 3.1; trixie has 3.0), haproxy as 99:99"),
)}

#: Runs (as the namespace's root) with the rootfs as $1 after the packages are installed:
#: gives each account of ``users`` its upstream uid:gid and re-owns that account's files.
#: Arguments after $1: name uid gid home shell, repeated.
RENUMBER_HOOK = r"""
set -eu
root=$1; shift
while [ $# -ge 5 ]; do
    name=$1 uid=$2 gid=$3; shift 5
    old_uid=$(awk -F: -v n="$name" '$1 == n { print $3 }' "$root/etc/passwd")
    old_gid=$(awk -F: -v n="$name" '$1 == n { print $3 }' "$root/etc/group")
    [ -n "$old_uid" ] && [ -n "$old_gid" ] || { echo "rootfs: no account $name after install" >&2; exit 1; }
    taken=$(awk -F: -v n="$name" -v id="$uid" '$1 != n && $3 == id { print $1 }' "$root/etc/passwd")
    [ -z "$taken" ] || { echo "rootfs: uid $uid of $name is taken by $taken" >&2; exit 1; }
    taken=$(awk -F: -v n="$name" -v id="$gid" '$1 != n && $3 == id { print $1 }' "$root/etc/group")
    [ -z "$taken" ] || { echo "rootfs: gid $gid of $name is taken by $taken" >&2; exit 1; }
    if [ "$old_uid" != "$uid" ] || [ "$old_gid" != "$gid" ]; then
        awk -F: -v OFS=: -v n="$name" -v u="$uid" -v g="$gid" -v og="$old_gid" \
            '$1 == n { $3 = u; $4 = g } $1 != n && $4 == og { $4 = g } { print }' \
            "$root/etc/passwd" >"$root/etc/passwd.new"
        awk -F: -v OFS=: -v n="$name" -v g="$gid" '$1 == n { $3 = g } { print }' \
            "$root/etc/group" >"$root/etc/group.new"
        cat "$root/etc/passwd.new" >"$root/etc/passwd" && rm "$root/etc/passwd.new"
        cat "$root/etc/group.new" >"$root/etc/group" && rm "$root/etc/group.new"
        find "$root" -xdev -uid "$old_uid" -exec chown -h "$uid" {} +
        find "$root" -xdev -gid "$old_gid" -exec chgrp -h "$gid" {} +
    fi
    echo "rootfs: $name is $uid:$gid (was $old_uid:$old_gid)"
done
"""

#: Runs with the rootfs as $1 once the Essential packages are in, before the others: reserves
#: the ids of ``users`` that lie in Debian's dynamic system range (100-999), so that no other
#: package's account takes them. (An id below 100 cannot be reserved this way: adduser refuses
#: an existing account outside its range; RENUMBER_HOOK moves it afterwards.)
RESERVE_HOOK = r"""
set -eu
root=$1; shift
while [ $# -ge 5 ]; do
    name=$1 uid=$2 gid=$3 home=$4 shell=$5; shift 5
    [ "$uid" -ge 100 ] && [ "$uid" -le 999 ] && [ "$gid" -ge 100 ] && [ "$gid" -le 999 ] || continue
    echo "$name:x:$uid:$gid::$home:$shell" >>"$root/etc/passwd"
    echo "$name:x:$gid:" >>"$root/etc/group"
    echo "$name:*:19000:0:99999:7:::" >>"$root/etc/shadow"
    echo "$name:*::" >>"$root/etc/gshadow"
done
"""


#: Runs with the rootfs as $1 after the packages are installed: replaces each path by a symlink.
#: Arguments after $1: path target, repeated.
LINK_HOOK = r"""
set -eu
root=$1; shift
while [ $# -ge 2 ]; do
    rm -rf "$root$1"
    ln -s "$2" "$root$1"
    shift 2
done
"""


def recipe_key(recipe: Recipe) -> str:
    doc = {"v": RECIPE_VERSION, "recipe": asdict(recipe), "common": COMMON_EXCLUDES,
           "hooks": [RESERVE_HOOK, RENUMBER_HOOK, LINK_HOOK]}
    doc["recipe"].pop("why")
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


def tarball_name(recipe: Recipe) -> str:
    return f"{recipe.name}-{recipe_key(recipe)}.tar"


def image_tag(recipe: Recipe) -> str:
    return f"{IMAGE_REPO}/rootfs-{recipe.name}:{recipe_key(recipe)}"


def ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes", "on")


# ------------------------------------------------------------------ cache directories


def user_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "readiness-e2e" / "rootfs"


def lookup_dirs() -> list[Path]:
    """Where a tarball may already be: the configured directory, else the user's and the shared one."""
    if os.environ.get(CACHE_ENV):
        return [Path(os.environ[CACHE_ENV])]
    return [user_cache(), SHARED_CACHE]


def build_dir() -> Path:
    """Where this process writes a tarball: the shared cache as root (so a later non-root run
    finds it), the user's own cache otherwise."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    return SHARED_CACHE if os.geteuid() == 0 else user_cache()


def find_tarball(recipe: Recipe) -> Path | None:
    for d in lookup_dirs():
        path = d / tarball_name(recipe)
        if path.is_file() and os.access(path, os.R_OK):
            return path
    return None


# ------------------------------------------------------------------ building


@dataclass
class Builder:
    """How this machine can run mmdebstrap, or why it cannot."""

    mode: str | None
    reason: str = ""
    argv0: list[str] = field(default_factory=list)


def _subid_range(path: str, user: str, uid: int) -> bool:
    with contextlib.suppress(OSError):
        for line in Path(path).read_text().splitlines():
            parts = line.strip().split(":")
            if len(parts) == 3 and parts[0] in (user, str(uid)) and int(parts[2]) >= 65536:
                return True
    return False


def builder() -> Builder:
    exe = shutil.which("mmdebstrap")
    if not exe:
        return Builder(None, "mmdebstrap is not installed (Debian/Ubuntu: `apt-get install mmdebstrap uidmap`)")
    if os.geteuid() == 0:
        return Builder("root", argv0=[exe])
    uid = os.getuid()
    user = pwd.getpwuid(uid).pw_name
    missing = [f for f in ("/etc/subuid", "/etc/subgid") if not _subid_range(f, user, uid)]
    if missing:
        return Builder(None, f"as {user} (not root) mmdebstrap needs a range of at least 65536 ids for "
                             f"{user} in {' and '.join(missing)} (e.g. `sudo usermod --add-subuids 100000-165535 "
                             f"--add-subgids 100000-165535 {user}`), or run `sudo python -m tests.e2e.rootfs build`")
    if not shutil.which("newuidmap"):
        return Builder(None, "mmdebstrap --mode=unshare needs newuidmap/newgidmap (`apt-get install uidmap`)")
    return Builder("unshare", argv0=[exe])


def mmdebstrap_argv(recipe: Recipe, mode: str, exe: str, out: Path, mirror: str) -> list[str]:
    ids = [str(x) for user in recipe.users for x in user]
    argv = [exe, f"--mode={mode}", "--variant=minbase", "--format=tar", "--quiet",
            f"--include={','.join(recipe.packages)}",
            "--aptopt=Apt::Install-Recommends \"false\""]
    if not recipe.check_valid_until:
        argv.append("--aptopt=Acquire::Check-Valid-Until \"false\"")
    for pattern in (*COMMON_EXCLUDES, *recipe.excludes):
        argv.append(f"--dpkgopt=path-exclude={pattern}")
    if recipe.users:
        argv.append("--essential-hook=sh -c " + _quote(RESERVE_HOOK) + " reserve \"$1\" " + " ".join(ids))
        argv.append("--customize-hook=sh -c " + _quote(RENUMBER_HOOK) + " renumber \"$1\" " + " ".join(ids))
    if recipe.links:
        pairs = " ".join(_quote(x) for link in recipe.links for x in link)
        argv.append("--customize-hook=sh -c " + _quote(LINK_HOOK) + " link \"$1\" " + pairs)
    argv += [recipe.suite, str(out), mirror]
    return argv


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One builder per tarball across processes (two sessions starting at once wait, then reuse)."""
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def build(recipe: Recipe, *, log=print) -> Path:
    """The tarball of ``recipe``, built now if no cache directory has it."""
    found = find_tarball(recipe)
    if found:
        return found
    how = builder()
    if how.mode is None:
        raise Unavailable(f"rootfs {recipe.name} ({tarball_name(recipe)}) is not in "
                          f"{' or '.join(map(str, lookup_dirs()))} and cannot be built here: {how.reason}")
    dest_dir = build_dir()
    try:
        dest_dir.mkdir(parents=True, exist_ok=True)
        if dest_dir == SHARED_CACHE:  # both levels: whatever root's umask, every user reads it
            for level in (dest_dir.parent, dest_dir):
                os.chmod(level, 0o755)
    except OSError as exc:
        raise Unavailable(f"cannot create the rootfs cache {dest_dir}: {exc}") from exc
    dest = dest_dir / tarball_name(recipe)
    with _locked(dest_dir / f".{recipe.name}.lock"):
        if dest.is_file():  # another process built it while this one waited
            return dest
        mirror = os.environ.get(MIRROR_ENV, "http://deb.debian.org/debian")
        fd, tmp = tempfile.mkstemp(prefix=f".{recipe.name}-", suffix=".tar", dir=dest_dir)
        os.close(fd)
        t0 = time.monotonic()
        log(f"rootfs {recipe.name}: mmdebstrap --mode={how.mode} {recipe.suite} {' '.join(recipe.packages)} ...")
        try:
            proc = subprocess.run(mmdebstrap_argv(recipe, how.mode, how.argv0[0], Path(tmp), mirror),
                                  capture_output=True, text=True, timeout=1800, stdin=subprocess.DEVNULL)
            if proc.returncode != 0:
                tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-25:])
                raise Unavailable(f"mmdebstrap failed for rootfs {recipe.name} (exit {proc.returncode}):\n{tail}")
            os.chmod(tmp, 0o644)
            os.replace(tmp, dest)  # atomic: a reader sees no tarball or a whole one
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        log(f"rootfs {recipe.name}: {dest} ({dest.stat().st_size / 1e6:.0f} MB) in {time.monotonic() - t0:.0f} s")
        # Tarballs of this rootfs' earlier recipes are never looked up again.
        for old in dest_dir.glob(f"{recipe.name}-*.tar"):
            if old != dest:
                with contextlib.suppress(OSError):
                    old.unlink()
                    log(f"rootfs {recipe.name}: removed {old.name} (an earlier recipe)")
    return dest


# ------------------------------------------------------------------ into an engine


def _docker(args: list[str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def ensure_image(name: str, *, log=print) -> str:
    """``readiness-e2e/rootfs-<name>:<key>`` in the current engine, importing (and, where this
    machine can, building) the tarball first. Raises :class:`Unavailable` when it cannot."""
    recipe = RECIPES[name]
    tag = image_tag(recipe)
    if _docker(["image", "inspect", tag], timeout=60).returncode == 0:
        return tag
    tarball = build(recipe, log=log)
    res = _docker(["import", str(tarball), tag])
    if res.returncode != 0:
        raise RuntimeError(f"docker import {tarball} failed: {res.stderr.strip()}")
    return tag


def availability() -> dict[str, str]:
    """Per recipe, '' when its image or tarball exists or can be built here, else the reason."""
    how = builder()
    out = {}
    for name, recipe in RECIPES.items():
        have = find_tarball(recipe) or how.mode is not None
        if have or _docker(["image", "inspect", image_tag(recipe)], timeout=60).returncode == 0:
            out[name] = ""
        else:
            out[name] = (f"rootfs {name} is not in {' or '.join(map(str, lookup_dirs()))} and cannot be "
                         f"built here: {how.reason}")
    return out


# ------------------------------------------------------------------ command line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.e2e.rootfs", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="build the missing rootfs tarballs (default: all)")
    b.add_argument("names", nargs="*", choices=[[], *RECIPES], default=[])
    sub.add_parser("status", help="where each tarball is, or why it cannot be built here")
    args = parser.parse_args(argv)
    names = args.names if args.cmd == "build" and args.names else list(RECIPES)
    if args.cmd == "status":
        how = builder()
        for name in names:
            recipe = RECIPES[name]
            found = find_tarball(recipe)
            print(f"{name:8} {tarball_name(recipe)}  " + (str(found) if found else
                  f"missing; would build into {build_dir()} with --mode={how.mode}" if how.mode
                  else f"missing; cannot build: {how.reason}"))
        return 0
    failed = 0
    for name in names:
        try:
            print(f"{name}: {build(RECIPES[name])}")
        except Unavailable as exc:
            print(f"error: {exc}", file=sys.stderr)
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

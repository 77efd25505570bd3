"""Facts about the machine that preflight reads once: free space, SELinux, WSL, Docker
Desktop's file sharing, emulators, and the images the engine already has.

Each reader is small and tolerant (a fact that cannot be read is None, and the check that
needs it says nothing); the parsers are pure functions, tested with the texts the real
files hold.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

GIB = 1024 ** 3

#: ``docker info``'s Architecture (the kernel's ``uname -m``) -> the OCI architecture images declare.
OCI_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64", "armv7l": "arm",
            "armv6l": "arm", "armhf": "arm", "arm": "arm", "i386": "386", "i686": "386", "386": "386",
            "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64", "mips64": "mips64"}
#: OCI architecture -> the name of its binfmt_misc handler (qemu-user-static / tonistiigi/binfmt).
QEMU_NAME = {"amd64": "x86_64", "arm64": "aarch64", "arm": "arm", "386": "i386", "ppc64le": "ppc64le",
             "s390x": "s390x", "riscv64": "riscv64", "mips64": "mips64"}

IMAGE_FORMAT = ('{"tags":{{json .RepoTags}},"digests":{{json .RepoDigests}},"os":{{json .Os}},'
                '"arch":{{json .Architecture}},"variant":{{json .Variant}},"env":{{json .Config.Env}}}')


@dataclass(frozen=True)
class Image:
    """An image the engine has: its platform and environment."""

    os: str
    arch: str
    variant: str
    env: tuple[str, ...]

    @property
    def platform(self) -> str:
        return "/".join(x for x in (self.os, self.arch, self.variant) if x)


def normalize_ref(ref: str) -> str:
    """``busybox`` -> ``busybox:latest``; ``docker.io/library/x:1`` -> ``x:1`` (as RepoTags spell it)."""
    ref = ref.strip()
    for prefix in ("docker.io/library/", "index.docker.io/library/", "docker.io/", "index.docker.io/"):
        if ref.startswith(prefix):
            ref = ref[len(prefix):]
            break
    if ref.startswith("library/"):
        ref = ref[len("library/"):]
    name, _, digest = ref.partition("@")
    last = name.rsplit("/", 1)[-1]
    if not digest and ":" not in last:
        name += ":latest"
    if digest:  # RepoDigests carry no tag: name@sha256:...
        name = name.rsplit(":", 1)[0] if ":" in last else name
        return f"{name}@{digest}"
    return name


def parse_images(text: str, wanted: list[str]) -> dict[str, Image]:
    """``docker image inspect --format IMAGE_FORMAT`` lines -> {reference as the stack writes it: Image}.

    The CLI prints one line per image it has and skips the others, so lines are matched to
    the references by their tags and digests, not by position.
    """
    by_ref: dict[str, Image] = {}
    for line in text.splitlines():
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if not isinstance(doc, dict):
            continue
        image = Image(str(doc.get("os") or ""), str(doc.get("arch") or ""), str(doc.get("variant") or ""),
                      tuple(str(e) for e in doc.get("env") or []))
        for ref in [*(doc.get("tags") or []), *(doc.get("digests") or [])]:
            by_ref[normalize_ref(str(ref))] = image
    return {ref: by_ref[normalize_ref(ref)] for ref in wanted if normalize_ref(ref) in by_ref}


def free_bytes(path: Path) -> tuple[Path, int] | None:
    """(the existing directory measured, bytes free to an unprivileged writer) for ``path`` or
    its nearest existing ancestor; None when none can be measured."""
    for candidate in [path, *path.parents]:
        try:
            st = os.statvfs(candidate)
        except OSError:
            continue
        return candidate, st.f_bavail * st.f_frsize
    return None


def device(path: Path) -> int | None:
    for candidate in [path, *path.parents]:
        try:
            return candidate.stat().st_dev
        except OSError:
            continue
    return None


def read_text(path: str | Path) -> str | None:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def selinux_enforcing(text: str | None) -> bool | None:
    """``/sys/fs/selinux/enforce``: "1" enforcing, "0" permissive; None without SELinux."""
    if text is None:
        return None
    return text.strip() == "1"


def is_wsl(kernel_release: str, proc_version: str | None) -> bool:
    """WSL2's kernel says so in its release (``5.15.153.1-microsoft-standard-WSL2``)."""
    text = f"{kernel_release} {proc_version or ''}".lower()
    return "microsoft" in text or "wsl" in text


_WINDOWS_DRIVE = re.compile(r"^/mnt/[a-zA-Z](/|$)")


def on_windows_drive(path: Path) -> bool:
    """A path on a Windows drive as WSL mounts it (``/mnt/c/...``, DrvFs)."""
    return bool(_WINDOWS_DRIVE.match(str(path)))


def binfmt_handlers(root: Path = Path("/proc/sys/fs/binfmt_misc")) -> set[str]:
    """Names of the enabled binfmt_misc handlers (``qemu-aarch64``, ``rosetta``, ...)."""
    out = set()
    try:
        entries = list(root.iterdir())
    except OSError:
        return out
    for entry in entries:
        if entry.name in ("register", "status"):
            continue
        text = read_text(entry) or ""
        if text.startswith("enabled"):
            out.add(entry.name)
    return out


def can_emulate(arch: str, handlers: set[str]) -> bool:
    qemu = QEMU_NAME.get(arch, arch)
    return any(h == f"qemu-{qemu}" or h.startswith(f"qemu-{qemu}") for h in handlers)


#: Docker Desktop's settings, newest name first (4.35 renamed settings.json to settings-store.json).
DESKTOP_SETTINGS = {
    "Darwin": ("Library/Group Containers/group.com.docker/settings-store.json",
               "Library/Group Containers/group.com.docker/settings.json"),
    "Linux": (".docker/desktop/settings-store.json", ".docker/desktop/settings.json"),
}
#: What Docker Desktop shares when its settings name no directories.
DESKTOP_DEFAULT_SHARES = {"Darwin": ("/Users", "/Volumes", "/private", "/tmp", "/var/folders")}


def desktop_shares(client_os: str, home: Path) -> tuple[str, list[str]] | None:
    """(settings file, shared directories) of Docker Desktop on this machine; None when unknown."""
    for rel in DESKTOP_SETTINGS.get(client_os, ()):
        path = home / rel
        text = read_text(path)
        if text is None:
            continue
        shares = parse_shares(text, client_os, home)
        return (str(path), shares) if shares is not None else None
    return None


def parse_shares(text: str, client_os: str, home: Path) -> list[str] | None:
    try:
        doc = json.loads(text)
    except ValueError:
        return None
    if not isinstance(doc, dict):
        return None
    value = next((v for k, v in doc.items() if k.lower() == "filesharingdirectories"), None)
    if value is None:
        default = DESKTOP_DEFAULT_SHARES.get(client_os)
        return list(default) if default else [str(home)]
    return [str(v) for v in value] if isinstance(value, list) else None


def shared(path: Path, shares: list[str]) -> bool:
    """Whether ``path`` lies in one of Desktop's shared directories (macOS: /tmp is /private/tmp)."""
    candidates = {str(path)}
    resolved = str(path.resolve()) if path.exists() else str(path)
    candidates.add(resolved)
    for share in shares:
        base = share.rstrip("/") or "/"
        for p in candidates:
            if p == base or p.startswith(base + "/") or base == "/":
                return True
    return False


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)i?b?\s*$", re.I)


def parse_size(value) -> int | None:
    """``"512m"``, ``"1536M"``, ``"1G"``, ``1610612736`` -> bytes (binary units, as Docker and the JVM read them)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return int(value)
    m = _SIZE.match(str(value))
    if not m:
        return None
    factor = 1024 ** "bkmgtp".index(m.group(2).lower() or "b")
    return int(float(m.group(1)) * factor)


def gib(n: int) -> str:
    return f"{n / GIB:.1f} GiB"

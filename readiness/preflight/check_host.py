"""Preflight checks of the platform and the host: what Docker Desktop, SELinux, WSL's Windows
drives or a foreign architecture would break.

* ``image.platform``: an image the engine has, built for another architecture;
* ``desktop.file-sharing``: a bind mount outside Docker Desktop's shared directories;
* ``host.selinux-relabel``: SELinux enforcing and a bind mount without a relabel option;
* ``host.wsl-windows-drive``: the project on a Windows drive under WSL (``/mnt/c``).

Pure functions of the model and the facts preflight gathered once (:mod:`.facts`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..prepare import dirs as dirslib
from ..stack import sources
from ..stack.model import Model
from ..system import engine as enginelib
from ..system import hostfacts
from .facts import Facts
from .findings import ERROR, WARNING, Finding


def check_platform(model: Model, facts: Facts) -> list[Finding]:
    engine = facts.engine
    if engine is None or not engine.arch:
        return []
    want = hostfacts.OCI_ARCH.get(engine.arch, engine.arch)
    out = []
    for svc, spec in sorted(model.services.items()):
        image = facts.images.get(str(spec.get("image") or ""))
        if image is None or not image.arch:
            continue
        if image.os in ("", "linux") and image.arch == want:
            continue
        emulated = image.os in ("", "linux") and (
            engine.kind == enginelib.Kind.DESKTOP or (engine.local and hostfacts.can_emulate(image.arch, facts.binfmt)))
        var = sources.image_variables(model.project_dir).get(svc)
        ref = spec.get("image")
        out.append(Finding(
            "image.platform", WARNING if emulated else ERROR,
            f"image {ref} of {svc} is {image.platform}, the engine runs linux/{want}: " + (
                "it runs under emulation, several times slower" if emulated else
                "it cannot start (exec format error)"),
            f"pull it for this platform: `docker pull --platform linux/{want} {ref}`"
            + (f" (or set {var} in .env to a tag that has linux/{want})" if var else "")
            + ("" if emulated else f"; to run it anyway, install an emulator for {image.arch} (binfmt_misc, e.g. "
               "the tonistiigi/binfmt image)"),
            svc, f".env ({var})" if var else ""))
    return out


# ------------------------------------------------------------------ Docker Desktop, SELinux, WSL


def bind_sources(model: Model) -> list[tuple[str, Path, dict[str, Any]]]:
    """(service, source, volume) of every bind mount whose source is below the project directory
    or is one of the stack's data directories wherever they are (``DATA_ROOT`` on another disk)."""
    data = {d.path for d in dirslib.data_dirs(model)}
    out = []
    for svc, spec in sorted(model.services.items()):
        for vol in spec.get("volumes") or []:
            if isinstance(vol, dict) and vol.get("type") == "bind" and vol.get("source"):
                source = Path(str(vol["source"]))
                if source == model.project_dir or model.project_dir in source.parents or source in data:
                    out.append((svc, source, vol))
    return out


def check_desktop_sharing(model: Model, facts: Facts) -> list[Finding]:
    engine = facts.engine
    if engine is None or engine.kind != enginelib.Kind.DESKTOP or facts.desktop_shares is None or facts.wsl:
        return []
    settings, shares = facts.desktop_shares
    sources = bind_sources(model)
    out = []
    inside = [s for _, s, _ in sources if s == model.project_dir or model.project_dir in s.parents]
    if inside and not hostfacts.shared(model.project_dir, shares):
        out.append(Finding(
            "desktop.file-sharing", ERROR,
            f"the project directory {model.project_dir} is not in Docker Desktop's shared directories "
            f"({', '.join(shares) or 'none'}; {settings}): every bind mount of the stack would be refused (mounts "
            "denied)",
            f"Docker Desktop > Settings > Resources > File sharing: add {model.project_dir} (or a parent), then Apply "
            "& restart; or clone the repository under a shared directory such as your home"))
    rooted = dirslib.variable_rooted(model.project_dir)
    outside = sorted({(svc, s, str(v.get("target", ""))) for svc, s, v in sources
                      if s not in inside and not hostfacts.shared(s, shares)})
    for svc, source, target in outside:
        var = rooted.get(svc, {}).get(target.rstrip("/"), "the variable that sets it")
        out.append(Finding(
            "desktop.file-sharing", ERROR,
            f"the data directory {source} of {svc} is not in Docker Desktop's shared directories "
            f"({', '.join(shares) or 'none'}; {settings}): its bind mount would be refused (mounts denied)",
            f"Docker Desktop > Settings > Resources > File sharing: add {source.parent} (or a parent), then Apply & "
            f"restart; or set {var} in .env to a shared directory", svc, str(source)))
    return out


def check_selinux(model: Model, facts: Facts) -> list[Finding]:
    engine = facts.engine
    if engine is None or not engine.local or not facts.selinux_enforcing:
        return []
    if not any(o.startswith("name=selinux") for o in engine.security_options):
        return []  # the engine does not label containers: nothing is denied
    unlabelled: dict[str, list[str]] = {}
    for svc, source, vol in bind_sources(model):
        if not (vol.get("bind") or {}).get("selinux"):
            unlabelled.setdefault(svc, []).append(model.relpath(source))
    return [Finding(
        "host.selinux-relabel", ERROR,
        f"SELinux is enforcing and {svc} bind-mounts {', '.join(sorted(paths))} without a relabel option: the "
        "container is denied access to them",
        "add the relabel option to each of these mounts (`:z` for shared, e.g. `./dynamic:/etc/traefik/dynamic:ro,z`, "
        "or `bind: {selinux: z}` in the long syntax), or label them once: `chcon -Rt container_file_t <path>`",
        svc) for svc, paths in sorted(unlabelled.items())]


def check_wsl_drive(model: Model, facts: Facts) -> list[Finding]:
    if not facts.wsl or not hostfacts.on_windows_drive(model.project_dir):
        return []
    return [Finding(
        "host.wsl-windows-drive", ERROR,
        f"the project directory {model.project_dir} is on a Windows drive mounted by WSL: file modes and owners do "
        "not stick there, so secrets cannot be kept private and data directories cannot get their container owners",
        "clone the repository into the WSL filesystem (e.g. `git clone <url> ~/src/infra-core`) and run the toolkit "
        "there")]

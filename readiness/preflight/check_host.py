"""Preflight checks of what the engine and the machine already hold: conflicts with what runs,
mounts, resources, platform.

* ``project.other-directory``: containers of this Compose project started from another
  directory (a second checkout) -- ``up`` here would take them over;
* ``network.mismatch``: an external network that exists as something else than the plain
  local bridge network ``invoke networks`` makes;
* ``mount.missing`` / ``mount.wrong-kind``: a read-only bind-mount source (configuration) that
  is missing, or is a directory where a file belongs -- Docker creates a missing source as an
  empty directory, and the service then fails far from the cause;
* ``resources.cpus`` / ``resources.memory`` / ``resources.heap``: the stack's limits against
  the CPUs and memory the engine has, and JVM heaps against their container's limit;
* ``engine.ulimit``: ``ulimits`` the engine cannot apply (runc would refuse to start the
  container), from the engine's own answer (:mod:`readiness.prepare.ulimits`);
* ``disk.engine`` / ``disk.data``: free space where the engine keeps images and where the data
  directories are;
* ``image.platform``: an image the engine has, built for another architecture;
* ``desktop.file-sharing``, ``host.selinux-relabel``, ``host.wsl-windows-drive``: bind mounts
  that Docker Desktop, SELinux or WSL's Windows drives would break.

Pure functions of the model and the facts preflight gathered once.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ToolkitError
from ..prepare import dirs as dirslib
from ..prepare import networks
from ..prepare import ulimits as ulimitslib
from ..stack import compose
from ..stack.compose import Model
from ..system import engine as enginelib
from ..system import hostfacts
from ..system.hostfacts import GIB, gib
from .findings import ERROR, WARNING, Finding

if TYPE_CHECKING:  # pragma: no cover
    from .table import Facts

#: Free space the stack needs when the stack does not say (top-level ``x-readiness.free-space``):
#: the engine's data root while some image is still to be pulled (the core stack's images
#: take about 5 GiB unpacked, and a pull holds the compressed layers too), and the filesystem
#: of the data directories.
DEFAULT_FREE = {"engine": 8 * GIB, "data": 2 * GIB}
#: Below this, a write fails soon whatever the stack: an error, not a warning.
HARD_FLOOR = 1 * GIB
#: A JVM heap above this share of its container's memory limit leaves too little for the
#: rest of the JVM (metaspace, threads, direct buffers): a warning; at the limit, an error.
HEAP_SHARE = 0.75


def image_variable(model: Model, svc: str) -> str | None:
    """The variable that sets ``svc``'s image (``${SPILO_IMAGE:-...}``), from the file as written."""
    raw = compose.raw_services(model.project_dir).get(svc, ("", {}))[1]
    m = re.search(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)", str(raw.get("image") or ""))
    return m.group(1) if m else None


# ------------------------------------------------------------------ conflicts with what runs


def check_project_directory(model: Model, facts: Facts) -> list[Finding]:
    here = os.path.realpath(model.project_dir)
    others: dict[str, list[str]] = {}
    for c in facts.containers:
        if c.project == model.name and c.working_dir and os.path.realpath(c.working_dir) != here:
            others.setdefault(c.working_dir, []).append(c.name)
    out = []
    for directory, names in sorted(others.items()):
        shown = ", ".join(sorted(names)[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        out.append(Finding(
            "project.other-directory", ERROR,
            f"Compose project {model.name} already has {len(names)} container(s) started from {directory} "
            f"({shown}): `invoke up` here would take them over (recreate them with this directory's files and data)",
            f"stop that stack first: `invoke down` in {directory} (or `docker compose -p {model.name} down`; its "
            f"data stays); or give this checkout a project name of its own: COMPOSE_PROJECT_NAME={model.name}-2 "
            "in .env (with other ports and network names)", file=directory))
    return out


def check_network_kind(model: Model, facts: Facts) -> list[Finding]:
    if facts.networks is None:
        return []
    out = []
    for name in networks.external(model):
        net = facts.networks.get(name)
        if net is None:
            continue  # network.missing
        problems = []
        if net.get("driver") != "bridge":
            problems.append(f"driver {net.get('driver') or '?'}")
        if net.get("scope") != "local":
            problems.append(f"scope {net.get('scope') or '?'}")
        if net.get("internal") == "true":
            problems.append("internal (no published ports, no route out)")
        if not problems:
            continue
        users = sorted(svc for svc, spec in model.services.items()
                       if any(str((model.networks.get(key) or {}).get("name") or key) == name
                              for key in (spec.get("networks") or {})))
        out.append(Finding(
            "network.mismatch", ERROR,
            f"external network {name} exists as {', '.join(problems)}; the stack expects a plain local bridge "
            f"network (what `invoke networks` creates) for {', '.join(users) or 'its services'}",
            f"`docker network inspect {name}` shows who uses it; if nothing does: `docker network rm {name} && "
            f"invoke networks`; otherwise point the stack at another name in .env"))
    return out


# ------------------------------------------------------------------ mounts


def _file_like(target: str) -> bool:
    """Whether a container path names a file (``haproxy.cfg``, ``docker.sock``), not a ``.d`` directory."""
    name = target.rstrip("/").rsplit("/", 1)[-1]
    suffix = name.rsplit(".", 1)[-1] if "." in name.strip(".") else ""
    return bool(suffix) and suffix != "d" and suffix.isalnum() and len(suffix) <= 10


def read_only_binds(model: Model) -> list[tuple[str, Path, str]]:
    """(service, source, target) of every read-only bind mount, sorted."""
    out = set()
    for svc, spec in model.services.items():
        for vol in spec.get("volumes") or []:
            if isinstance(vol, dict) and vol.get("type") == "bind" and vol.get("read_only") and vol.get("source"):
                out.add((svc, Path(str(vol["source"])), str(vol.get("target", ""))))
    return sorted(out)


def check_mounts(model: Model, facts: Facts, files: dict[str, str]) -> list[Finding]:
    if facts.engine is not None and facts.engine.kind == enginelib.REMOTE:
        return []  # engine.remote: these paths are the other machine's
    out = []
    for svc, source, target in read_only_binds(model):
        rel = model.relpath(source)
        inside = model.project_dir in source.parents
        restore = f"restore it from the repository (`git checkout -- {rel}`)" if inside else \
            f"create it, or change the mount in {files.get(svc, 'the compose file')}"
        if not os.path.lexists(source):
            out.append(Finding(
                "mount.missing", ERROR,
                f"read-only bind-mount source {rel} (-> {target}) does not exist: Docker would create an empty "
                f"directory in its place and {svc} would fail at start",
                f"{restore}", svc, rel))
        elif source.is_dir() and _file_like(target):
            empty = not any(True for _ in _entries(source))
            made = "an empty directory (Docker makes one when the file is missing at `up`)" if empty else \
                "a directory"
            out.append(Finding(
                "mount.wrong-kind", ERROR,
                f"read-only bind-mount source {rel} (-> {target}) is {made}, where {svc} expects a file",
                f"remove the directory (`rmdir {rel}`, or `sudo rmdir` if Docker made it as root), then {restore}",
                svc, rel))
    return out


def _entries(path: Path):
    try:
        yield from os.scandir(path)
    except OSError:
        return


# ------------------------------------------------------------------ resources


def limits(spec: dict[str, Any]) -> tuple[float | None, int | None]:
    """(cpus, memory bytes) of ``deploy.resources.limits`` (or the legacy ``cpus``/``mem_limit``)."""
    lim = ((spec.get("deploy") or {}).get("resources") or {}).get("limits") or {}
    cpus = lim.get("cpus", spec.get("cpus"))
    memory = lim.get("memory", spec.get("mem_limit"))
    try:
        cpus_value = float(cpus) if cpus not in (None, "") else None
    except (TypeError, ValueError):
        cpus_value = None
    return cpus_value, hostfacts.parse_size(memory) if memory not in (None, "") else None


_XMX = re.compile(r"-Xmx(\d+[kKmMgGtT]?)\b")


def heap(spec: dict[str, Any]) -> int | None:
    """The JVM's maximum heap (``-Xmx``) in the service's environment, in bytes."""
    from ..stack.dbfacts import environment

    for value in environment(spec).values():
        m = _XMX.search(value)
        if m:
            return hostfacts.parse_size(m.group(1))
    return None


def heap_variable(model: Model, svc: str) -> str | None:
    raw = compose.raw_services(model.project_dir).get(svc, ("", {}))[1]
    env = raw.get("environment") or {}
    values = env.values() if isinstance(env, dict) else env
    for value in values:
        m = re.search(r"-Xmx\$\{?([A-Za-z_][A-Za-z0-9_]*)", str(value))
        if m:
            return m.group(1)
    return None


def check_resources(model: Model, facts: Facts, files: dict[str, str]) -> list[Finding]:
    engine = facts.engine
    if engine is None:
        return []
    out = []
    memory: dict[str, int] = {}
    for svc, spec in sorted(model.services.items()):
        cpus, mem = limits(spec)
        jvm = heap(spec)
        if cpus is not None and engine.ncpu and cpus > engine.ncpu:
            out.append(Finding(
                "resources.cpus", ERROR,
                f"{svc}'s CPU limit {cpus:g} is more than the {engine.ncpu} CPU(s) the engine has: Docker refuses to "
                "create the container",
                f"lower deploy.resources.limits.cpus of {svc} to {engine.ncpu} or less, or give the engine more CPUs "
                "(Docker Desktop: Settings > Resources)", svc, files.get(svc, "")))
        if jvm is not None and mem is not None and jvm > HEAP_SHARE * mem:
            var = heap_variable(model, svc)
            source = f" ({var})" if var else ""
            fits = jvm < mem
            out.append(Finding(
                "resources.heap", WARNING if fits else ERROR,
                f"{svc}'s JVM heap {gib(jvm)}{source} " + (
                    f"takes more than {HEAP_SHARE:.0%} of its memory limit {gib(mem)}: the rest of the JVM may not fit"
                    if fits else f"does not fit its memory limit {gib(mem)}: the kernel kills it (out of memory)"),
                (f"set {var} in .env" if var else "lower -Xmx") + f" to at most {int(mem / 2 / 1024 ** 2)}m (half the "
                f"limit), or raise deploy.resources.limits.memory of {svc}",
                svc, f".env ({var})" if var else files.get(svc, "")))
        need = mem if mem is not None else jvm
        if need:
            memory[svc] = need
    total = sum(memory.values())
    if engine.mem_bytes and total > engine.mem_bytes:
        largest = ", ".join(f"{svc} {gib(n)}" for svc, n in sorted(memory.items(), key=lambda kv: (-kv[1], kv[0]))[:3])
        out.append(Finding(
            "resources.memory", WARNING,
            f"the stack's memory limits add up to {gib(total)}, the engine has {gib(engine.mem_bytes)} (largest: "
            f"{largest}): services may be killed for lack of memory under load",
            "give the engine more memory (Docker Desktop: Settings > Resources > Memory; WSL2: memory= in "
            ".wslconfig), or lower the largest limits"))
    return out


def check_ulimits(model: Model, facts: Facts, files: dict[str, str]) -> list[Finding]:
    """A service whose ``ulimits`` the engine refused: the values it grants, as ``.env`` lines."""
    refused = {svc: v for svc, v in sorted(facts.ulimits.items()) if not v.accepted}
    if not refused:
        return []
    written = ulimitslib.variables(model.project_dir)
    who = f"the {facts.engine.kind} engine" if facts.engine is not None else "the engine"
    out = []
    for svc, verdict in refused.items():
        pairs = verdict.refused
        names = [w.name for w, _ in pairs] or [w.name for w in verdict.wanted]
        asked = ", ".join(w.text() for w, _ in pairs) or ", ".join(w.text() for w in verdict.wanted)
        runc = "runc would refuse to start the container (\"error setting rlimit\")"
        if pairs:
            most = ", ".join(f"{n}={ulimitslib.pair_text(*verdict.granted[n])}" for n in names if n in verdict.granted)
            message = (f"{who} cannot apply {svc}'s ulimits {asked}: its containers get at most {most}, and it "
                       "cannot raise a hard limit above its own (that needs CAP_SYS_RESOURCE, which every rootless "
                       f"engine lacks); {runc}")
        else:
            message = f"{who} refuses {svc}'s ulimits {asked}; {runc}"
        lines, in_file = ulimitslib.env_lines(model, verdict, written) if pairs else ({}, [])
        raise_engine = ulimitslib.engine_limit_fix(names)
        if pairs and verdict.lowered_ok and lines and not in_file:
            fix = (f"set in .env: {' '.join(f'{k}={v}' for k, v in lines.items())} (what this engine grants; "
                   f"`invoke env` writes them into a new .env); or {raise_engine}")
        elif pairs and verdict.lowered_ok:
            fix = (f"lower the ulimits of {svc} in {files.get(svc, 'its compose file')} to "
                   f"{', '.join(in_file)}" + (f" and set in .env: {' '.join(f'{k}={v}' for k, v in lines.items())}"
                                              if lines else "") + f"; or {raise_engine}")
        else:
            fix = (f"{raise_engine}; `docker run --rm --ulimit {verdict.wanted[0].name}=...` shows the engine's answer")
        where = f".env ({', '.join(lines)})" if lines and not in_file else files.get(svc, "")
        out.append(Finding("engine.ulimit", ERROR, message, fix, svc, where))
    return out


# ------------------------------------------------------------------ disk


def free_space_needs(model: Model) -> dict[str, int]:
    """What the stack declares it needs (top-level ``x-readiness.free-space``), else :data:`DEFAULT_FREE`."""
    declared = (model.rendered.get("x-readiness") or {}).get("free-space") or {}
    if not isinstance(declared, dict):
        declared = {"": declared}
    out = dict(DEFAULT_FREE)
    for key, value in declared.items():
        size = hostfacts.parse_size(value)
        if key not in DEFAULT_FREE or size is None:
            raise ToolkitError(f"malformed x-readiness value: x-readiness.free-space.{key}: {value!r}",
                               where=f"{compose.COMPOSE_FILE} (x-readiness.free-space)",
                               fix="write `free-space: {engine: 8G, data: 2G}` (sizes with k/m/g/t), then run again")
        out[key] = size
    return out


def check_disk(model: Model, facts: Facts) -> list[Finding]:
    needs = free_space_needs(model)
    out = []
    engine = facts.engine
    if engine is not None and facts.engine_free is not None:
        where, free = facts.engine_free
        missing = [img for img in model_images(model) if img not in facts.images] if facts.images_known else []
        if free < HARD_FLOOR or (missing and free < needs["engine"]):
            error = free < HARD_FLOOR
            why = (f"{len(missing)} image(s) still to pull, about {gib(needs['engine'])} with the unpacked layers"
                   if missing else "containers write their layers and logs there")
            out.append(Finding(
                "disk.engine", ERROR if error else WARNING,
                f"the engine's data root {engine.data_root} has {gib(free)} free ({where}); {why}",
                "free space there (`docker system df` shows what Docker holds; `docker image prune` and "
                "`docker builder prune` remove what no container uses), or move the engine's data-root"))
    for directory, free in facts.data_free:
        if free < needs["data"]:
            out.append(Finding(
                "disk.data", ERROR if free < HARD_FLOOR else WARNING,
                f"the data directories' filesystem has {gib(free)} free ({model.relpath(directory)}), less than "
                f"the {gib(needs['data'])} the stack asks for: databases stop accepting writes when it fills",
                "free space on that filesystem, or put the data elsewhere: DATA_ROOT in .env (then `invoke dirs`)",
                file=model.relpath(directory)))
    return out


def data_roots(model: Model) -> list[Path]:
    """One data directory per filesystem (the first, sorted), to measure free space once each."""
    seen: dict[int | None, Path] = {}
    for d in dirslib.data_dirs(model):
        seen.setdefault(hostfacts.device(d.path), d.path)
    return sorted(seen.values())


# ------------------------------------------------------------------ platform


def model_images(model: Model) -> list[str]:
    return sorted({str(spec.get("image")) for spec in model.services.values() if spec.get("image")})


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
            engine.kind == enginelib.DESKTOP or (engine.local and hostfacts.can_emulate(image.arch, facts.binfmt)))
        var = image_variable(model, svc)
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
    if engine is None or engine.kind != enginelib.DESKTOP or facts.desktop_shares is None or facts.wsl:
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

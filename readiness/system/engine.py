"""The one place that knows the Docker engine: what a container will see.

Everything that concerns "what a container will see" -- the uid a file belongs to inside a
container, which host ports can be published, the kernel's settings, memory and CPUs -- is
the engine's to answer, not the machine that runs Python: under a rootless engine container
uid 472 is a subordinate host uid, under Docker Desktop or a remote ``DOCKER_HOST`` the
containers run in another kernel. This module asks the engine once (``docker info``) and
turns the answer into an :class:`Engine` that the checks and fixes consult.

Kinds of engine, and how they map ids (``docs/engines.md`` has the user-facing table):

* ``rootful``: container uid N is host uid N.
* ``rootless``: container root is the user running the engine; uid N >= 1 is
  ``subuid_start + N - 1`` (``/etc/subuid``), as rootlesskit maps it.
* ``userns-remap``: uid N is ``remap_start + N``; the start is in the engine's data root
  (``/var/lib/docker/<uid>.<gid>``).
* ``desktop`` (Docker Desktop on macOS/Windows/WSL2): file sharing ignores ownership, so
  nothing about owners matters; the kernel is Desktop's VM.
* ``remote`` (``tcp://``/``ssh://`` or another machine's kernel): bind-mount sources are
  that machine's paths; the toolkit cannot check them from here and says so.

The mapping is computed from ``docker info`` and ``/etc/subuid`` (pure functions, tested for
each kind), and the tests check it against the engine's own answer: ``/proc/self/uid_map``
read inside a container (:func:`uid_map_from_container`).

Work that needs the engine's privileges (chown a data directory to a container uid,
remove data the user no longer owns) runs in a short-lived helper container
(:func:`helper`): ``--network none``, root in the container, only the capabilities the job
needs, the directories bind-mounted. That is right under every kind, and needs no sudo.
"""

from __future__ import annotations

import json
import os
import platform
import pwd
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..enums import TextEnum
from ..errors import ToolkitError
from . import runner

#: The variable (``.env``) naming the helper image; its default lives in docker-compose.yml
#: (top-level ``x-readiness.helper-image``), so Compose stays the only registry.
HELPER_VARIABLE = "HELPER_IMAGE"
#: Engines older than this refuse ``healthcheck.start_interval`` (Compose checks it).
START_INTERVAL_MIN = (25, 0, 0)
#: The kernel default of ``net.ipv4.ip_unprivileged_port_start``.
DEFAULT_UNPRIVILEGED_PORT_START = 1024


class Kind(TextEnum):
    """What kind of engine runs the containers (the module's docstring says what each means)."""

    ROOTFUL = "rootful"
    ROOTLESS = "rootless"
    USERNS = "userns-remap"
    DESKTOP = "desktop"
    REMOTE = "remote"


@dataclass(frozen=True)
class IdRange:
    """Ids ``inside .. inside+count-1`` in a container are ``outside ..`` on the host."""

    inside: int
    outside: int
    count: int


IDENTITY = (IdRange(0, 0, 4294967295),)


def map_id(ranges: Sequence[IdRange], container_id: int) -> int | None:
    """The host id of ``container_id``; None when the engine does not map it."""
    for r in ranges:
        if r.inside <= container_id < r.inside + r.count:
            return r.outside + container_id - r.inside
    return None


def unmap_id(ranges: Sequence[IdRange], host_id: int) -> int | None:
    """The container id that is ``host_id`` on the host; None when it has none (shows as nobody)."""
    for r in ranges:
        if r.outside <= host_id < r.outside + r.count:
            return r.inside + host_id - r.outside
    return None


def parse_id_map(text: str) -> tuple[IdRange, ...]:
    """``/proc/<pid>/uid_map`` text: ``inside outside count`` per line."""
    out = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3 and all(p.isdigit() for p in parts):
            out.append(IdRange(*(int(p) for p in parts)))
    return tuple(out)


def subordinate_range(text: str, user: str, uid: int) -> tuple[int, int] | None:
    """The first ``/etc/subuid`` (or subgid) range of ``user``/``uid``: (start, count)."""
    for line in text.splitlines():
        parts = line.strip().split(":")
        if len(parts) == 3 and parts[0] in (user, str(uid)) and parts[1].isdigit() and parts[2].isdigit():
            return int(parts[1]), int(parts[2])
    return None


@dataclass(frozen=True)
class Engine:
    """What ``docker info`` says about the engine, and what follows from it."""

    kind: Kind
    version: tuple[int, int, int]
    version_text: str
    os: str
    kernel: str
    arch: str
    cgroup_version: str
    ncpu: int
    mem_bytes: int
    data_root: str
    name: str
    #: Same machine and kernel as this process: bind-mount sources are our files and
    #: ``/proc/sys`` is the engine's kernel. False for Desktop's VM and remote engines.
    local: bool
    uid_map: tuple[IdRange, ...] = IDENTITY
    gid_map: tuple[IdRange, ...] = IDENTITY
    security_options: tuple[str, ...] = ()
    #: Host uid that runs a rootless engine (its socket's owner), else None.
    owner_uid: int | None = None
    insecure_registries: tuple[str, ...] = field(default=())
    #: The OS of the machine running the toolkit (``platform.system()``).
    client_os: str = "Linux"
    #: The unix socket the engine's API listens on, as the CLI reaches it (None for tcp/ssh).
    socket: str | None = "/var/run/docker.sock"
    #: ``docker info``'s ID: the engine's identity, kept across restarts (caches key on it).
    id: str = ""
    #: The log driver of a container that names none (``LoggingDriver``; its default options,
    #: from ``daemon.json``'s ``log-opts``, are not in ``docker info``).
    logging_driver: str = "json-file"

    @property
    def label(self) -> str:
        """One phrase for messages: ``rootless Docker 26.1.5 on Debian GNU/Linux 13``."""
        return f"{self.kind} Docker {self.version_text} on {self.os}"

    def host_uid(self, uid: int) -> int | None:
        return map_id(self.uid_map, uid)

    def host_gid(self, gid: int) -> int | None:
        return map_id(self.gid_map, gid)

    def container_uid(self, host_uid: int) -> int | None:
        return unmap_id(self.uid_map, host_uid)

    def container_gid(self, host_gid: int) -> int | None:
        return unmap_id(self.gid_map, host_gid)

    @property
    def ownership_matters(self) -> bool:
        """Whether host owners and modes decide what a container can read and write.

        Docker Desktop on macOS and Windows shares files through a layer that lets the
        container user read and write them whatever their host owner; under WSL2 (a Linux
        client) the project lives on the distribution's own filesystem and its owners count.
        A remote engine mounts its own machine's paths: nothing here can be checked.
        """
        if self.kind == Kind.REMOTE:
            return False
        return self.kind != Kind.DESKTOP or self.client_os == "Linux"

    @property
    def root_is_host_root(self) -> bool:
        """Container root is the host's root (so it may bypass file modes with DAC_OVERRIDE)."""
        return self.host_uid(0) == 0

    @property
    def start_interval(self) -> bool:
        """Whether the engine accepts ``healthcheck.start_interval`` (Docker Engine >= 25)."""
        return self.version >= START_INTERVAL_MIN


def permits(engine: Engine, owner: tuple[int, int, int], uid: int, gid: int, bits: int, *,
            dac_override: bool = False) -> bool:
    """Whether a container process with ``uid:gid`` gets every permission in ``bits`` (rwx as 0o7).

    ``owner`` is the host file's (uid, gid, mode). Decided as the kernel decides for the
    container: the ids are mapped to host ids first; then the owner, group or other bits of
    the class they fall in apply. Container root with CAP_DAC_OVERRIDE (Docker's default set;
    gone with ``cap_drop: [ALL]``) bypasses the bits -- but only for a file whose owner and
    group are mapped into its user namespace (rootless: the user's own files; userns-remap:
    never the user's files). Supplementary groups are not considered.
    """
    if not engine.ownership_matters:
        return True
    st_uid, st_gid, mode = owner
    if uid == 0 and dac_override and engine.container_uid(st_uid) is not None \
            and engine.container_gid(st_gid) is not None:
        return True
    host_uid, host_gid = engine.host_uid(uid), engine.host_gid(gid)
    shift = 6 if host_uid is not None and st_uid == host_uid else 3 if host_gid is not None and st_gid == host_gid \
        else 0
    return (mode >> shift) & bits == bits


def _version(text: str) -> tuple[int, int, int]:
    m = re.match(r"v?(\d+)\.(\d+)(?:\.(\d+))?", text or "")
    return (int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)) if m else (0, 0, 0)


def _is_desktop(doc: dict) -> bool:
    labels = " ".join(str(x) for x in doc.get("Labels") or [])
    return (doc.get("OperatingSystem") == "Docker Desktop" or doc.get("Name") == "docker-desktop"
            or "com.docker.desktop" in labels)


def socket_path(docker_host: str | None) -> str | None:
    """The unix socket the CLI talks to, or None for tcp:// / ssh:// / npipe:// hosts."""
    host = docker_host or "unix:///var/run/docker.sock"
    return host[len("unix://"):] if host.startswith("unix://") else None


def parse_info(doc: dict, *, docker_host: str | None, local_kernel: str, local_uid: int,
               subuid: str = "", subgid: str = "", socket_owner: int | None = None,
               user_of=None, client_os: str = "Linux") -> Engine:
    """An :class:`Engine` from ``docker info``'s JSON and the host facts it needs (pure).

    ``user_of(uid)`` names a uid for ``/etc/subuid`` lookups (default: the passwd entry).
    """
    options = tuple(str(o) for o in doc.get("SecurityOptions") or [])
    names = {m.group(1) for o in options if (m := re.match(r"name=([^,]+)", o))}
    kernel = str(doc.get("KernelVersion") or "")
    unix = socket_path(docker_host) is not None
    if _is_desktop(doc):
        kind = Kind.DESKTOP
    elif not unix or kernel != local_kernel:
        kind = Kind.REMOTE
    elif "rootless" in names:
        kind = Kind.ROOTLESS
    elif "userns" in names:
        kind = Kind.USERNS
    else:
        kind = Kind.ROOTFUL
    uid_map = gid_map = IDENTITY
    owner = None
    data_root = str(doc.get("DockerRootDir") or "")
    if kind == Kind.ROOTLESS:
        owner = socket_owner if socket_owner is not None else local_uid
        lookup = user_of or _user_name
        user = lookup(owner)
        gid = _primary_gid(owner)
        uid_map = _rootless_map(owner, subordinate_range(subuid, user, owner))
        gid_map = _rootless_map(gid, subordinate_range(subgid, user, owner))
    elif kind == Kind.USERNS:
        m = re.search(r"/(\d+)\.(\d+)/?$", data_root)
        if m:
            uid_map = (IdRange(0, int(m.group(1)), 65536),)
            gid_map = (IdRange(0, int(m.group(2)), 65536),)
    registries = tuple(sorted((doc.get("RegistryConfig") or {}).get("InsecureRegistryCIDRs") or []))
    return Engine(
        kind=kind,
        version=_version(str(doc.get("ServerVersion") or "")),
        version_text=str(doc.get("ServerVersion") or "unknown"),
        os=str(doc.get("OperatingSystem") or "unknown OS"),
        kernel=kernel,
        arch=str(doc.get("Architecture") or ""),
        cgroup_version=str(doc.get("CgroupVersion") or ""),
        ncpu=int(doc.get("NCPU") or 0),
        mem_bytes=int(doc.get("MemTotal") or 0),
        data_root=data_root,
        name=str(doc.get("Name") or ""),
        local=kind in (Kind.ROOTFUL, Kind.ROOTLESS, Kind.USERNS),
        uid_map=uid_map,
        gid_map=gid_map,
        security_options=options,
        owner_uid=owner,
        insecure_registries=registries,
        client_os=client_os,
        socket=socket_path(docker_host),
        id=str(doc.get("ID") or ""),
        logging_driver=str(doc.get("LoggingDriver") or "json-file"),
    )


def _rootless_map(owner: int, sub: tuple[int, int] | None) -> tuple[IdRange, ...]:
    ranges = [IdRange(0, owner, 1)]
    if sub:
        ranges.append(IdRange(1, sub[0], sub[1]))
    return tuple(ranges)


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _primary_gid(uid: int) -> int:
    try:
        return pwd.getpwuid(uid).pw_gid
    except KeyError:
        return uid


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def unreachable_fix(docker_host: str | None) -> str:
    """How to start the engine the CLI points at."""
    path = socket_path(docker_host) or ""
    if "/run/user/" in path or "XDG_RUNTIME_DIR" in path:
        return ("start your rootless engine (`systemctl --user start docker`, or `dockerd-rootless.sh &`), "
                "then check with `docker info`")
    if path and path != "/var/run/docker.sock":
        return f"start the engine that listens on {path} (DOCKER_HOST), then check with `docker info`"
    return ("start the engine (Linux: `sudo systemctl start docker`, or your rootless engine with "
            "`systemctl --user start docker`; macOS/WSL2: start Docker Desktop), then check with `docker info`")


def unreachable_hint(output: str) -> str | None:
    """How to start the engine, when a docker or Compose command's ``output`` says it does not
    answer; None for any other failure."""
    if "Cannot connect to the Docker daemon" in output or "docker daemon running" in output:
        return unreachable_fix(None)
    return None


_CACHE: dict[tuple[str | None, str | None], Engine] = {}


def docker_config_dir() -> Path:
    """The docker CLI's configuration directory: ``$DOCKER_CONFIG``, else ``~/.docker``."""
    return Path(os.environ.get("DOCKER_CONFIG") or os.path.join(os.path.expanduser("~"), ".docker"))


def cli_endpoint() -> str | None:
    """The endpoint the ``docker`` CLI talks to, as it chooses it: ``DOCKER_HOST``, else the
    context in use (``DOCKER_CONTEXT``, or ``docker context use`` in the CLI's config.json),
    else None (the default socket). A rootless engine is often chosen by its context alone."""
    if os.environ.get("DOCKER_HOST"):
        return os.environ["DOCKER_HOST"]
    name = os.environ.get("DOCKER_CONTEXT")
    if not name:
        try:
            config = json.loads(_read(str(docker_config_dir() / "config.json")) or "{}")
            name = config.get("currentContext") if isinstance(config, dict) else None
        except ValueError:
            name = None  # the CLI reports a broken config.json itself
    if not name or name == "default":
        return None
    res = runner.run(["docker", "context", "inspect", "--format", "{{.Endpoints.docker.Host}}", str(name)],
                     timeout=30)
    return (res.stdout.strip() or None) if res.ok else None


def info(*, fresh: bool = False) -> Engine:
    """The engine the ``docker`` CLI talks to (one ``docker info`` per process)."""
    key = _cache_key()
    if fresh or key not in _CACHE:
        _CACHE[key] = from_result(runner.run(INFO_COMMAND, timeout=30))
    return _CACHE[key]


def _cache_key() -> tuple[str | None, str | None]:
    return os.environ.get("DOCKER_HOST"), os.environ.get("DOCKER_CONTEXT")


INFO_COMMAND = ("docker", "info", "--format", "{{json .}}")


def from_result(res: runner.Result) -> Engine:
    """An :class:`Engine` from a finished ``docker info --format '{{json .}}'``; raises when the
    engine did not answer (the message names why and how to start it)."""
    docker_host = cli_endpoint()
    doc = _json(res.stdout)
    errors = doc.get("ServerErrors") or []
    if not res.ok or errors or not doc.get("ServerVersion"):
        reason = (errors or res.stderr.strip().splitlines() or ["no answer"])[-1]
        raise ToolkitError(f"the Docker engine does not answer: {reason}", fix=unreachable_fix(docker_host))
    sock = socket_path(docker_host)
    owner = None
    if sock:
        try:
            owner = os.stat(sock).st_uid
        except OSError:
            owner = None
    engine = parse_info(doc, docker_host=docker_host, local_kernel=os.uname().release, local_uid=os.getuid(),
                        subuid=_read("/etc/subuid"), subgid=_read("/etc/subgid"), socket_owner=owner,
                        client_os=platform.system())
    _CACHE[_cache_key()] = engine
    return engine


def _json(text: str) -> dict:
    try:
        doc = json.loads(text or "{}")
    except json.JSONDecodeError:
        return {}
    return doc if isinstance(doc, dict) else {}


# ------------------------------------------------------------------ kernel settings and ports


#: ``docker ps`` of a Compose project, as named fields (``{{json .}}`` would make the CLI
#: compute every container's size: seconds on a vfs engine). A third of ``compose ps``'s time,
#: which loads the whole project first.
PS_FORMAT = ('{"ID":{{json .ID}},"Names":{{json .Names}},"Labels":{{json .Labels}},"State":{{json .State}},'
             '"Status":{{json .Status}},"Ports":{{json .Ports}}}')
_HEALTH = re.compile(r"\((healthy|unhealthy|health: starting)\)")
_EXIT = re.compile(r"^Exited \((-?\d+)\)")


def parse_labels(text: str) -> dict[str, str]:
    """``docker ps``'s ``Labels`` column: ``k=v,k=v`` (an item without ``=``, the tail of a
    value with a comma in it, is dropped)."""
    return dict(item.split("=", 1) for item in (text or "").split(",") if "=" in item)


def project_containers(project: str) -> list[dict]:
    """The service containers of Compose project ``project``, in ``docker compose ps --format
    json``'s terms (``Service``, ``Name``, ``ID``, ``State``, ``Health``, ``ExitCode``): not
    the ``compose run`` one-offs (which ``compose ps --all`` would list too), nor a container
    that carries the project's label but no service's."""
    res = runner.run(["docker", "ps", "--all", "--no-trunc", "--filter", f"label=com.docker.compose.project={project}",
                      "--format", PS_FORMAT], timeout=60)
    if not res.ok:
        raise ToolkitError(f"docker ps failed: {res.stderr.strip()}",
                           fix=unreachable_hint(res.stderr) or "check that the Docker engine runs (`docker info`)")
    return parse_project_containers(res.stdout)


def parse_project_containers(stdout: str) -> list[dict]:
    """:func:`project_containers` from ``docker ps --format PS_FORMAT`` lines. Health and exit
    code are read from ``Status`` ("Up 2 minutes (healthy)", "Exited (137) 5 seconds ago"):
    the CLI's ps has no field of its own for them, and that text has been stable for years."""
    out = []
    for line in stdout.splitlines():
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # not a container line (a CLI warning): the others still count
        labels = parse_labels(str(row.get("Labels", "")))
        oneoff = labels.get("com.docker.compose.oneoff", "").lower() == "true"
        if oneoff or not labels.get("com.docker.compose.service"):
            continue
        status = str(row.get("Status", ""))
        health = _HEALTH.search(status)
        code = _EXIT.match(status)
        out.append({"Service": labels.get("com.docker.compose.service", ""), "Name": str(row.get("Names", "")),
                    "ID": str(row.get("ID", "")), "State": str(row.get("State", "")),
                    "Health": health.group(1).removeprefix("health: ") if health else "",
                    "ExitCode": int(code.group(1)) if code else 0})
    return out


def parse_rfc3339(text: str) -> float | None:
    """``2026-12-03T14:11:35.814123456Z`` (the engine's times) -> epoch seconds; the zero time
    (``0001-01-01T00:00:00Z``: never happened) and anything unreadable -> None."""
    import calendar

    m = re.match(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$", text.strip())
    if not m or m.group(1) == "0001":
        return None
    y, mo, d, h, mi, sec = (int(m.group(i)) for i in range(1, 7))
    ts = calendar.timegm((y, mo, d, h, mi, sec, 0, 0, 0)) + float("0." + (m.group(7) or "0"))
    if m.group(8) != "Z":
        sign = 1 if m.group(8)[0] == "+" else -1
        ts -= sign * (int(m.group(8)[1:3]) * 3600 + int(m.group(8)[4:6]) * 60)
    return ts


def container_times(ids: Sequence[str]) -> dict[str, tuple[float | None, float | None, bool]]:
    """Container id -> (started at, finished at, running), as the engine records them."""
    if not ids:
        return {}
    res = runner.run(["docker", "inspect", "--format", "{{.Id}} {{.State.StartedAt}} {{.State.FinishedAt}} "
                      "{{.State.Running}}", *ids], timeout=60)
    out = {}
    for line in res.stdout.splitlines():
        cid, started, finished, running = (line.split() + ["", "", "", ""])[:4]
        out[cid] = (parse_rfc3339(started), parse_rfc3339(finished), running == "true")
    return out


def read_sysctl(engine: Engine, name: str, image: str | None = None) -> int | None:
    """A kernel setting as the engine's containers see it (None when it cannot be read).

    Settings such as ``vm.max_map_count`` are not namespaced: the engine's kernel decides.
    On a local engine that is this machine's kernel, read from ``/proc/sys`` directly (a
    container would cost a second); elsewhere (Docker Desktop's VM, a remote engine) a helper
    container reads it, when a helper image is given.
    """
    path = "/proc/sys/" + name.replace(".", "/")
    if engine.local:
        text = _read(path).strip()
    elif image:
        res = helper(image, f"cat {shlex.quote(path)}", [], timeout=60, check=False)
        text = res.stdout.strip() if res.ok else ""
    else:
        text = ""
    return int(text) if text.lstrip("-").isdigit() else None


def unprivileged_port_start(engine: Engine) -> int:
    """Lowest host port the engine may publish without privileges.

    Only a rootless engine publishes as an unprivileged user (rootlesskit's port driver binds
    in the host's network namespace), so only it is limited by the host's
    ``net.ipv4.ip_unprivileged_port_start``; a rootful engine binds as root.
    """
    if engine.kind != Kind.ROOTLESS:
        return 0
    value = read_sysctl(engine, "net.ipv4.ip_unprivileged_port_start")
    return DEFAULT_UNPRIVILEGED_PORT_START if value is None else value


# ------------------------------------------------------------------ helper containers


def remove_labelled(key: str, value: str) -> list[str]:
    """Force-remove every container labelled ``key=value`` (running or not); their ids."""
    res = runner.run(["docker", "ps", "-aq", "--filter", f"label={key}={value}"], timeout=60)
    ids = res.stdout.split() if res.ok else []
    if ids:
        runner.run(["docker", "rm", "-f", *ids], timeout=120)
    return ids


def helper_command(image: str, script: str, mounts: Sequence[tuple[Path, str]], *, user: str = "0:0",
                   caps: Sequence[str] = (), host_userns: bool = False, readonly: bool = False,
                   ulimits: Sequence[tuple[str, int, int]] = (), stdin: bool = False, stream: bool = False,
                   labels: Mapping[str, str] | None = None) -> list[str]:
    """``docker run`` of a short-lived helper: no network, only ``caps``, ``mounts`` bound.

    ``host_userns`` runs it in the host's user namespace (``--userns=host``), which only a
    userns-remap engine needs: its containers' root may not chown a file whose owner is not
    mapped into the remapped range (the user's own new directory). ``readonly`` mounts every
    directory read-only (a helper that only looks). ``ulimits`` are (name, soft, hard) to
    start it with (-1: unlimited): whether the engine can apply them is its own answer.
    ``stdin`` keeps its standard input open (``-i``: an archive streamed into ``tar -x``);
    ``stream``: its stdout is an archive (``tar -c``), kept out of the engine's log.
    ``labels`` mark it, so that one its client left running can be found and removed.
    """
    args = ["docker", "run", "--rm", "--network", "none", "--user", user, "--cap-drop", "ALL",
            "--security-opt", "no-new-privileges", "--entrypoint", "/bin/sh"]
    if stdin or stream:
        # An archive on stdout must not also go to the engine's log (json-file would keep a copy
        # of every byte, and keep writing it should the client die mid-stream).
        args += ["--log-driver", "none"]
    if stdin:
        args.append("-i")
    if host_userns:
        args.append("--userns=host")
    for name, soft, hard in ulimits:
        args += ["--ulimit", f"{name}={soft}:{hard}"]
    for cap in caps:
        args += ["--cap-add", cap]
    for key, value in sorted((labels or {}).items()):
        args += ["--label", f"{key}={value}"]
    for source, target in mounts:
        args += ["--mount", f"type=bind,source={source},target={target}" + (",readonly" if readonly else "")]
    return [*args, image, "-c", script]


def helper(image: str, script: str, mounts: Sequence[tuple[Path, str]], *, user: str = "0:0",
           caps: Sequence[str] = (), timeout: float = 300, check: bool = True, host_userns: bool = False,
           readonly: bool = False, ulimits: Sequence[tuple[str, int, int]] = ()) -> runner.Result:
    """Run ``script`` with ``sh`` in a helper container; with ``check``, a failure raises."""
    res = runner.run(helper_command(image, script, mounts, user=user, caps=caps, host_userns=host_userns,
                                    readonly=readonly, ulimits=ulimits), timeout=timeout)
    if check and not res.ok:
        raise helper_error(image, res)
    return res


def look_into(engine: Engine, image: str, script: str, mounts: Sequence[tuple[Path, str]]) -> tuple[str, str]:
    """(stdout, why it failed: "" when it ran) of a helper that only looks into ``mounts``:
    read-only, with CAP_DAC_READ_SEARCH alone (directories of container uids, mode 0700, are
    read as their containers see them), and on a userns-remap engine in the host's user
    namespace, so that files of unmapped owners can be read too. Never raises."""
    try:
        res = helper(image, script, mounts, caps=("DAC_READ_SEARCH",), timeout=120, check=False,
                     host_userns=engine.kind == Kind.USERNS, readonly=True)
    except ToolkitError as exc:
        return "", exc.message
    return res.stdout, "" if res.ok else helper_error(image, res).message


def helper_error(image: str, res: runner.Result) -> ToolkitError:
    text = res.stderr.strip()
    last = (text.splitlines() or [f"exit status {res.returncode}"])[-1]
    if "Unable to find image" in text or "pull access denied" in text or "manifest unknown" in text \
            or "not found" in last and "image" in text:
        return ToolkitError(
            f"the helper image {image} is not on the engine and cannot be pulled: {last}",
            where=f"{HELPER_VARIABLE} in .env",
            fix=f"`docker pull {image}` once (or `docker login` for a private registry), or set "
            f"{HELPER_VARIABLE} in .env to an image you have that provides /bin/sh, chown, chmod and rm "
            "(any busybox or Debian image)")
    if "Cannot connect to the Docker daemon" in text:
        return ToolkitError(f"the Docker engine does not answer: {last}",
                            fix=unreachable_fix(cli_endpoint()))
    return ToolkitError(f"the helper container ({image}) failed: {last}",
                        fix="check the message above; `docker run --rm " + image + " true` must work")


def uid_map_from_container(image: str, user: str = "0:0") -> tuple[tuple[IdRange, ...], tuple[IdRange, ...]]:
    """(uid map, gid map) as a container of this engine sees them: the engine's own answer."""
    res = helper(image, "cat /proc/self/uid_map; echo --; cat /proc/self/gid_map", [], user=user, timeout=120)
    uid_text, _, gid_text = res.stdout.partition("--")
    return parse_id_map(uid_text), parse_id_map(gid_text)


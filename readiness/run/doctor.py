"""``invoke doctor``: one archive that a user attaches to a bug report.

What it holds, one part each (the archive's ``index.json`` lists them, with whether each was
gathered and why not):

* ``preflight``, ``status``, ``health``, ``verify``: each task's JSON document and the text it
  prints, from the tasks' own step functions run in this process with their output captured
  (nothing re-implemented); ``health`` looks once (no ``--wait``), and each has a time bound
  (:data:`BOUNDS`): one that does not end in time is left behind and named as such;
* ``engine``: ``docker version``, ``docker info``, ``docker compose version``;
* ``model``: the rendered model (``docker compose config``, ``.env`` values interpolated);
* ``patroni``: ``GET /cluster`` of each Patroni cluster, asked inside a member as ``verify``
  asks it (the REST API is not published);
* ``diskuse``: each data directory's size and free space (:mod:`readiness.run.diskuse`) and
  ``docker system df``;
* ``logs/<service>``: each service's last ``--tail`` lines (``docker compose logs --timestamps``).

Each part is gathered on its own: one that fails (the engine is down, the stack is not
running, verify raises) becomes a ``<part>.error.txt`` saying what failed, and the bundle goes
on. The run fails only when no archive can be written.

Every byte that goes into the archive -- file contents, member names, ``index.json`` -- and
every line printed passes through :class:`readiness.run.redact.Redactor` first (the secret
values of the project and credential-shaped text; that module says what and why). Logs are
read as the runner reads every command's output: UTF-8, an undecodable byte replaced.

The archive, ``doctor-<UTC time>.tar.gz`` (mode 0600) in ``.readiness/doctor/`` (0700, ignored
by git) or ``--to``, is built in memory (its size is bounded by ``--tail``) and created
atomically: a complete temporary file in the same directory, linked to its name, which never
replaces an existing archive.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import platform
import tarfile
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from .. import output
from ..errors import ToolkitError, from_oserror
from ..stack import compose, dbfacts
from ..stack.model import Model
from ..system import engine as enginelib
from ..system import fsutil, runner
from . import diskuse
from .redact import Known, Redactor, known_values

DEFAULT_DIR = ".readiness/doctor"
#: Seconds each part may take; a part still running then is left behind, named as not gathered.
BOUNDS = {"engine": 120, "model": 120, "preflight": 180, "status": 120, "health": 90, "verify": 240,
          "patroni": 120, "diskuse": 180, "logs": 300}
#: Seconds one command may take (``docker info``, one service's logs, one ``GET /cluster``).
COMMAND_TIMEOUT = 60
#: Services whose logs are read at the same time.
LOG_WORKERS = 6
#: The Patroni REST API inside a member (Patroni's default, as ``verify`` reaches it).
PATRONI_API = "http://localhost:8008/cluster"


class Document(Protocol):
    """What a task's step returns (:class:`readiness.cli.Outcome`): its document and verdict."""

    doc: dict[str, Any]
    ok: bool


@dataclass
class Part:
    """One part of the archive: its files (name in the archive -> bytes), whether it was gathered."""

    name: str
    files: dict[str, bytes] = field(default_factory=dict)
    ok: bool = True
    error: str = ""
    seconds: float = 0.0
    #: A task document's own verdict (verify found a failure: gathered, not passed).
    passed: bool | None = None

    def as_doc(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"name": self.name, "ok": self.ok, "error": self.error, "files": sorted(self.files),
                               "seconds": round(self.seconds, 3)}
        if self.passed is not None:
            doc["passed"] = self.passed
        return doc


def failed(name: str, exc: BaseException, files: Mapping[str, bytes] | None = None) -> Part:
    """A part that could not be gathered: what failed, in ``<name>.error.txt``."""
    if isinstance(exc, OSError):
        exc = from_oserror(exc)
    if isinstance(exc, ToolkitError):
        text, message = exc.render(), exc.message
    else:  # a bug: the traceback helps the report it goes into (it holds code, not values)
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        message = f"internal error: {type(exc).__name__}: {exc}"
    return Part(name, {**(files or {}), f"{name}.error.txt": text.encode() + b"\n"}, ok=False, error=message)


def _text(res: runner.Result) -> bytes:
    """A command's output as a file: stdout, then stderr under a heading when there is any."""
    text = res.stdout + (f"\n--- stderr (exit {res.returncode})\n{res.stderr}" if res.stderr.strip() else "")
    return text.encode("utf-8", "surrogateescape")


def _first_line(res: runner.Result, what: str) -> str:
    """``what`` exited N: the first line of what it said."""
    lines = (res.stderr or res.stdout).strip().splitlines()
    return f"`{what}` exited {res.returncode}" + (f": {lines[0][:300]}" if lines else "")


# ------------------------------------------------------------------------- capturing a step's output


class _Tap:
    """The stream a step prints to while doctor gathers its document: into the buffer of the
    part whose thread prints (:attr:`target`, set and read per thread), or nowhere: a step left
    behind after its time bound cannot print into the next part's file."""

    encoding = "utf-8"

    def __init__(self) -> None:
        self._targets: dict[int, io.StringIO] = {}

    @property
    def target(self) -> io.StringIO | None:
        return self._targets.get(threading.get_ident())

    @target.setter
    def target(self, buffer: io.StringIO | None) -> None:
        if buffer is None:
            self._targets.pop(threading.get_ident(), None)
        else:
            self._targets[threading.get_ident()] = buffer

    def write(self, text: str) -> int:
        target = self.target
        if target is not None:
            target.write(text)
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


@dataclass
class Context:
    """What every part may use."""

    project: Path
    model: Model | None
    model_error: ToolkitError | None
    tail: int
    tap: _Tap = field(default_factory=_Tap)

    def need_model(self) -> Model:
        if self.model is None:
            raise self.model_error or ToolkitError("the stack's model could not be rendered")
        return self.model

    @property
    def compose_argv(self) -> tuple[str, ...]:
        return self.model.cli.argv if self.model is not None and self.model.cli else ("docker", "compose")

    def run(self, *args: str) -> runner.Result:
        """``docker compose ... args`` of this project."""
        return runner.run(compose.command(self.compose_argv, self.project, *args), cwd=self.project,
                          timeout=COMMAND_TIMEOUT)


# ------------------------------------------------------------------------- the parts


def document(ctx: Context, name: str, step: Callable[[], Document]) -> Part:
    """A task's document (``<name>.json``) and what it printed (``<name>.txt``)."""
    buffer = io.StringIO()
    ctx.tap.target = buffer
    try:
        outcome = step()
    except Exception as exc:  # noqa: BLE001 - whatever ends the step is what the part says
        return failed(name, exc, {f"{name}.txt": buffer.getvalue().encode()} if buffer.getvalue() else None)
    finally:
        ctx.tap.target = None
    files = {f"{name}.json": (json.dumps(outcome.doc, indent=2, sort_keys=True) + "\n").encode(),
             f"{name}.txt": buffer.getvalue().encode()}
    return Part(name, files, passed=bool(outcome.ok))


def engine(ctx: Context) -> Part:
    commands = {"docker version": ["docker", "version"], "docker info": ["docker", "info"],
                "docker compose version": [*ctx.compose_argv, "version"]}
    results = runner.run_many(commands, timeout=COMMAND_TIMEOUT)
    files = {f"engine/{what.replace(' ', '-')}.txt": _text(res) for what, res in results.items()}
    errors = [_first_line(res, what) for what, res in results.items() if not res.ok]
    return Part("engine", files, ok=not errors, error="; ".join(errors))


def model(ctx: Context) -> Part:
    res = ctx.run("config")
    if not res.ok:
        return Part("model", {"model/compose-config.txt": _text(res)}, ok=False,
                    error=_first_line(res, "docker compose config"))
    files = {"model/compose-config.yaml": res.stdout.encode()}
    if res.stderr.strip():
        files["model/compose-config.warnings.txt"] = res.stderr.encode()
    return Part("model", files)


def patroni(ctx: Context) -> Part:
    m = ctx.need_model()
    clusters = dbfacts.clusters(m)
    if not clusters:
        return Part("patroni", {"patroni/none.txt": b"the stack has no Patroni cluster (no service names a DCS)\n"})
    files, errors = {}, []
    for cluster in clusters:
        label = cluster.scope or "-".join(cluster.members)
        state: dict[str, Any] = {"scope": cluster.scope, "members": list(cluster.members), "asked": None,
                                 "cluster": None, "errors": []}
        for svc in cluster.members:
            try:
                res = ctx.run("exec", "-T", svc, "curl", "-fsS", "--max-time", "10", PATRONI_API)
                if not res.ok:
                    state["errors"].append(f"{svc}: {_first_line(res, 'curl ' + PATRONI_API)}")
                    continue
                state.update(asked=svc, cluster=json.loads(res.stdout))
                break
            except ToolkitError as exc:
                state["errors"].append(f"{svc}: {exc.message}")
            except ValueError as exc:
                state["errors"].append(f"{svc}: GET /cluster is not JSON: {exc}")
        files[f"patroni/{label}.json"] = (json.dumps(state, indent=2, sort_keys=True) + "\n").encode()
        if state["cluster"] is None:
            errors.append(f"{label}: no member answered GET /cluster ({'; '.join(state['errors'])})")
    return Part("patroni", files, ok=not errors, error="; ".join(errors))


def disk(ctx: Context) -> Part:
    res = runner.run(["docker", "system", "df"], timeout=COMMAND_TIMEOUT)
    files = {"diskuse/docker-system-df.txt": _text(res)}
    errors = [] if res.ok else [_first_line(res, "docker system df")]
    if ctx.model is None:
        why = ctx.model_error.message if ctx.model_error else "the stack's model could not be rendered"
        errors.append(f"data directories not measured: {why}")
    else:
        try:
            found: enginelib.Engine | None = enginelib.info()
        except ToolkitError:
            found = None
        usage = diskuse.measure(ctx.model, found)
        doc = [u.as_doc(ctx.model) for u in usage]
        files["diskuse/data.json"] = (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()
        files["diskuse/data.txt"] = (diskuse.to_text(ctx.model, usage) + "\n").encode()
    return Part("diskuse", files, ok=not errors, error="; ".join(errors))


def logs(ctx: Context) -> list[Part]:
    """One part per service: its last ``tail`` lines, with their timestamps."""
    m = ctx.need_model()

    def one(svc: str) -> Part:
        name, t0 = f"logs/{svc}", time.monotonic()
        try:
            res = ctx.run("logs", "--no-color", "--timestamps", "--tail", str(ctx.tail), svc)
        except ToolkitError as exc:
            part = failed(name, exc)
        else:
            log = {f"{name}.log": res.stdout.encode("utf-8", "surrogateescape")}
            part = Part(name, log) if res.ok else \
                failed(name, ToolkitError(_first_line(res, "docker compose logs")), log if res.stdout else None)
        part.seconds = time.monotonic() - t0
        return part

    with ThreadPoolExecutor(max_workers=LOG_WORKERS) as pool:
        return list(pool.map(one, sorted(m.services)))


# ------------------------------------------------------------------------- gathering


def guarded(ctx: Context, name: str, gather: Callable[[], Part | list[Part]], bound: float) -> list[Part]:
    """The parts ``gather`` returns; a failure, or no answer within ``bound`` seconds, as a
    failed part. Runs on a daemon thread: a part left behind cannot keep the process alive."""
    result: list[Any] = []

    def target() -> None:
        try:
            result.append(gather())
        except BaseException as exc:  # noqa: BLE001 - handed to the caller, which reports it
            result.append(exc)

    t0 = time.monotonic()
    thread = threading.Thread(target=target, name=f"doctor-{name}", daemon=True)
    thread.start()
    thread.join(bound)
    seconds = time.monotonic() - t0
    if not result:
        return [failed(name, ToolkitError(f"{name} did not finish within {bound:g} s: left behind",
                                          fix="run the task alone to see where it waits"))]
    got = result[0]
    parts = failed(name, got) if isinstance(got, BaseException) else got
    parts = parts if isinstance(parts, list) else [parts]
    for part in parts:
        part.seconds = part.seconds or seconds
    return parts


def gather(ctx: Context, documents: Mapping[str, Callable[[], Document]],
           progress: Callable[[Part], None] = lambda part: None) -> list[Part]:
    """Every part, in an order where each helps read the next: the engine, the model, the
    tasks' documents, the Patroni cluster, disk use, the logs (after verify: they show it)."""
    plan: list[tuple[str, Callable[[], Part | list[Part]]]] = [("engine", lambda: engine(ctx)),
                                                                ("model", lambda: model(ctx))]
    plan += [(name, lambda name=name, step=step: document(ctx, name, step)) for name, step in documents.items()]
    plan += [("patroni", lambda: patroni(ctx)), ("diskuse", lambda: disk(ctx)), ("logs", lambda: logs(ctx))]
    current = output.current()
    saved = (current.json, current.colour, current.out, current.err)
    current.json, current.colour, current.out, current.err = False, False, ctx.tap, ctx.tap
    parts: list[Part] = []
    try:
        for name, step in plan:
            for part in guarded(ctx, name, step, BOUNDS.get(name, 180)):
                parts.append(part)
                progress(part)
    finally:
        current.json, current.colour, current.out, current.err = saved
    return parts


# ------------------------------------------------------------------------- the archive


def resolve_dir(project: Path, to: str | None) -> Path:
    return Path(os.path.abspath(os.path.expanduser(to))) if to else project / DEFAULT_DIR


def stamp(created: float) -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(created))


def archive_bytes(top: str, members: list[tuple[str, bytes]], created: float) -> bytes:
    """A gzipped tar of ``members`` under the directory ``top``: each 0600, owned by nobody
    in particular (uid 0, no user names), dated ``created``."""
    buffer = io.BytesIO()
    directories = sorted({top, *(f"{top}/{parent}" for name, _ in members for parent in _parents(name))})
    with tarfile.open(fileobj=buffer, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
        for name in directories:
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o700, int(created)
            tar.addfile(info)
        for name, data in members:
            info = tarfile.TarInfo(f"{top}/{name}")
            info.size, info.mode, info.mtime = len(data), 0o600, int(created)
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _parents(name: str) -> list[str]:
    """``a/b/c.txt`` -> ``a``, ``a/b``."""
    parts = name.split("/")[:-1]
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


def write(directory: Path, parts: list[Part], redactor: Redactor, index: dict[str, Any], created: float) -> Path:
    """Redact every member and its name, add ``index.json`` (first), and create the archive
    atomically in ``directory`` (never over an existing one)."""
    members = [(redactor.text(name), redactor.bytes(data))
               for part in parts for name, data in sorted(part.files.items())]
    index = {**index, "parts": [p.as_doc() for p in parts]}
    index["redaction"] = {**index.get("redaction", {}), "replaced": redactor.count}
    head = [("index.json", redactor.bytes((json.dumps(index, indent=2, sort_keys=True) + "\n").encode()))]
    fsutil.ensure_dir(directory, 0o700)
    for n in range(1, 100):
        top = f"doctor-{stamp(created)}" + (f"-{n}" if n > 1 else "")
        path = directory / f"{top}.tar.gz"
        if not path.exists() and fsutil.create_exclusive(path, archive_bytes(top, head + members, created), 0o600):
            return path
    raise ToolkitError(f"no free archive name in {directory}", where=str(directory),
                       fix="remove old doctor archives from it, or choose another with --to")


def run(project: Path, load_model: Callable[[], Model], documents: Mapping[str, Callable[[], Document]], *,
        tail: int, to: str | None) -> tuple[Path, dict[str, Any]]:
    """Gather every part, write the archive; returns its path and the ``--json`` document."""
    me = dataclasses.replace(output.current())  # doctor's own lines, while the steps' are captured
    created = time.time()
    directory = resolve_dir(project, to)
    fsutil.ensure_dir(directory, 0o700)  # before the work: a place the archive cannot go fails now
    try:
        loaded: Model | None = load_model()
        model_error = None
    except ToolkitError as exc:
        loaded, model_error = None, exc
    known = known_values(project, loaded)
    redactor = Redactor.for_known(known)
    warnings = warnings_of(known)
    for line in warnings:
        me.say("doctor", redactor.text(line), "warning")
    ctx = Context(project, loaded, model_error, tail)
    me.say("doctor", f"gathering a bug-report archive for {project} (secrets redacted)")

    def progress(part: Part) -> None:
        part.error = redactor.text(part.error)
        if part.name.startswith("logs/"):  # one line for them all, below
            return
        if not part.ok:
            me.say("doctor", f"{part.name}: not gathered: {part.error}", "warning")
        else:
            verdict = "" if part.passed is None else " (its checks pass)" if part.passed else " (its checks fail)"
            me.say("doctor", f"{part.name}: gathered in {part.seconds:.1f} s{verdict}")

    parts = gather(ctx, documents, progress)
    log_parts = [p for p in parts if p.name.startswith("logs/")]
    if log_parts:
        missing = [p for p in log_parts if not p.ok]
        why = sorted({p.error for p in missing})
        me.say("doctor", f"logs: {len(log_parts) - len(missing)} of {len(log_parts)} services, last {tail} lines"
               + (f"; not gathered: {', '.join(p.name.removeprefix('logs/') for p in missing)} ({'; '.join(why[:3])})"
                  if missing else ""), "warning" if missing else None)
    index = {"created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(created)), "project_dir": str(project),
             "project": loaded.name if loaded is not None else "", "tail": tail,
             "python": platform.python_version(), "platform": platform.platform(),
             "redaction": {"marker": "[REDACTED]", "known_values": len(known.values), "short_values": known.short,
                           "unreadable": known.unreadable, "rules": "readiness/run/redact.py"}}
    path = write(directory, parts, redactor, index, created)
    size = path.stat().st_size
    gathered = sum(p.ok for p in parts)
    me.say("doctor", f"wrote {path} ({diskuse.human(size)}; {gathered} of {len(parts)} parts gathered; "
                     f"{redactor.count} secret values redacted): attach it to the bug report", "ok")
    doc = {"path": str(path), "bytes": size, "parts": [p.as_doc() for p in parts], "redacted": redactor.count,
           "warnings": [redactor.text(w) for w in warnings]}
    return path, doc


def warnings_of(known: Known) -> list[str]:
    """What the redaction cannot promise, in words (names and counts, never values)."""
    out = [f"{what}: cannot be read, so its value is not redacted" for what in known.unreadable]
    if known.short:
        out.append(f"{known.short} secret value(s) shorter than 4 characters are not redacted (see "
                   "readiness/run/redact.py)")
    return out

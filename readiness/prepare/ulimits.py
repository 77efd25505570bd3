"""Ulimits the engine can apply, asked of the engine, and the ``.env`` lines that make it so.

Why: Compose accepts any ``ulimits``, but runc applies them when it creates the container,
and raising a hard limit above the one the engine's containers inherit needs
CAP_SYS_RESOURCE. Every rootless engine lacks it, and so does a rootful one that runs in a
sandbox or a container: OpenSearch's ``memlock: -1`` then ends in "error setting rlimit type
8: operation not permitted" at ``up``, after a preflight that said nothing blocks boot.

How the engine is asked (:func:`probe`), for each service that declares ulimits:

1. one helper container started with exactly its ``--ulimit`` values (``--network none``, no
   capability, running ``true``): it starts, or runc refuses;
2. when refused, one helper started with none reads ``/proc/self/limits``: the limits every
   container of this engine gets, which are the most it grants without the capability. Each
   refused value is lowered to that hard limit (:func:`lower`);
3. one more helper, started with the lowered values, proves that they work.

The lowered values become ``.env`` lines through the variables the compose files write the
ulimits with (``soft: ${OPENSEARCH_MEMLOCK:--1}``, :func:`variables`), plus the lines the
service declares in ``x-readiness.ulimit-fallback`` for a lowered ulimit (OpenSearch:
``bootstrap.memory_lock`` off). The fix of ``engine.ulimit`` names them, and ``invoke env``
writes them into a new ``.env``.

The answers are cached in ``.readiness/cache/ulimits.json``: each helper costs a second or
more, and preflight runs in every bootstrap. The key holds the values asked, the helper
image and the engine's identity: its ID, version, kernel, kind and security options and, on
a local engine, the inode and times of its socket and of the pid file beside it, which a
restart of the daemon (perhaps with other limits) renews. ``READINESS_NO_CACHE=1`` asks every
time; an answer that is not a verdict (no helper image, an engine that does not answer) is
never kept, and then no finding is made.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ToolkitError
from ..stack import modelcache, sources
from ..stack.model import Model
from ..system import engine as enginelib
from ..system import fsutil
from ..system.engine import Engine

CACHE = ".readiness/cache/ulimits.json"
#: Answers kept in the cache (a few engines, a few sets of values), newest last.
KEEP = 32
UNLIMITED = -1
#: Docker's ulimit names -> their row in /proc/<pid>/limits (the same units as ``--ulimit``).
PROC_ROWS = {"cpu": "Max cpu time", "fsize": "Max file size", "data": "Max data size", "stack": "Max stack size",
             "core": "Max core file size", "rss": "Max resident set", "nproc": "Max processes",
             "nofile": "Max open files", "memlock": "Max locked memory", "as": "Max address space",
             "locks": "Max file locks", "sigpending": "Max pending signals", "msgqueue": "Max msgqueue size",
             "nice": "Max nice priority", "rtprio": "Max realtime priority", "rttime": "Max realtime timeout"}
#: runc's and the docker CLI's words for values the engine will not apply.
_REFUSED = re.compile(r"rlimit|ulimit", re.I)
#: A value written as exactly one variable reference: ``${NAME}``, ``${NAME:-default}``, ``$NAME``.
_ONE_VARIABLE = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)(?:[:]?[-?+][^}]*)?\}|([A-Za-z_][A-Za-z0-9_]*))")


def _value_text(value: int) -> str:
    return "unlimited" if value == UNLIMITED else str(value)


def pair_text(soft: int, hard: int) -> str:
    """``65536``, ``unlimited``, or ``1024:65536`` when soft and hard differ."""
    return _value_text(hard) if soft == hard else f"{_value_text(soft)}:{_value_text(hard)}"


@dataclass(frozen=True)
class Limit:
    """One ulimit: soft and hard values in ``--ulimit`` units (-1: unlimited)."""

    name: str
    soft: int
    hard: int

    @property
    def arg(self) -> tuple[str, int, int]:
        return self.name, self.soft, self.hard

    def text(self) -> str:
        return f"{self.name}={pair_text(self.soft, self.hard)}"


@dataclass(frozen=True)
class Verdict:
    """The engine's answer for one service's ulimits."""

    service: str
    wanted: tuple[Limit, ...]
    accepted: bool
    #: name -> (soft, hard) every container of the engine gets (read only when it refused).
    granted: dict[str, tuple[int, int]] = field(default_factory=dict)
    #: ``wanted`` with each value above what the engine grants lowered to it.
    lowered: tuple[Limit, ...] = ()
    #: Whether the engine starts a container with ``lowered``.
    lowered_ok: bool = False

    @property
    def refused(self) -> list[tuple[Limit, Limit]]:
        """(wanted, lowered) of each ulimit the engine cannot give as wanted."""
        return [(w, lo) for w, lo in zip(self.wanted, self.lowered, strict=True) if w != lo]

    def to_doc(self) -> dict[str, Any]:
        return {"service": self.service, "wanted": [list(x.arg) for x in self.wanted], "accepted": self.accepted,
                "granted": {k: list(v) for k, v in self.granted.items()},
                "lowered": [list(x.arg) for x in self.lowered], "lowered_ok": self.lowered_ok}

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Verdict:
        return cls(str(doc["service"]), tuple(Limit(str(n), int(s), int(h)) for n, s, h in doc["wanted"]),
                   bool(doc["accepted"]), {str(k): (int(v[0]), int(v[1])) for k, v in doc["granted"].items()},
                   tuple(Limit(str(n), int(s), int(h)) for n, s, h in doc["lowered"]), bool(doc["lowered_ok"]))


def _pair(value: Any) -> tuple[int, int] | None:
    """(soft, hard) of a rendered ulimit: ``{soft: 1, hard: 2}`` or a single number for both."""
    if isinstance(value, dict):
        soft, hard = value.get("soft", value.get("hard")), value.get("hard", value.get("soft"))
    else:
        soft = hard = value
    try:
        return int(soft), int(hard)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def wanted(model: Model) -> dict[str, tuple[Limit, ...]]:
    """Service -> the ulimits it declares, sorted (services without any are left out)."""
    out: dict[str, tuple[Limit, ...]] = {}
    for svc, spec in sorted(model.services.items()):
        declared = spec.get("ulimits")
        limits = []
        for name, value in sorted(declared.items()) if isinstance(declared, dict) else []:
            pair = _pair(value)
            if pair is not None:
                limits.append(Limit(str(name), *pair))
        if limits:
            out[svc] = tuple(limits)
    return out


def parse_proc_limits(text: str) -> dict[str, tuple[int, int]]:
    """``/proc/<pid>/limits`` -> {ulimit name: (soft, hard)}, -1 for unlimited."""
    out: dict[str, tuple[int, int]] = {}
    for line in text.splitlines():
        for name, row in PROC_ROWS.items():
            if not line.startswith(row + " "):
                continue
            parts = line[len(row):].split()
            values = [UNLIMITED if p == "unlimited" else int(p) if p.isdigit() else None for p in parts[:2]]
            if len(values) == 2 and None not in values:
                out[name] = (values[0], values[1])  # type: ignore[assignment]
    return out


def _above(value: int, cap: int) -> bool:
    return cap != UNLIMITED and (value == UNLIMITED or value > cap)


def lower(limit: Limit, granted_hard: int) -> Limit:
    """``limit`` with a hard value above ``granted_hard`` lowered to it, and the soft value
    kept at most the hard one (raising a soft limit up to the hard one needs no privilege)."""
    hard = granted_hard if _above(limit.hard, granted_hard) else limit.hard
    soft = hard if _above(limit.soft, hard) else limit.soft
    return Limit(limit.name, soft, hard)


# ------------------------------------------------------------------ asking the engine


def _starts(image: str, limits: tuple[Limit, ...]) -> bool | None:
    """Whether the engine starts a container with ``limits``; None when it gave no verdict."""
    try:
        res = enginelib.helper(image, "true", [], ulimits=[x.arg for x in limits], timeout=120, check=False)
    except ToolkitError:
        return None
    if res.ok:
        return True
    return False if _REFUSED.search(res.stderr) else None


def _granted(image: str) -> dict[str, tuple[int, int]] | None:
    """The limits a container of the engine gets without asking (its ``/proc/self/limits``)."""
    try:
        res = enginelib.helper(image, "cat /proc/self/limits", [], timeout=120, check=False)
    except ToolkitError:
        return None
    limits = parse_proc_limits(res.stdout) if res.ok else {}
    return limits or None


def _daemon_instance(engine: Engine) -> list[Any]:
    """What a restart of a local daemon renews: its socket and the pid file beside it."""
    if not engine.local or not engine.socket:
        return []
    out: list[Any] = []
    socket = Path(engine.socket)
    for path in (socket, socket.with_name("docker.pid")):
        try:
            st = path.stat()
        except OSError:
            out.append([str(path), None])
            continue
        out.append([str(path), st.st_ino, st.st_mtime_ns, st.st_ctime_ns])
    return out


def cache_key(engine: Engine, image: str, asked: dict[str, tuple[Limit, ...]]) -> str:
    doc = {"engine": [engine.id, engine.version_text, engine.kernel, engine.kind, list(engine.security_options),
                      _daemon_instance(engine)],
           "image": image, "asked": {svc: [list(x.arg) for x in limits] for svc, limits in asked.items()}}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def _load_cache(project_dir: Path) -> dict[str, Any]:
    try:
        doc = json.loads((project_dir / CACHE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def _save_cache(project_dir: Path, cache: dict[str, Any]) -> None:
    path = project_dir / CACHE
    kept = dict(list(cache.items())[-KEEP:])
    with contextlib.suppress(OSError, ToolkitError):  # a cache: failing to keep it costs time only
        path.parent.mkdir(parents=True, exist_ok=True)
        fsutil.atomic_write(path, (json.dumps(kept, indent=1) + "\n").encode(), 0o600)


def probe(model: Model, engine: Engine, image: str | None = None) -> dict[str, Verdict]:
    """Service -> the engine's verdict on its ulimits; empty when it gave none (see the module)."""
    asked = wanted(model)
    if not asked:
        return {}
    if image is None:
        try:
            image = model.helper_image
        except ToolkitError:
            return {}
    key = cache_key(engine, image, asked)
    cache = _load_cache(model.project_dir)
    hit = cache.get(key) if modelcache.enabled() else None
    if isinstance(hit, list):
        with contextlib.suppress(KeyError, TypeError, ValueError, IndexError):
            return {v.service: v for v in (Verdict.from_doc(doc) for doc in hit)}
    out: dict[str, Verdict] = {}
    granted: dict[str, tuple[int, int]] | None = None
    for svc, limits in asked.items():
        started = _starts(image, limits)
        if started is None:
            return {}
        if started:
            out[svc] = Verdict(svc, limits, True, lowered=limits, lowered_ok=True)
            continue
        granted = granted if granted is not None else _granted(image)
        if granted is None:
            return {}
        lowered = tuple(lower(x, granted[x.name][1]) if x.name in granted else x for x in limits)
        ok = lowered != limits and _starts(image, lowered) is True
        out[svc] = Verdict(svc, limits, False, {x.name: granted[x.name] for x in limits if x.name in granted},
                           lowered, ok)
    cache.pop(key, None)
    cache[key] = [v.to_doc() for v in out.values()]
    # The lowered values were proved too: the `.env` that carries them needs no second asking.
    if any(not v.accepted for v in out.values()) and all(v.accepted or v.lowered_ok for v in out.values()):
        granted_key = cache_key(engine, image, {svc: v.lowered for svc, v in out.items()})
        cache.pop(granted_key, None)
        cache[granted_key] = [Verdict(svc, v.lowered, True, lowered=v.lowered, lowered_ok=True).to_doc()
                              for svc, v in out.items()]
    _save_cache(model.project_dir, cache)
    return out


# ------------------------------------------------------------------ .env lines


def variables(project_dir: Path) -> dict[tuple[str, str], tuple[str | None, str | None]]:
    """(service, ulimit) -> the variables its soft and hard values are written with, from the
    compose files as written (None where the value is not exactly one variable)."""
    out: dict[tuple[str, str], tuple[str | None, str | None]] = {}
    for svc, (_, spec) in sources.raw_services(project_dir).items():
        declared = spec.get("ulimits")
        for name, value in declared.items() if isinstance(declared, dict) else []:
            soft, hard = (value.get("soft"), value.get("hard")) if isinstance(value, dict) else (value, value)
            found = [(m.group(1) or m.group(2)) if (m := _ONE_VARIABLE.fullmatch(str(v).strip())) else None
                     for v in (soft, hard)]
            out[(svc, str(name))] = (found[0], found[1])
    return out


def env_lines(model: Model, verdict: Verdict,
              written: dict[tuple[str, str], tuple[str | None, str | None]] | None = None
              ) -> tuple[dict[str, str], list[str]]:
    """The ``.env`` lines that give ``verdict.service`` what the engine grants, and the refused
    ulimits no variable sets (those need a change of the compose file)."""
    written = variables(model.project_dir) if written is None else written
    fallback = model.x(verdict.service).get("ulimit-fallback") or {}
    lines: dict[str, str] = {}
    fixed_in_file: list[str] = []
    for want, low in verdict.refused:
        soft_var, hard_var = written.get((verdict.service, want.name), (None, None))
        if soft_var and soft_var == hard_var and low.soft == low.hard:
            lines[soft_var] = str(low.hard)
        else:
            for var, old, new in ((soft_var, want.soft, low.soft), (hard_var, want.hard, low.hard)):
                if old == new:
                    continue
                if var:
                    lines[var] = str(new)
                elif low.text() not in fixed_in_file:
                    fixed_in_file.append(low.text())
        for var, value in (fallback.get(want.name) or {}).items():
            lines[str(var)] = str(value)
    return lines, fixed_in_file


def engine_limit_fix(names: list[str]) -> str:
    """How to give the engine itself higher limits, for the ulimits ``names``."""
    keys = "/".join(f"Limit{n.upper()}=" for n in names)
    return (f"give the engine a higher hard limit and restart it (a rootful dockerd: {keys} in its systemd unit, "
            "`sudo systemctl edit docker`; a rootless one: your login's limits, /etc/security/limits.conf)")

"""Preflight checks of the stack's limits against what the engine has.

* ``resources.cpus`` / ``resources.memory``: CPU and memory limits against the CPUs and memory
  of the engine;
* ``resources.heap``: a JVM heap (``-Xmx``) against its container's memory limit.
"""

from __future__ import annotations

import re
from typing import Any

from ..stack import sources
from ..stack.dbfacts import environment
from ..stack.model import Model
from ..system import hostfacts
from ..system.hostfacts import gib
from .facts import Facts
from .findings import ERROR, WARNING, Finding

#: A JVM heap above this share of its container's memory limit leaves too little for the
#: rest of the JVM (metaspace, threads, direct buffers): a warning; at the limit, an error.
HEAP_SHARE = 0.75


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
    for value in environment(spec).values():
        m = _XMX.search(value)
        if m:
            return hostfacts.parse_size(m.group(1))
    return None


def heap_variable(model: Model, svc: str) -> str | None:
    raw = sources.raw_services(model.project_dir).get(svc, ("", {}))[1]
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

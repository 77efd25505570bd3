"""``invoke verify``: prove that every service does its job, not only that it is healthy.

``invoke health`` proves containers healthy and endpoints answering. A stack can be all green
there and still not work: a cache that refuses writes, a database whose entry point is
read-only, a Grafana data source whose plugin never loaded, a Loki that drops what it is sent.
Verify makes one round trip per service through the interface its users use, with the
stack's own credentials (``secrets/``), and leaves nothing behind: every object it creates is
named ``readiness-verify-*`` and removed before it returns.

Which probe a service gets is the stack's own fact: ``x-readiness.verify.probe`` beside the
service (docs/x-readiness.md); a service without one is listed as not verified. Probes of
different kinds run concurrently; each ends in verdicts (:class:`~.core.Verdict`) that name
what was tried, what came back and the fix.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ...errors import ToolkitError
from ...stack.model import Model
from . import data, web  # noqa: F401 - the probes register themselves
from .core import PROBES, Context, Verdict, as_doc, describe

__all__ = ["PROBES", "Verdict", "kinds", "run", "to_text", "as_doc"]


def kinds(model: Model) -> dict[str, list[str]]:
    """Probe kind -> the services that ask for it, in the stack's order."""
    out: dict[str, list[str]] = {}
    for svc in sorted(model.services):
        kind = (model.x(svc).get("verify") or {}).get("probe")
        if kind:
            out.setdefault(str(kind), []).append(svc)
    return out


def unknown_kinds(model: Model) -> ToolkitError | None:
    """A what/where/fix error for the first ``x-readiness.verify.probe`` no probe answers to."""
    for kind, services in kinds(model).items():
        if kind not in PROBES:
            return ToolkitError(f"services.{services[0]}.x-readiness.verify.probe: no probe of kind {kind!r}",
                                where=f"{model.relpath(model.project_dir / 'docker-compose.yml')} and its includes",
                                fix=f"use one of: {', '.join(sorted(PROBES))} (docs/x-readiness.md)")
    return None


def run(model: Model, ca: Path, services: list[str] | None = None, *,
        since: float | None = None) -> tuple[list[Verdict], list[str]]:
    """Every probe (or those of ``services``), concurrently: (verdicts, services not verified).

    ``since`` is when the stack was (re)started, when this run follows a start.
    """
    problem = unknown_kinds(model)
    if problem:
        raise problem
    ctx = Context(model, ca, since=since)
    wanted = set(services or model.services)
    jobs = {kind: [s for s in svcs if s in wanted] for kind, svcs in kinds(model).items()}
    jobs = {kind: svcs for kind, svcs in jobs.items() if svcs}
    verified = {s for svcs in jobs.values() for s in svcs}
    with ThreadPoolExecutor(max_workers=max(1, len(jobs))) as pool:
        futures = {kind: pool.submit(PROBES[kind][0], ctx, svcs) for kind, svcs in jobs.items()}
        verdicts: list[Verdict] = []
        for kind, future in futures.items():
            try:
                verdicts += future.result()
            except Exception as exc:  # noqa: BLE001 - a probe's own bug must not hide the others' verdicts
                verdicts += [Verdict(s, "probe", False, f"the {kind} probe", describe(exc),
                                     "this is a bug in the toolkit's probe: please report it") for s in jobs[kind]]
    return sorted(verdicts, key=Verdict.sort_key), sorted(wanted - verified)


def to_text(verdicts: list[Verdict], unverified: list[str], out) -> str:
    """A table for people; each failure then gets what was tried, what came back and the fix."""
    rows = [[v.service, v.check, "ok" if v.ok else "FAILED", v.got] for v in verdicts]
    text = out.table(["SERVICE", "CHECK", "RESULT", "DETAIL"], rows, ["ok" if v.ok else "error" for v in verdicts])
    for v in (v for v in verdicts if not v.ok):
        text += out.paint(f"\n{v.service}: {v.check} failed\n", "error")
        text += f"  tried: {v.tried}\n  got:   {v.got}\n  fix:   {v.fix}\n"
    if unverified:
        text += f"\nnot verified (no x-readiness.verify): {', '.join(unverified)}\n"
    bad = sum(not v.ok for v in verdicts)
    services = len({v.service for v in verdicts})
    summary = (f"verify: {len(verdicts) - bad}/{len(verdicts)} checks pass on {services} services"
               + (f", {bad} failing" if bad else ""))
    return text + out.paint(summary, "error" if bad or not verdicts else "ok") + "\n"

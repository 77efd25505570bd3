"""Preflight: the table of checks, run on the facts gathered once.

:func:`preflight` renders the stack (or reports why it cannot), gathers the facts
(:func:`.facts.gather`) and runs every check of :data:`CHECKS`: pure functions, one module per
concern (``check_*.py``), each returning :class:`~.findings.Finding` objects. A new check is a
function in the module of its concern and a row here; nothing else changes.

Findings are de-duplicated by their data, never by their text: a finding that says what another
already says about the same variable is dropped (:data:`SUPERSEDED_BY`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path

from ..errors import ToolkitError
from ..stack import compose, sources
from ..stack.model import Model
from . import (
    check_compose,
    check_engine,
    check_env,
    check_host,
    check_network,
    check_resources,
    check_secrets,
    check_state,
    check_storage,
)
from .facts import Facts, gather
from .findings import ERROR, Finding

#: Every check, in the order its findings are collected (the output is sorted). A check takes
#: by name any of :data:`INPUTS`: the model, the facts, ``raw`` (service -> (file, definition as
#: written)) and ``files`` (service -> the compose file that defines it).
CHECKS: tuple[Callable[..., list[Finding]], ...] = (
    check_engine.check_engine,
    check_engine.check_docker_socket,
    check_env.check_env,
    check_env.check_example_credentials,
    check_secrets.check_secrets,
    check_secrets.check_certs,
    check_storage.check_dirs,
    check_network.check_networks,
    check_network.check_ports,
    check_compose.check_dollars,
    check_compose.check_images,
    check_engine.check_sysctl,
    check_state.check_baked,
    check_state.check_dcs,
    check_state.check_pg_version,
    check_network.check_project_directory,
    check_network.check_network_kind,
    check_storage.check_mounts,
    check_resources.check_resources,
    check_engine.check_ulimits,
    check_storage.check_disk,
    check_storage.check_logs,
    check_host.check_platform,
    check_host.check_desktop_sharing,
    check_host.check_selinux,
    check_host.check_wsl_drive,
    check_compose.check_compose_warnings,
)
INPUTS = ("model", "facts", "raw", "files")
#: The inputs each check asks for, read once from its signature.
_ARGUMENTS = {check: tuple(inspect.signature(check).parameters) for check in CHECKS}
#: A finding of the key's id is dropped when a finding of the value's id is about the same
#: variable: Compose warns about an unset variable that the ``$``-check already reports.
SUPERSEDED_BY: dict[str, str] = {"compose.warning": "compose.unescaped-dollar"}


def without_superseded(found: list[Finding]) -> list[Finding]:
    """``found`` without the findings :data:`SUPERSEDED_BY` says another one already covers."""
    about = {(f.id, f.variable) for f in found if f.variable}
    return [f for f in found if not (f.variable and (SUPERSEDED_BY.get(f.id), f.variable) in about)]


def run_checks(model: Model, facts: Facts) -> list[Finding]:
    """Every check of :data:`CHECKS` on ``model`` and ``facts`` (unsorted; see findings.sort)."""
    raw = sources.raw_services(model.project_dir)
    inputs = {"model": model, "facts": facts, "raw": raw, "files": {svc: file for svc, (file, _) in raw.items()}}
    found: list[Finding] = []
    for check in CHECKS:
        found += check(**{name: inputs[name] for name in _ARGUMENTS[check]})
    return without_superseded(found)


def preflight(project_dir: Path) -> list[Finding]:
    """Everything preflight reports for ``project_dir``; raises only for a toolkit failure."""
    try:
        cli = compose.detect_compose()
    except ToolkitError as exc:
        ident = "docker.cli-missing" if "Docker CLI" in exc.message else "compose.unsupported"
        return [Finding(ident, ERROR, exc.message, exc.fix or "")]
    try:
        model = compose.load(project_dir, cli, tolerate_missing=True)
    except ToolkitError as exc:
        return [Finding("compose.invalid", ERROR, exc.message, exc.fix or "", file=exc.where or "")]
    return run_checks(model, gather(model))

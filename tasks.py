"""Readiness tasks for the core stack (Invoke).

    invoke bootstrap   # env -> secrets -> certs -> dirs -> networks -> config -> preflight
    invoke up          # bootstrap, then docker compose up -d --wait
    invoke health      # every service healthy, every endpoint answering

Each task is a thin row: the work lives in ``readiness.steps``. Expected failures print one
paragraph (what, where, fix) and exit non-zero; they never print a traceback or a secret.
"""

from __future__ import annotations

import functools
import sys

from invoke import Exit, task

from readiness import steps
from readiness.errors import ToolkitError

PROJECT = steps.project_dir()


def guarded(fn):
    """Turn a ToolkitError into its message and exit code instead of a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ToolkitError as exc:
            print(exc.render(), file=sys.stderr, flush=True)
            raise Exit(code=exc.code) from None

    return wrapper


@task
@guarded
def env(c):
    """Create .env from .env.example, or add the keys it lacks; never edits a value."""
    steps.env(PROJECT)


@task(pre=[env])
@guarded
def secrets(c):
    """Create every missing file-backed secret (CSPRNG, atomic, never overwrites)."""
    steps.secrets(PROJECT)


@task(pre=[env])
@guarded
def certs(c):
    """Create or renew the mkcert TLS pair in secrets/certs/ when it is not valid."""
    steps.certificates(PROJECT)


@task(pre=[env])
@guarded
def dirs(c):
    """Create every bind-mount source directory with the owner its container needs."""
    steps.data_dirs(PROJECT)


@task(pre=[env])
@guarded
def networks(c):
    """Create every external network the stack uses."""
    steps.external_networks(PROJECT)


@task
@guarded
def lint(c):
    """yamllint (the repository's .yamllint) on every YAML file of the stack."""
    steps.lint(PROJECT)


@task(pre=[env])
@guarded
def config(c):
    """docker compose config; any warning (an unset variable, say) is a failure."""
    steps.config(PROJECT)


@task(help={"json": "print findings as JSON"})
@guarded
def preflight(c, json=False):
    """Read-only checks: exit 0 only when nothing blocks boot."""
    code = steps.run_preflight(PROJECT, as_json=json)
    if code:
        raise Exit(code=code)


@task(pre=[env, secrets, certs, dirs, networks, config, preflight])
def bootstrap(c):
    """Prepare every prerequisite of the stack, then prove it with preflight."""
    steps.say("bootstrap", "done: the stack is ready to boot (`invoke up`)")


@task(pre=[bootstrap], help={"timeout": "seconds to wait for every service to be healthy"})
@guarded
def up(c, timeout=600):
    """Bootstrap, then docker compose up -d --wait; on failure, say which service and why."""
    steps.up(PROJECT, int(timeout))


@task(help={"json": "print checks as JSON", "wait": "retry until every check passes or --timeout",
            "timeout": "seconds to wait with --wait", "interval": "longest pause between attempts (s)"})
@guarded
def health(c, json=False, wait=False, timeout=120, interval=0.5):
    """Containers healthy and every endpoint answering (HTTPS through Traefik, TCP)."""
    code = steps.run_health(PROJECT, as_json=json, wait=wait, timeout=float(timeout), interval=float(interval))
    if code:
        raise Exit(code=code)


@task(help={"volumes": "also remove named volumes (data in bind-mounted dirs is never removed)"})
@guarded
def down(c, volumes=False):
    """Stop and remove the stack's containers; keeps data and secrets."""
    steps.down(PROJECT, volumes)


@task
@guarded
def status(c):
    """State and health of every service's container."""
    code = steps.status(PROJECT)
    if code:
        raise Exit(code=code)


@task(help={"service": "the service, or `all`", "tail": "lines per service",
                                    "follow": "keep streaming"})
@guarded
def logs(c, service, tail=100, follow=False):
    """Logs of one service, or of every service: invoke logs SERVICE | invoke logs all."""
    code = steps.logs(PROJECT, service, int(tail), follow)
    if code:
        raise Exit(code=code)

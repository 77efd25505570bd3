"""Readiness tasks for the core stack (Invoke).

    invoke bootstrap   # env -> secrets -> certs -> dirs -> networks -> config -> preflight
    invoke up          # bootstrap, pull what is missing, start, wait until healthy, print the URLs
    invoke health      # every service healthy, every endpoint answering

Each task is a thin row: the work lives in ``readiness.steps`` under the task's own name.
Every task ends through ``readiness.cli.ToolkitTask``: a failure prints one paragraph (what,
where, fix) -- or one JSON document with ``--json`` -- and exits non-zero (1 a check failed,
2 usage, 127 a missing tool, 130 interrupted); never a traceback, never a secret.
"""

from __future__ import annotations

from invoke import task as invoke_task

from readiness import steps
from readiness.cli import ToolkitTask
from readiness.stack import compose

PROJECT = compose.project_dir()
JSON = {"json": "print one JSON document on stdout (schemas/ documents its shape)"}
TO = "the directory that holds the backups (default: backups/ in the project)"


def task(*args, **kwargs):
    """``@task`` with the toolkit's task class (one place for errors, exit codes and --json)."""
    return invoke_task(*args, klass=ToolkitTask, **kwargs)


@task(help={"keep": "a key whose value in .env you keep on purpose, though the repository ships another"},
      iterable=["keep"])
def env(c, keep=None):
    """Create .env from .env.example, or add the keys it lacks; never edits a value."""
    steps.env(PROJECT, tuple(keep or ()))


@task
def secrets(c):
    """Create every missing file-backed secret (CSPRNG, atomic, never overwrites)."""
    steps.env(PROJECT)
    steps.secrets(PROJECT)


@task
def certs(c):
    """Create or renew the mkcert TLS pair in secrets/certs/ when it is not valid."""
    steps.env(PROJECT)
    steps.certs(PROJECT)


@task(help={"repair": "also give existing data directories the owner their container needs"})
def dirs(c, repair=False):
    """Create every bind-mount data directory with the owner its container needs (through the engine)."""
    steps.env(PROJECT)
    steps.dirs(PROJECT, repair=repair)


@task
def networks(c):
    """Create every external network the stack uses."""
    steps.env(PROJECT)
    steps.networks(PROJECT)


@task
def lint(c):
    """yamllint (the repository's .yamllint) on every YAML file of the stack."""
    steps.lint(PROJECT)


@task
def config(c):
    """docker compose config; any warning (an unset variable, say) is a failure."""
    steps.env(PROJECT)
    steps.config(PROJECT)


@task(help=JSON)
def preflight(c, json=False):
    """Read-only checks: exit 0 only when nothing blocks boot."""
    return steps.preflight_step(PROJECT)


@task(help=JSON)
def bootstrap(c, json=False):
    """Prepare every prerequisite of the stack, then prove it with preflight."""
    return steps.bootstrap(PROJECT)


@task(help={"timeout": "seconds to wait for every service to be healthy (pulls have no limit)",
            "no-verify": "skip the closing `invoke verify`", **JSON})
def up(c, timeout=600, json=False, no_verify=False):
    """Bootstrap, pull what is missing, start, wait until healthy and verify; then say where everything lives."""
    return steps.up(PROJECT, int(timeout), verify_after=not no_verify)


@task(help={"wait": "retry until every check passes or --timeout", "timeout": "seconds to wait with --wait",
            "interval": "longest pause between attempts (s)", **JSON})
def health(c, json=False, wait=False, timeout=120, interval=0.5):
    """Containers healthy and every endpoint answering (HTTPS through Traefik, TCP)."""
    return steps.health(PROJECT, wait=wait, timeout=float(timeout), interval=float(interval))


@task(help={"service": "only this service (repeatable)", **JSON}, iterable=["service"])
def verify(c, json=False, service=None):
    """Prove every service does its job: one round trip each through its users' interface."""
    return steps.verify(PROJECT, list(service or []))


@task(help=JSON)
def status(c, json=False):
    """State and health of every service's container; each data directory's size and its filesystem's free space."""
    return steps.status(PROJECT)


@task(help=JSON)
def urls(c, json=False):
    """Where the stack lives: each service's URL, user name and password file; connection strings."""
    return steps.urls(PROJECT)


@task(help={"service": "the service, or `all`", "tail": "lines per service", "follow": "keep streaming"})
def logs(c, service, tail=100, follow=False):
    """Logs of one service, or of every service: invoke logs SERVICE | invoke logs all."""
    return steps.logs(PROJECT, service, int(tail), follow)


@task(help={"volumes": "also remove named volumes (data in bind-mounted dirs is never removed)", **JSON})
def down(c, volumes=False, json=False):
    """Stop and remove the stack's containers; keeps data and secrets."""
    return steps.down(PROJECT, volumes)


@task(help={"yes": "confirm: the data is deleted for good", "service": "only this service's data (repeatable)",
            "no-backup": "delete it though no backup holds it as it is now", "to": TO},
      iterable=["service"])
def reset(c, yes=False, service=None, no_backup=False, to=None):
    """Stop the stack and delete its data directories through the engine (no sudo); keeps secrets and .env."""
    return steps.reset(PROJECT, yes=yes, services=list(service or []), no_backup=no_backup, to=to)


@task(help={"to": TO, "only": "only this service (repeatable; also takes one skipped by default)",
            "skip": "not this service (repeatable)", **JSON}, iterable=["only", "skip"])
def backup(c, to=None, only=None, skip=None, json=False):
    """One backup of the data, .env and secrets, consistent while the stack runs; the manifest is written last."""
    return steps.backup(PROJECT, to=to, only=list(only or []), skip=list(skip or []))


@task(help={"yes": "do it: stop the stack, take a safety backup, replace the data, start again", "to": TO, **JSON})
def restore(c, path, yes=False, to=None, json=False):
    """Check every checksum of the backup at PATH and say what it replaces; with --yes, restore it."""
    return steps.restore(PROJECT, path, yes=yes, to=to)


@task(help={"to": TO, **JSON})
def backups(c, to=None, json=False):
    """The backups, with their size, age and whether their checksums still hold."""
    return steps.backups(PROJECT, to=to)


@task(help={"check": "ask each registry whether every pinned tag exists, and its digest",
            "digests": "write tag@sha256: pins into .env.example", **JSON})
def pins(c, check=False, digests=False, json=False):
    """The image pins; --check asks the registries, --digests pins each tag to its digest."""
    return steps.pins(PROJECT, check=check, digests=digests)


@task(help={"dry-run": "print the plan and write nothing, ask no registry (exit 1 only when something refuses it)",
            "yes": "apply it: backup, pull, then recreate each service in turn, proved working before the next",
            "no-backup": "do not take the fresh backup first", "timeout": "seconds each service has to be healthy",
            "to": TO, **JSON})
def upgrade(c, dry_run=False, yes=False, no_backup=False, timeout=300, to=None, json=False):
    """Move the stack to the image pins the repository ships now, one service at a time; back at the first failure."""
    return steps.upgrade(PROJECT, dry_run=dry_run, yes=yes, no_backup=no_backup, timeout=int(timeout), to=to)


@task(help={"tail": "log lines per service",
            "to": "the directory the archive goes to (default: .readiness/doctor/ in the project)", **JSON})
def doctor(c, tail=200, to=None, json=False):
    """Bug-report archive: preflight, health, verify, engine, model, status, logs, Patroni, disk; secrets redacted."""
    return steps.doctor(PROJECT, tail=tail, to=to)

"""The table of secrets/README.md, rendered from the secrets registry.

The registry is the root compose file's top-level ``secrets:``, with each secret's
``x-readiness`` policy, as :func:`readiness.prepare.secrets.specs` reads it from the model
Compose renders (``docker compose config`` needs the Compose CLI, not an engine). Each row
says who reads the secret (service and container user, as the model has them), how its value
is made, the mode the toolkit gives its file on a rootful engine -- computed with
:func:`readiness.prepare.secrets.mode_for`, the function ``invoke secrets`` uses -- which task
makes it, and whether a service bakes it into its data.

How to rotate each secret is the runbook's section 7; :func:`rotation_problems` checks that it
names every secret ``invoke secrets`` makes.
"""

from __future__ import annotations

from readiness.prepare import baked
from readiness.prepare import certs as certslib
from readiness.prepare import secrets as secretslib
from readiness.prepare.secrets import Reader, SecretSpec
from readiness.stack.model import Model
from readiness.system import engine as enginelib

from .markdown import Doc, code, section
from .table import table

#: How each charset of ``x-readiness.charset`` reads in the table.
CHARSETS = {
    "alnum": "letters and digits, the first a letter",
    "password": f"letters, digits and `{secretslib.SYMBOLS}`, at least one of each",
    "hex": "hex digits",
}
CERTIFICATES = {"cert": "mkcert leaf certificate for every routed hostname", "key": "mkcert private key"}
#: The runbook section that says how to rotate each secret.
ROTATION_SECTION = "Rotate a secret"
#: A rootful engine, as ``docker info`` describes one: the modes in the table are this engine's.
ROOTFUL = enginelib.parse_info({"ServerVersion": "26.1.5", "KernelVersion": "6.1.0", "OperatingSystem": "Debian",
                                "DockerRootDir": "/var/lib/docker", "SecurityOptions": []},
                               docker_host=None, local_kernel="6.1.0", local_uid=1000)
#: Who runs ``invoke secrets``: root, or a user no container runs as (one that does, say uid 1000
#: and Keycloak, owns the file as that container's user: 0400 would do there).
ROOT, USER = (0, 0), (4321, 4321)


def _reader(r: Reader) -> str:
    if r.uid is None:
        who = "user not declared"
    elif r.uid == 0:
        who = "root, keeps DAC_OVERRIDE" if r.dac_override else "root, no DAC_OVERRIDE"
    else:
        who = f"{r.uid}:{r.gid}"
    return f"{r.service} ({who})"


def _value(spec: SecretSpec, model: Model) -> str:
    if spec.certificate:
        return CERTIFICATES.get(spec.certificate, f"certificate: {spec.certificate}")
    if spec.charset not in CHARSETS:
        raise ValueError(f"secret {spec.name}: charset {spec.charset!r} has no words in tools/docs/secrets.py CHARSETS")
    random = f"{spec.length} random {CHARSETS[spec.charset]}"
    if spec.format == "htpasswd":
        assert spec.sidecar is not None
        return (f"`{spec.htpasswd_user}:{{SHA}}<base64 SHA-1>` of a password of {random}, kept beside it in "
                f"`{model.relpath(spec.sidecar)}` (0{secretslib.SIDECAR_MODE:o})")
    if spec.template:
        return f"`{spec.template}`, `{{value}}` being {random}"
    return random


def _mode(spec: SecretSpec) -> str:
    if spec.certificate:
        return f"{certslib.KEY_MODE if spec.certificate == 'key' else certslib.CERT_MODE:04o}"
    as_root = secretslib.mode_for(spec.readers, ROOTFUL, ROOT)
    as_user = secretslib.mode_for(spec.readers, ROOTFUL, USER)
    if as_root == as_user:
        return f"{as_root:04o}"
    return f"{as_root:04o} (invoke run as root) / {as_user:04o} (as another user)"


def render(model: Model, options: dict[str, str]) -> str:
    """One row per file secret of the registry, by name."""
    if options:
        raise ValueError(f"secrets:begin takes no option ({', '.join(sorted(options))})")
    baked_into = {b.name: b.owners for b in baked.declarations(model)}
    rows = []
    for spec in secretslib.specs(model):
        owners = baked_into.get(spec.name)
        rows.append([
            f"`{spec.name}`",
            f"`{model.relpath(spec.path)}`",
            ", ".join(_reader(r) for r in spec.readers) or "no service",
            _value(spec, model),
            _mode(spec),
            "`invoke certs`" if spec.certificate else "`invoke secrets`",
            f"yes: the data of {', '.join(owners)}" if owners else "no",
        ])
    return table(["Secret", "File", "Read by (container user)", "Value", "Host mode (rootful engine)", "Made by",
                  "Baked into data"], rows)


def rotation_problems(model: Model, runbook: Doc, label: str) -> list[str]:
    """Every secret ``invoke secrets`` makes is named (as code) in the runbook's rotation section."""
    body = section(runbook, ROTATION_SECTION)
    named = {span for _, span in code(body)}
    if not body.tokens:
        return [f"{label} has no section {ROTATION_SECTION!r}"]
    return [f"{label} section {ROTATION_SECTION!r} does not say how to rotate secret {spec.name}"
            for spec in secretslib.specs(model) if not spec.certificate and spec.name not in named]

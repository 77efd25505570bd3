"""Preflight checks of the secret files and the TLS certificate.

* ``secret.missing`` / ``secret.empty`` / ``secret.unreadable``: a file-backed secret is
  missing, empty, or not readable by a container user that mounts it (judged with the
  engine's uid mapping);
* ``secret.tracked``: git tracks a file under a secrets directory;
* ``cert.missing`` / ``cert.invalid``: the certificate pair is missing, or does not verify for
  every routed hostname (:mod:`readiness.prepare.certs`).
"""

from __future__ import annotations

from ..prepare import baked, certs
from ..prepare import secrets as secretslib
from ..stack import compose
from ..stack.model import Model
from .facts import Facts
from .findings import ERROR, Finding


def check_secrets(model: Model, facts: Facts) -> list[Finding]:
    out = []
    # a baked secret missing over existing data is secret.baked-missing (check_state), not "run invoke secrets"
    refused = {r.baked.name for r in baked.refusals(baked.declarations(model), facts.data)}
    for spec in secretslib.specs(model):
        if spec.certificate or spec.name in refused:
            continue
        rel = model.relpath(spec.path)
        service = ",".join(spec.consumers)
        if not spec.path.is_file():
            out.append(Finding("secret.missing", ERROR, f"secret {spec.name} has no file",
                               "run `invoke secrets` (creates only the missing files)", service, rel))
            continue
        if spec.path.stat().st_size == 0:
            out.append(Finding("secret.empty", ERROR, f"secret {spec.name} is empty",
                               "run `invoke secrets` (fills empty files, keeps the others)", service, rel))
            continue
        engine = facts.engine
        if engine is not None:
            st = spec.path.stat()
            for reader in spec.readers:
                if not reader.can_read(engine, (st.st_uid, st.st_gid, st.st_mode)):
                    who = f"uid {reader.uid}" if reader.uid is not None else "a container user it does not declare"
                    out.append(Finding("secret.unreadable", ERROR,
                                       f"secret {spec.name} is not readable by {who} of {reader.service} "
                                       f"({engine.kind} engine)",
                                       f"chmod {spec.mode(engine):o} {rel} (or `invoke secrets`, which sets it)",
                                       reader.service, rel))
    for path in facts.tracked_secrets:
        out.append(Finding("secret.tracked", ERROR, f"git tracks {path}",
                           f"git rm --cached {path} (then rotate that value)", file=path))
    return out


def check_certs(model: Model) -> list[Finding]:
    paths = certs.cert_paths(model)
    if paths is None:
        return []
    missing = [model.relpath(p) for p in (paths.cert, paths.key, paths.ca) if not p.is_file()]
    if missing:
        return [Finding("cert.missing", ERROR, f"missing: {', '.join(missing)}",
                        "run `invoke certs` (mkcert)", "", model.relpath(paths.cert.parent))]
    hosts = [h for h in model.all_routed_hosts if compose.PLACEHOLDER not in h]  # env.required-unset says why
    reasons = certs.problems(paths, certs.required_names(hosts))
    if reasons:
        return [Finding("cert.invalid", ERROR, "; ".join(reasons),
                        "run `invoke certs` (it regenerates the pair and keeps a backup)", "",
                        model.relpath(paths.cert))]
    return []

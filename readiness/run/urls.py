"""Where the stack lives: the URL of every routed service, how to log in, how to connect.

Printed after a successful ``invoke up`` and by ``invoke urls``. Everything comes from the
rendered model -- Traefik's ``Host()`` rules and the published HTTPS port for the URLs, the
published ports for the connection strings, and each service's ``x-readiness.login`` /
``x-readiness.connect`` for the user name and the secret that holds the password -- so a
new service shows up here by being declared, not by being added to a list. Passwords are
never printed: only the path of the file that holds each one.
"""

from __future__ import annotations

from typing import Any

from ..prepare import certs
from ..prepare import secrets as secretslib
from ..stack import ports
from ..stack.model import Model

TRUST = {
    "command": "mkcert -install",
    "note": "trusts the local CA (secrets/certs/rootCA.pem) in this machine's browsers; macOS asks for your "
            "password; on WSL2 run it on Windows too (runbook §1.3); or pass --cacert to curl",
}


def _secret_file(model: Model, name: str | None) -> str | None:
    """Where the user reads a secret's value (an htpasswd secret: the plaintext beside it)."""
    if not name:
        return None
    spec = next((s for s in secretslib.specs(model) if s.name == name), None)
    if spec is None:
        return None
    return model.relpath(spec.sidecar or spec.path)


def _user(model: Model, login: dict[str, Any]) -> str | None:
    if login.get("user"):
        return str(login["user"])
    if login.get("user-secret"):
        return f"(in {_secret_file(model, str(login['user-secret']))})"
    secret = model.secret_x(str(login.get("secret", "")))
    if secret.get("format") == "htpasswd":
        return str(secret.get("htpasswd-user", "admin"))
    return None


def describe(model: Model) -> dict[str, Any]:
    """The ``--json`` document of ``invoke urls`` (schemas/urls.schema.json)."""
    address, port = ports.https_entry(model)
    services = []
    for svc, routers in sorted(model.routers.items()):
        login = model.x(svc).get("login") or {}
        path = str(login.get("path", "/"))
        hosts = sorted({h for hs in routers.values() for h in hs})
        services.append({
            "service": svc,
            "urls": [ports.https_url(h, port, path if i == 0 else "/") for i, h in enumerate(hosts)],
            "user": _user(model, login),
            "password_file": _secret_file(model, login.get("secret")),
        })
    connections = []
    for svc in sorted(model.services):
        connect = model.x(svc).get("connect") or {}
        if not connect.get("url"):
            continue
        target = int(connect.get("port") or (model.x(svc).get("health") or {}).get("tcp") or 0)
        found = ports.published_port(model, svc, target)
        if not found:
            continue
        host = f"[{found[0]}]" if ":" in found[0] else found[0]
        connections.append({
            "service": svc,
            "url": str(connect["url"]).replace("{address}", host).replace("{port}", str(found[1])),
            "password_file": _secret_file(model, connect.get("secret")),
        })
    return {
        "ok": True,
        "https": {"address": address, "port": port},
        "services": services,
        "connections": connections,
        "ca": {"file": model.relpath(certs.root_ca(model)), **TRUST},
    }


def to_text(doc: dict[str, Any], out) -> str:
    """The table people read after ``invoke up`` (``out``: a :class:`readiness.output.Output`)."""
    rows = [[s["service"], ", ".join(s["urls"]), s["user"] or "-", s["password_file"] or "-"]
            for s in doc["services"]]
    text = out.paint("Where the stack lives", "bold") + "\n"
    text += out.table(["SERVICE", "URL", "USER", "PASSWORD FILE"], rows)
    if doc["connections"]:
        text += "\n" + out.table(["SERVICE", "CONNECT", "PASSWORD FILE"],
                                 [[c["service"], c["url"], c["password_file"] or "-"] for c in doc["connections"]])
    ca = doc["ca"]
    text += (f"\nTLS: certificates are signed by the local CA {ca['file']}; `{ca['command']}` {ca['note']}.\n")
    return text

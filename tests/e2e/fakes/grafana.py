"""Contract fake of Grafana 13 for the e2e suite (see base.py for what a contract fake is).

Follows Grafana's HTTP API (https://grafana.com/docs/grafana/latest/developers/http_api/):
``GET /api/health`` (database ok), ``GET /api/datasources/uid/:uid`` and ``/name/:name``,
and ``GET /api/datasources/uid/:uid/health``, the check the UI's "Save & test" runs, with
basic auth of the admin (``GF_SECURITY_ADMIN_USER``, the password file of
``GF_SECURITY_ADMIN_PASSWORD__FILE``). The data sources are those of the provisioning files
the stack mounts, read at start as Grafana provisions them; a health check really asks the
source, as Grafana's plugins do: Prometheus ``/api/v1/query?query=1+1``, Loki
``/loki/api/v1/labels``.

Fault file: ``/var/lib/grafana/.fault-plugin-<type>`` -- the data sources of that plugin
type fail their health check with "plugin not registered", as on Grafana 13 when the plugin
update at start fails on a read-only root (grafana/grafana#132528); health stays green.
"""

from __future__ import annotations

import glob
import json
import os
import urllib.request

from base import Response, equal, fault, secret_file

FOLDER = os.environ.get("GF_PATHS_PROVISIONING", "/etc/grafana/provisioning") + "/datasources"


def sources() -> list[dict]:
    """The data sources of the provisioning files (YAML, read as the simple documents they are)."""
    found: list[dict] = []
    for path in sorted(glob.glob(f"{FOLDER}/*.yml") + glob.glob(f"{FOLDER}/*.yaml")):
        current: dict | None = None
        with open(path, encoding="utf-8") as fh:
            lines = fh.read().splitlines()
        for raw in lines:
            line = raw.split("#", 1)[0].rstrip()
            stripped = line.strip()
            if stripped.startswith("- name:"):
                current = {"name": stripped.split(":", 1)[1].strip()}
                found.append(current)
            elif current is not None and ":" in stripped and line.startswith("    "):
                key, _, value = stripped.partition(":")
                current[key.strip()] = value.strip().strip('"')
    return found


def authorized(req) -> bool:
    creds = req.basic_auth()
    password_file = os.environ.get("GF_SECURITY_ADMIN_PASSWORD__FILE", "/run/secrets/grafana_admin_password")
    return bool(creds) and creds[0] == os.environ.get("GF_SECURITY_ADMIN_USER", "admin") \
        and equal(creds[1], secret_file(password_file))


def probe(source: dict) -> tuple[bool, str]:
    kind, url = source.get("type"), source.get("url", "").rstrip("/")
    if fault(f"/var/lib/grafana/.fault-plugin-{kind}"):
        return False, f"Plugin not registered: {kind} (plugin.notRegistered)"
    path = {"prometheus": "/api/v1/query?query=1%2B1", "loki": "/loki/api/v1/labels"}.get(kind)
    if path is None:
        return False, f"no health check for plugin {kind}"
    try:
        with urllib.request.urlopen(url + path, timeout=5) as resp:  # noqa: S310 - the stack's own network
            doc = json.load(resp)
    except (OSError, ValueError) as exc:
        return False, f"{kind} at {url}: {exc}"
    ok = doc.get("status") == "success"
    return ok, ("Successfully queried the Prometheus API." if kind == "prometheus"
                else "Data source successfully connected.") if ok else f"{kind} answered {doc}"


def handle(req):
    if req.path == "/api/health":
        return Response(200, {"commit": "fake", "database": "ok", "version": "13.2.0"})
    if not req.path.startswith("/api/datasources/"):
        return None
    if not authorized(req):
        return Response(401, {"message": "Unauthorized"})
    parts = req.path.split("/")[3:]  # ["uid", "<uid>"] or ["name", "<name>"], optional "health"
    by = {"uid": "uid", "name": "name"}.get(parts[0]) if parts else None
    match = next((s for s in sources() if by and len(parts) > 1 and s.get(by) == parts[1]), None)
    if match is None:
        return Response(404, {"message": "Data source not found"})
    if len(parts) == 2:
        return Response(200, {"uid": match.get("uid"), "name": match["name"], "type": match.get("type"),
                              "url": match.get("url")})
    if parts[2:] == ["health"]:
        ok, message = probe(match)
        return Response(200 if ok else 400, {"status": "OK" if ok else "ERROR", "message": message})
    return None

"""Probes of the services users reach over HTTPS through Traefik, with the stack's credentials.

Each request goes to ``https://<the service's host>:<HTTPS_PORT>`` as a browser or an API
client would send it, through :mod:`readiness.run.httpclient` (TLS verified against the
stack's ``rootCA.pem``). The APIs called are the services' documented ones; each probe's
docstring names the document.
"""

from __future__ import annotations

import json
import time
from typing import Any

import yaml

from ...stack import ports
from ...system.retry import poll
from .core import TIMEOUT, Context, Failed, Verdict, expect, probe, probe_each, short

#: Traefik's own answer when no router matches a request (and so not a backend's 404).
TRAEFIK_NO_ROUTE = "404 page not found"


def _answer(resp) -> str:
    body = short(resp.text, 120) if resp.text else "(no body)"
    return f"HTTP {resp.status_code}: {body}"


def _json(resp, what: str) -> Any:
    try:
        return resp.json()
    except ValueError:
        raise Failed(f"{what}: not JSON ({_answer(resp)})") from None


@probe("traefik", "every routed host over verified HTTPS, and HTTP redirected to HTTPS")
def traefik(ctx: Context, services: list[str]) -> list[Verdict]:
    """Every ``Host()`` of every router answers over HTTPS with a certificate that chains to
    the local CA and names that host; plain HTTP on the web entrypoint redirects to HTTPS."""
    out: list[Verdict] = []
    svc = services[0]
    http = ctx.published(svc, 80) if _publishes(ctx, svc, 80) else None
    for host in ctx.model.all_routed_hosts:
        url = ctx.url(host)

        def routed(url: str = url) -> str:
            resp = ctx.http.get(url, timeout=TIMEOUT, allow_redirects=False)
            expect(not (resp.status_code == 404 and resp.text.strip() == TRAEFIK_NO_ROUTE),
                   f"{_answer(resp)} (Traefik has no router for this host)",
                   "check the service's traefik.* labels and that its container runs (`invoke status`)")
            return f"TLS verified for {url.split('/')[2]}, {_answer(resp)}"

        out.append(ctx.attempt(svc, f"https {host}", f"GET {url} (certificate checked against rootCA.pem)", routed,
                               "`invoke certs` renews the certificate for every routed host; then "
                               "`docker compose restart traefik`"))
        if http is None:
            continue
        plain = f"http://{host}:{http[1]}/" if http[1] != 80 else f"http://{host}/"

        def redirected(host: str = host) -> str:
            import requests

            from ..httpclient import netloc

            resp = requests.get(f"http://{netloc(http[0])}:{http[1]}/", headers={"Host": host}, timeout=TIMEOUT,
                                allow_redirects=False)
            location = resp.headers.get("location", "")
            expect(resp.status_code in (301, 302, 307, 308) and location.startswith(f"https://{host}"),
                   f"HTTP {resp.status_code}, Location {location or '(none)'}")
            return f"HTTP {resp.status_code} to {location}"

        out.append(ctx.attempt(svc, f"http {host}", f"GET {plain}", redirected,
                               "the web entrypoint must redirect to websecure (traefik's entrypoint flags)"))
    return out


def _publishes(ctx: Context, service: str, port: int) -> bool:
    return ports.published_port(ctx.model, service, port) is not None


@probe_each("keycloak", "OIDC discovery, and an admin token by password grant")
def keycloak(ctx: Context, svc: str) -> list[Verdict]:
    """Keycloak's OpenID Connect endpoints (keycloak.org, "Securing applications: OIDC
    endpoints"): the realm's discovery document, then a token for the bootstrap admin by the
    password grant of the ``admin-cli`` client, whose session is then logged out."""
    out = []
    spec = ctx.model.x(svc).get("verify") or {}
    realm, client = str(spec.get("realm", "master")), str(spec.get("client", "admin-cli"))
    host = ctx.host(svc)
    discovery = ctx.url(host, f"/realms/{realm}/.well-known/openid-configuration")

    def discover() -> str:
        resp = ctx.http.get(discovery, timeout=TIMEOUT)
        expect(resp.status_code == 200, _answer(resp))
        doc = _json(resp, "discovery document")
        expect(doc.get("token_endpoint") and str(doc.get("issuer", "")).endswith(f"/realms/{realm}"),
               f"no token_endpoint, or issuer {doc.get('issuer')!r} is not realm {realm}'s")
        return f"issuer {doc['issuer']}"

    out.append(ctx.attempt(svc, "oidc discovery", f"GET {discovery}", discover,
                           f"`invoke logs {svc}`; KC_HOSTNAME must be the URL users reach"))

    def token() -> str:
        user, password = ctx.login(svc)
        base = ctx.url(host, f"/realms/{realm}/protocol/openid-connect")
        resp = ctx.http.post(f"{base}/token", timeout=TIMEOUT,
                             data={"grant_type": "password", "client_id": client, "username": user,
                                   "password": password})
        expect(resp.status_code == 200, _answer(resp))
        doc = _json(resp, "token response")
        expect(doc.get("access_token"), "no access_token in the answer")
        if doc.get("refresh_token"):  # end the session the grant opened
            ctx.http.post(f"{base}/logout", timeout=TIMEOUT,
                          data={"client_id": client, "refresh_token": doc["refresh_token"]})
        return f"access token for {user} ({doc.get('token_type', 'Bearer')}, expires in {doc.get('expires_in')} s)"

    out.append(ctx.attempt(svc, "admin token", f"POST the password grant of {client} in realm {realm}", token,
                           f"the admin password is set at the first start only: if {svc}'s login secret "
                           "changed since, set it back or change it in Keycloak (runbook §7)"))
    return out


@probe_each("s3", "put, get and delete an object in a probe bucket")
def s3(ctx: Context, svc: str) -> list[Verdict]:
    """The S3 API (docs.aws.amazon.com/AmazonS3/latest/API, as MinIO implements it), with the
    MinIO client library and the root credentials: a probe bucket, one object put, read back
    equal and deleted, then the bucket deleted."""
    out = []
    spec = ctx.model.x(svc).get("verify") or {}
    host = ctx.host(svc, spec.get("router"))
    bucket = ctx.name("s3")
    port = ctx.https_entry[1]

    def roundtrip() -> str:
        import io

        from minio import Minio

        user, password = ctx.login(svc)
        client = Minio(f"{host}:{port}", access_key=user, secret_key=password, secure=True, region="us-east-1",
                       http_client=ctx.pool())
        body = f"{bucket} {time.time()}".encode()
        client.make_bucket(bucket)
        try:
            client.put_object(bucket, "probe.txt", io.BytesIO(body), len(body))
            resp = client.get_object(bucket, "probe.txt")
            try:
                back = resp.read()
            finally:
                resp.close()
                resp.release_conn()
            expect(back == body, f"read back {len(back)} bytes that differ from the {len(body)} written")
            client.remove_object(bucket, "probe.txt")
        finally:
            for name in [o.object_name for o in client.list_objects(bucket, recursive=True)]:
                client.remove_object(bucket, name)
            client.remove_bucket(bucket)
        return f"{len(body)} bytes put, read back equal, deleted (bucket {bucket} removed)"

    out.append(ctx.attempt(svc, "object round trip", f"S3 put/get/delete in bucket {bucket} on {host}",
                           roundtrip, f"`invoke logs {svc}`; the keys are {svc}'s login secrets"))
    return out


@probe_each("opensearch", "cluster health, then a document indexed, found and deleted")
def opensearch(ctx: Context, svc: str) -> list[Verdict]:
    """OpenSearch's REST API (opensearch.org/docs: Cluster health, Index document, Search,
    Delete index) as the admin user: health at least yellow; a document indexed with
    ``refresh=true`` is found by a search; the probe index is deleted."""
    out = []
    host = ctx.host(svc)
    index = ctx.name("os")

    def health() -> str:
        resp = ctx.http.get(ctx.url(host, "/_cluster/health"), auth=ctx.login(svc), timeout=TIMEOUT)
        expect(resp.status_code == 200, _answer(resp))
        status = _json(resp, "cluster health").get("status")
        expect(status in ("green", "yellow"), f"cluster status {status}")
        return f"cluster status {status}"

    out.append(ctx.attempt(svc, "cluster health", f"GET {ctx.url(host, '/_cluster/health')}", health,
                           f"`invoke logs {svc}` (red: a primary shard is unassigned)"))

    def roundtrip() -> str:
        auth = ctx.login(svc)
        base = ctx.url(host, f"/{index}")
        try:
            resp = ctx.http.put(f"{base}/_doc/1?refresh=true", json={"probe": ctx.token}, auth=auth,
                                timeout=TIMEOUT)
            expect(resp.status_code in (200, 201), f"index: {_answer(resp)}")
            resp = ctx.http.post(f"{base}/_search", json={"query": {"match": {"probe": ctx.token}}},
                                 auth=auth, timeout=TIMEOUT)
            expect(resp.status_code == 200, f"search: {_answer(resp)}")
            hits = _json(resp, "search").get("hits", {}).get("total", {})
            total = hits.get("value") if isinstance(hits, dict) else hits
            expect(total == 1, f"search found {total} documents, expected the 1 just indexed")
        finally:
            resp = ctx.http.delete(base, auth=auth, timeout=TIMEOUT)
        expect(resp.status_code == 200, f"delete index: {_answer(resp)}")
        return f"indexed, found by search, index {index} deleted"

    out.append(ctx.attempt(svc, "index and search", f"index, search and delete in {index}", roundtrip,
                           f"`invoke logs {svc}`; a full disk makes indices read-only (flood stage)"))
    return out


@probe_each("prometheus", "every scrape target up, every rule group loaded without error")
def prometheus(ctx: Context, svc: str) -> list[Verdict]:
    """Prometheus' HTTP API (prometheus.io/docs/prometheus/latest/querying/api: targets,
    rules): no active target is down (one not scraped yet is reported, not failed), and the
    rule groups loaded are exactly those of the rule files, none with an evaluation error."""
    out = []
    host = ctx.host(svc)

    def targets() -> str:
        resp = ctx.http.get(ctx.url(host, "/api/v1/targets?state=active"), auth=ctx.login(svc), timeout=TIMEOUT)
        expect(resp.status_code == 200, _answer(resp))
        active = _json(resp, "targets").get("data", {}).get("activeTargets", [])
        # A target found down by a scrape before the stack (re)started is not scraped since.
        stale = [t for t in active if t.get("health") == "down" and _before(t.get("lastScrape"), ctx.since)]
        down = [f"{t.get('labels', {}).get('job')} {t.get('scrapeUrl')}: {short(t.get('lastError'), 80)}"
                for t in active if t.get("health") == "down" and t not in stale]
        expect(active and not down, "; ".join(down) or "no active target")
        pending = sum(t.get("health") == "unknown" for t in active) + len(stale)
        return f"{len(active) - pending} targets up" + (f", {pending} not scraped since the start" if pending else "")

    out.append(ctx.attempt(svc, "scrape targets", f"GET {ctx.url(host, '/api/v1/targets')}", targets,
                           "the target named is down or unreachable from Prometheus: `invoke status`"))

    def rules() -> str:
        resp = ctx.http.get(ctx.url(host, "/api/v1/rules"), auth=ctx.login(svc), timeout=TIMEOUT)
        expect(resp.status_code == 200, _answer(resp))
        groups = _json(resp, "rules").get("data", {}).get("groups", [])
        loaded = {g.get("name") for g in groups}
        wanted = _rule_groups(ctx, svc)
        expect(wanted <= loaded, f"rule groups not loaded: {', '.join(sorted(wanted - loaded))}",
               f"`invoke logs {svc}` says why a rule file was refused (`promtool check rules` finds it)")
        failing = [f"{g.get('name')}/{r.get('name')}: {short(r.get('lastError'), 80)}"
                   for g in groups for r in g.get("rules", []) if r.get("health") == "err"]
        expect(not failing, "; ".join(failing))
        count = sum(len(g.get("rules", [])) for g in groups)
        return f"{len(groups)} groups, {count} rules, no evaluation error"

    out.append(ctx.attempt(svc, "rule groups", f"GET {ctx.url(host, '/api/v1/rules')}", rules,
                           "fix the rule's expression (`promtool check rules`), then reload Prometheus"))
    return out


def _before(stamp: str | None, since: float | None) -> bool:
    """Whether an RFC 3339 time (Prometheus' ``lastScrape``, in nanoseconds) is before ``since``."""
    import re
    from datetime import datetime, timezone

    m = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)$", stamp or "")
    if since is None or not m:
        return False
    zone = timezone.utc if m.group(3) == "Z" else datetime.strptime(m.group(3), "%z").tzinfo
    moment = datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S").replace(tzinfo=zone).timestamp()
    return moment + float(m.group(2) or 0) < since


def _flag(ctx: Context, service: str, name: str, default: str) -> str:
    """The value of ``--name=value`` in the service's command (its configuration file)."""
    for arg in ctx.model.services.get(service, {}).get("command") or []:
        if str(arg).startswith(f"--{name}="):
            return str(arg).split("=", 1)[1]
    return default


def _rule_groups(ctx: Context, service: str) -> set[str]:
    """Group names of the rule files Prometheus' configuration names, read from the bind mount."""
    import glob
    from pathlib import PurePosixPath

    config = PurePosixPath(_flag(ctx, service, "config.file", "/etc/prometheus/prometheus.yml"))
    doc = yaml.safe_load(ctx.host_path(service, str(config)).read_text()) or {}
    names: set[str] = set()
    for pattern in doc.get("rule_files") or []:
        path = PurePosixPath(pattern) if str(pattern).startswith("/") else config.parent / pattern
        for file in sorted(glob.glob(str(ctx.host_path(service, str(path))))):
            with open(file, encoding="utf-8") as fh:
                names |= {g["name"] for g in (yaml.safe_load(fh) or {}).get("groups") or []}
    return names


@probe_each("alertmanager", "the configuration loaded, with the stack's receivers")
def alertmanager(ctx: Context, svc: str) -> list[Verdict]:
    """Alertmanager's API v2 (``GET /api/v2/status``, github.com/prometheus/alertmanager
    api/v2/openapi.yaml): the loaded configuration has every receiver of the stack's file."""
    out = []
    host = ctx.host(svc)

    def status() -> str:
        resp = ctx.http.get(ctx.url(host, "/api/v2/status"), auth=ctx.login(svc), timeout=TIMEOUT)
        expect(resp.status_code == 200, _answer(resp))
        original = (_json(resp, "status").get("config") or {}).get("original") or ""
        loaded = {r.get("name") for r in (yaml.safe_load(original) or {}).get("receivers") or []}
        path = ctx.host_path(svc, _flag(ctx, svc, "config.file", "/etc/alertmanager/alertmanager.yml"))
        wanted = {r.get("name") for r in (yaml.safe_load(path.read_text()) or {}).get("receivers") or []}
        expect(wanted and wanted <= loaded, f"receivers loaded: {', '.join(sorted(loaded)) or 'none'}; "
               f"the file has: {', '.join(sorted(wanted))}",
               f"Alertmanager keeps its previous configuration when the file is invalid: `invoke logs {svc}`, "
               "`amtool check-config`")
        return f"configuration loaded, receivers: {', '.join(sorted(loaded))}"

    out.append(ctx.attempt(svc, "configuration", f"GET {ctx.url(host, '/api/v2/status')}", status,
                           f"`invoke logs {svc}`"))
    return out


@probe_each("grafana", "database ok, every provisioned data source passing its health check")
def grafana(ctx: Context, svc: str) -> list[Verdict]:
    """Grafana's HTTP API (grafana.com/docs/grafana/latest/developers/http_api: ``/api/health``,
    data sources, ``GET /api/datasources/uid/:uid/health``): its database is ok, and every data
    source of the provisioning files exists and passes the health check the UI's "Save & test"
    runs (a data source whose plugin did not load fails it: ``plugin.notRegistered``)."""
    out = []
    host = ctx.host(svc)

    def health() -> str:
        resp = ctx.http.get(ctx.url(host, "/api/health"), timeout=TIMEOUT)
        expect(resp.status_code == 200, _answer(resp))
        database = _json(resp, "health").get("database")
        expect(database == "ok", f"database {database!r}")
        return "database ok"

    out.append(ctx.attempt(svc, "database", f"GET {ctx.url(host, '/api/health')}", health,
                           f"`invoke logs {svc}` (grafana.db in its data directory)"))
    for source in _provisioned_sources(ctx, svc):
        uid, name = source.get("uid"), source.get("name")

        def check(uid: str | None = uid, name: str | None = name) -> str:
            auth = ctx.login(svc)
            ref = f"uid/{uid}" if uid else f"name/{name}"
            resp = ctx.http.get(ctx.url(host, f"/api/datasources/{ref}"), auth=auth, timeout=TIMEOUT)
            expect(resp.status_code == 200, f"not registered: {_answer(resp)}")
            real_uid = _json(resp, "data source").get("uid")
            resp = ctx.http.get(ctx.url(host, f"/api/datasources/uid/{real_uid}/health"), auth=auth,
                                timeout=2 * TIMEOUT)
            doc = _json(resp, "health")
            expect(resp.status_code == 200 and str(doc.get("status", "")).upper() == "OK",
                   f"HTTP {resp.status_code}: {short(doc.get('message') or doc, 160)}")
            return short(doc.get("message") or "OK", 120)

        out.append(ctx.attempt(svc, f"data source {name}", f"GET /api/datasources/uid/{uid}/health", check,
                               f"`invoke logs {svc}`: a plugin that failed to load, or the source's URL "
                               "unreachable from Grafana"))
    return out


def _provisioned_sources(ctx: Context, service: str) -> list[dict[str, Any]]:
    """The data sources of the provisioning files the service mounts (GF_PATHS_PROVISIONING)."""
    env = ctx.model.services.get(service, {}).get("environment") or {}
    base = str(env.get("GF_PATHS_PROVISIONING", "/etc/grafana/provisioning")) + "/datasources"
    try:
        folder = ctx.host_path(service, base)
    except Failed:
        return []
    found: list[dict[str, Any]] = []
    for file in sorted([*folder.glob("*.yml"), *folder.glob("*.yaml")]):
        doc = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
        found += [d for d in doc.get("datasources") or [] if isinstance(d, dict)]
    return found


@probe_each("loki", "a probe line pushed and read back by query")
def loki(ctx: Context, svc: str) -> list[Verdict]:
    """Loki's HTTP API (grafana.com/docs/loki/latest/reference/loki-http-api: push,
    ``query_range``, log deletion): one line pushed under the labels ``job=readiness-verify``
    and a per-run ``probe`` label, read back by a query within a few seconds; then a delete
    request for it (carried out by the compactor later, as Loki deletes)."""
    out = []
    host = ctx.host(svc)

    def roundtrip() -> str:
        from tenacity import wait_fixed

        auth = ctx.login(svc)
        now = time.time_ns()
        line = f"{ctx.name()} {now}"
        stream = {"job": "readiness-verify", "probe": ctx.token}
        selector = "{" + ",".join(f'{k}="{v}"' for k, v in stream.items()) + "}"
        resp = ctx.http.post(ctx.url(host, "/loki/api/v1/push"), auth=auth, timeout=TIMEOUT,
                             data=json.dumps({"streams": [{"stream": stream, "values": [[str(now), line]]}]}),
                             headers={"Content-Type": "application/json"})
        expect(resp.status_code in (200, 204), f"push: {_answer(resp)}")

        def query() -> list[str]:
            resp = ctx.http.get(ctx.url(host, "/loki/api/v1/query_range"), auth=auth, timeout=TIMEOUT,
                                params={"query": selector, "start": str(now - 60 * 10**9),
                                        "end": str(time.time_ns() + 10**9), "limit": "10"})
            expect(resp.status_code == 200, f"query: {_answer(resp)}")
            return [v[1] for s in _json(resp, "query").get("data", {}).get("result", []) for v in s["values"]]

        seen = poll(query, lambda lines: line in lines, wait=wait_fixed(0.2), timeout=TIMEOUT)
        expect(line in seen, f"pushed line not found by {selector} within {TIMEOUT:.0f} s "
               f"({len(seen)} other lines)", f"Loki accepted the push but did not store it: `invoke logs {svc}` "
               "(ingester, disk space in its data directory)")
        ctx.http.post(ctx.url(host, "/loki/api/v1/delete"), auth=auth, timeout=TIMEOUT,
                      params={"query": selector, "start": str(now // 10**9 - 60), "end": str(now // 10**9 + 60)})
        return f"line pushed and read back by {selector}"

    out.append(ctx.attempt(svc, "push and query", f"POST {ctx.url(host, '/loki/api/v1/push')}, then query_range",
                           roundtrip, f"`invoke logs {svc}`"))
    return out

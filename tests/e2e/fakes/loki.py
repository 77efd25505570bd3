"""Contract fake of Loki 3 for the e2e suite (see base.py for what a contract fake is).

Follows Loki's HTTP API reference (https://grafana.com/docs/loki/latest/reference/loki-http-api/):
``GET /ready``, ``POST /loki/api/v1/push`` (JSON body), ``GET /loki/api/v1/query_range``
(a stream selector of exact ``label="value"`` matchers), ``GET /loki/api/v1/labels`` (what
Grafana's Loki data source asks in its health check) and ``POST /loki/api/v1/delete``. Lines
are kept in memory. No authentication: the stack's ``auth_enabled: false``, with basicAuth
at Traefik.

Fault file: ``/loki/.fault-drop-pushes`` -- pushes are answered 204 and dropped, as a Loki
whose ingester discards what it accepts would (health stays green).
"""

from __future__ import annotations

import re
import threading
import time

from base import Response, fault

STREAMS: list[tuple[dict[str, str], str, str]] = []  # (labels, ns timestamp, line)
LOCK = threading.Lock()


def selector(text: str) -> dict[str, str] | None:
    m = re.fullmatch(r"\s*\{(.*)\}\s*", text)
    if not m:
        return None
    return dict(re.findall(r'(\w+)\s*=\s*"([^"]*)"', m.group(1)))


def handle(req):
    if req.path == "/ready":
        return Response(200, "ready\n", "text/plain")
    if req.path == "/loki/api/v1/push" and req.method == "POST":
        if fault("/loki/.fault-drop-pushes"):
            return Response(204)
        doc = req.json()
        with LOCK:
            for stream in doc.get("streams", []):
                for ts, line in stream.get("values", []):
                    STREAMS.append((dict(stream.get("stream", {})), str(ts), line))
        return Response(204)
    if req.path == "/loki/api/v1/query_range" and req.method == "GET":
        wanted = selector(req.query.get("query", ""))
        if wanted is None:
            return Response(400, "parse error: not a stream selector", "text/plain")
        start = int(req.query.get("start", "0"))
        end = int(req.query.get("end", str(time.time_ns())))
        found: dict[tuple, list[list[str]]] = {}
        with LOCK:
            for labels, ts, line in STREAMS:
                if all(labels.get(k) == v for k, v in wanted.items()) and start <= int(ts) <= end:
                    found.setdefault(tuple(sorted(labels.items())), []).append([ts, line])
        result = [{"stream": dict(k), "values": v} for k, v in found.items()]
        return Response(200, {"status": "success", "data": {"resultType": "streams", "result": result}})
    if req.path == "/loki/api/v1/labels":
        with LOCK:
            names = sorted({k for labels, _, _ in STREAMS for k in labels})
        return Response(200, {"status": "success", "data": names})
    if req.path == "/loki/api/v1/delete" and req.method == "POST":
        return Response(204) if selector(req.query.get("query", "")) is not None else Response(400, "bad query")
    return None

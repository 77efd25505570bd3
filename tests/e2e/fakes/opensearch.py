"""Contract fake of OpenSearch 3 for the e2e suite (see base.py for what a contract fake is).

Follows OpenSearch's REST API (https://docs.opensearch.org/latest/api-reference/): ``GET /``,
``GET /_cluster/health``, ``PUT /<index>/_doc/<id>`` (with ``?refresh=true``: searchable at
once), ``POST /<index>/_search`` with a ``match`` query, ``DELETE /<index>``. Served over
HTTPS with a self-signed certificate (like the security plugin's demo certificates) and basic
auth of the built-in ``admin`` user, whose password the stack's wrapper passes from
``/run/secrets/opensearch_admin_password``. Documents are kept in memory; a single node, so
the cluster is ``green`` until the fault below.

Fault file: ``/usr/share/opensearch/data/.fault-red`` -- cluster health ``red`` (a primary
shard unassigned).
"""

from __future__ import annotations

import threading

from base import Response, equal, fault, secret_file

INDICES: dict[str, dict[str, dict]] = {}
LOCK = threading.Lock()
PASSWORD = "/run/secrets/opensearch_admin_password"


def handle(req):
    creds = req.basic_auth()
    if not creds or creds[0] != "admin" or not equal(creds[1], secret_file(PASSWORD)):
        return Response(401, {"error": "Unauthorized"}, headers={"WWW-Authenticate": 'Basic realm="OpenSearch"'})
    parts = [p for p in req.path.split("/") if p]
    if not parts:
        return Response(200, {"name": "opensearch", "cluster_name": "infra-core",
                              "version": {"distribution": "opensearch", "number": "3.8.0"}})
    if parts == ["_cluster", "health"]:
        status = "red" if fault("/usr/share/opensearch/data/.fault-red") else "green"
        return Response(200, {"cluster_name": "infra-core", "status": status, "number_of_nodes": 1})
    index = parts[0]
    with LOCK:
        if len(parts) == 3 and parts[1] == "_doc" and req.method in ("PUT", "POST"):
            created = parts[2] not in INDICES.setdefault(index, {})
            INDICES[index][parts[2]] = req.json()
            return Response(201 if created else 200, {"_index": index, "_id": parts[2],
                                                      "result": "created" if created else "updated"})
        if parts[1:] == ["_search"] and req.method in ("GET", "POST"):
            if index not in INDICES:
                return Response(404, {"error": {"type": "index_not_found_exception"}, "status": 404})
            match = ((req.json() or {}).get("query") or {}).get("match") or {}
            hits = [{"_index": index, "_id": i, "_source": d} for i, d in INDICES[index].items()
                    if all(str(d.get(k)) == str(v) for k, v in match.items())]
            return Response(200, {"hits": {"total": {"value": len(hits), "relation": "eq"}, "hits": hits}})
        if len(parts) == 1 and req.method == "DELETE":
            if INDICES.pop(index, None) is None:
                return Response(404, {"error": {"type": "index_not_found_exception"}, "status": 404})
            return Response(200, {"acknowledged": True})
    return None

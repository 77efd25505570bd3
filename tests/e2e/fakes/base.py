"""The server every contract fake of the end-to-end suite runs on (Python standard library only).

Keycloak, MinIO, OpenSearch, Grafana and Loki cannot be had on our machines in any form, so
the e2e stack runs, in their place, *contract fakes*: small servers that answer the documented
endpoints ``invoke verify`` and ``invoke health`` call, the way the upstream document says,
and check the credentials the stack gives them (its secrets and environment). Each fake's
docstring names the document it follows. Nothing else of the upstream program is there: a
fake proves the toolkit's side of the contract, not the service.

A fake runs in the service's own container (the stand-in image, after ``standin.sh`` has read
every secret and written every data directory), on every port the service is reached on:

    python3 /fakes/base.py KIND [http:PORT | tls:PORT]...

``tls:`` ports serve HTTPS with a self-signed certificate made when the image is built (as
OpenSearch's demo certificates are). Every port also answers ``/metrics`` in Prometheus' text
format, for the stack's scrape targets. A *fault file* in the service's data directory makes
a fake fail the way the upstream program can while its health stays green (the e2e scenarios
use them; each fake lists its own).
"""

from __future__ import annotations

import base64
import hmac
import importlib
import json
import os
import ssl
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

TLS_CERT, TLS_KEY = "/fakes/tls/cert.pem", "/fakes/tls/key.pem"
METRICS = b"# HELP readiness_fake_up 1 while the contract fake serves.\n# TYPE readiness_fake_up gauge\n" \
          b"readiness_fake_up 1\n"


class Request:
    """One request, parsed: method, path, query (first values), headers, body."""

    def __init__(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        parts = urlsplit(handler.path)
        self.method, self.path, self.raw_query = handler.command, parts.path, parts.query
        self.query = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        self.headers, self.body, self.port = handler.headers, body, handler.server.server_address[1]

    def json(self) -> Any:
        return json.loads(self.body or b"null")

    def form(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(self.body.decode(), keep_blank_values=True).items()}

    def basic_auth(self) -> tuple[str, str] | None:
        value = self.headers.get("Authorization", "")
        if not value.startswith("Basic "):
            return None
        user, _, password = base64.b64decode(value[6:]).decode().partition(":")
        return user, password


class Response:
    def __init__(self, status: int, body: Any = b"", content_type: str = "application/json",
                 headers: dict[str, str] | None = None) -> None:
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        elif isinstance(body, str):
            body = body.encode()
        self.status, self.body, self.headers = status, body, {"Content-Type": content_type, **(headers or {})}


def equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def secret_file(path: str) -> str:
    return Path(path).read_text().strip()


def fault(name: str) -> bool:
    """Whether the fault file ``name`` (an absolute path in the data directory) exists."""
    return os.path.exists(name)


def handler_class(app) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            req = Request(self, body)
            if req.path == "/metrics" and req.method == "GET":
                resp = Response(200, METRICS, "text/plain; version=0.0.4")
            else:
                try:
                    resp = app.handle(req) or Response(404, {"error": f"no such endpoint: {req.method} {req.path}"})
                except Exception as exc:  # noqa: BLE001 - a fake's bug is a 500 with its reason, as a server would
                    resp = Response(500, {"error": f"{type(exc).__name__}: {exc}"})
            self.send_response(resp.status)
            for key, value in resp.headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(resp.body)))
            self.end_headers()
            if req.method != "HEAD":
                self.wfile.write(resp.body)

        do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _serve

        def log_message(self, fmt: str, *args: Any) -> None:
            sys.stdout.write(f"fake[{app.__name__.rsplit('.', 1)[-1]}] {self.command} {self.path} {fmt % args}\n")
            sys.stdout.flush()

    return Handler


def serve(kind: str, listeners: list[str]) -> None:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    app = importlib.import_module(kind)
    handler = handler_class(app)
    servers = []
    for spec in listeners:
        scheme, _, port = spec.partition(":")
        server = ThreadingHTTPServer(("", int(port)), handler)
        if scheme == "tls":
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(TLS_CERT, TLS_KEY)
            server.socket = ctx.wrap_socket(server.socket, server_side=True)
        servers.append(server)
    print(f"fake[{kind}]: serving {' '.join(listeners)}", flush=True)
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in servers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def health(url: str) -> int:
    """The stand-in's healthcheck for a ``tls:`` port (busybox wget cannot speak to this TLS)."""
    import urllib.request

    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    try:
        urllib.request.urlopen(url, context=ctx, timeout=4)  # noqa: S310 - the container's own loopback
    except urllib.error.HTTPError:
        return 0  # an HTTP answer (401 without credentials) is an answer
    except OSError as exc:
        print(f"no answer on {url}: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    if sys.argv[1] == "health":
        sys.exit(health(sys.argv[2]))
    serve(sys.argv[1], sys.argv[2:])

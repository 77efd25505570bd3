"""HTTPS to the stack from the host, the way a user's browser reaches it, without DNS.

Every routed service is ``https://<name>.<LOCAL_DOMAIN>:<HTTPS_PORT>``, and those names need
not resolve on the host (``*.localhost`` does not with glibc's plain ``files`` lookup). The
client therefore connects to the address Traefik's port is published on, while everything
else is the user's: the URL and ``Host`` header carry the name, TLS sends it as SNI and checks
the certificate against it and against the stack's own ``rootCA.pem``.

One pool manager does that (:class:`PinnedPoolManager`), for ``requests`` (through
:func:`session`) and for any library built on urllib3 (the S3 client), so that no probe
re-implements the pinning.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import urllib3


class PinnedPoolManager(urllib3.PoolManager):
    """A urllib3 pool manager that connects every HTTPS host to ``address``.

    The pool for ``grafana.localhost:8443`` opens its sockets to ``address:8443``, sends SNI
    ``grafana.localhost`` and verifies the certificate for that name against ``ca``.
    """

    def __init__(self, address: str, ca: Path, **kwargs: Any) -> None:
        super().__init__(cert_reqs="CERT_REQUIRED", ca_certs=str(ca), **kwargs)
        self.address, self.ca = address, str(ca)

    def connection_from_host(self, host: str | None, port: int | None = None, scheme: str | None = "http",
                             pool_kwargs: dict[str, Any] | None = None):
        if scheme != "https" or not host:
            return super().connection_from_host(host, port, scheme, pool_kwargs)
        name = host.strip("[]")
        # The stack's CA, whatever the caller passes (requests would pass certifi's bundle).
        kwargs = dict(pool_kwargs or {}, server_hostname=name, assert_hostname=name, cert_reqs="CERT_REQUIRED",
                      ca_certs=self.ca)
        return super().connection_from_host(self.address, port, scheme, kwargs)

    def urlopen(self, method: str, url: str, redirect: bool = True, **kw: Any):
        # The pool's host is the address, so urllib3 would send `Host: <address>`: the name
        # (what Traefik routes by) goes in explicitly, unless the caller set it (S3 signs it).
        headers = dict(kw.pop("headers", None) or self.headers)
        if not any(k.lower() == "host" for k in headers):
            parts = urllib3.util.parse_url(url)
            if parts.scheme == "https" and parts.host:
                headers["Host"] = parts.netloc
        return super().urlopen(method, url, redirect=redirect, headers=headers, **kw)


def session(address: str, ca: Path):
    """A ``requests`` session whose HTTPS goes through a :class:`PinnedPoolManager`."""
    import requests
    from requests.adapters import HTTPAdapter

    class PinnedAdapter(HTTPAdapter):
        def init_poolmanager(self, connections: int, maxsize: int, block: bool = False, **kwargs: Any) -> None:
            self.poolmanager = PinnedPoolManager(address, ca, num_pools=connections, maxsize=maxsize, block=block)

        def add_headers(self, request, **kwargs: Any) -> None:
            # requests talks to the pool directly (not through the manager's urlopen): the name
            # goes into the Host header here, or urllib3 would send the pinned address.
            if "Host" not in request.headers:
                request.headers["Host"] = urllib3.util.parse_url(request.url).netloc

    s = requests.Session()
    s.mount("https://", PinnedAdapter(max_retries=0))
    s.verify = str(ca)
    s.trust_env = False  # a proxy variable must not divert a loopback probe
    return s


def netloc(address: str) -> str:
    """``address`` as it goes into a URL (an IPv6 address in brackets)."""
    return f"[{address}]" if ":" in address else address

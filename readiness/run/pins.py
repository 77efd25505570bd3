"""``invoke pins``: the image pins, what each registry says of them, and digests that fix them.

Three modes, one document (``schemas/pins.schema.json``):

* no flag: the pins, listed -- every image the stack runs as Compose resolves it
  (:func:`readiness.run.pull.images`), the toolkit's helper image (``x-readiness.helper-image``)
  and any other ``*_IMAGE`` of ``.env``/``.env.example`` no service runs -- with the variable
  that sets each, where, and the services that run it. No registry is asked.
* ``--check``: each registry is asked (Registry HTTP API v2, anonymously) whether every pinned
  tag exists and which digest it names. An absent tag is a failed check (exit 1), named with
  its image, variable, file and services. A registry that cannot be reached (connection
  refused, a name that does not resolve, a timeout, a TLS failure, a server that is not a
  registry) is named once; if a pin could not be checked for that reason and no check failed,
  the exit code is :data:`EXIT_UNAVAILABLE` (69, ``EX_UNAVAILABLE`` of sysexits.h), so that a
  CI job can tell "the network is down" from "a pin is wrong".
* ``--digests``: the ``*_IMAGE`` values of ``.env.example`` (what the repository ships) are
  resolved, and each tag-only value becomes ``<value>@sha256:<digest>`` (the tag stays, for
  the reader; the engine pulls the digest), so that an image cannot change under its tag. A
  value that already has a digest is checked (the registry must still have it), not
  rewritten. If any pin cannot be resolved, nothing is written. The file is rewritten
  atomically and only in the bytes of those values (read back and compared before the write);
  a second run finds nothing to change.

The query is ``HEAD /v2/<repository>/manifests/<tag or digest>`` (``GET`` when the registry
refuses ``HEAD``) with an ``Accept`` for the OCI index, the Docker manifest list, the OCI
manifest and the Docker v2 manifest, in that order: a multi-platform tag then answers with the
digest of its index, the one ``docker pull`` resolves, so a pin written here pulls on every
platform the tag had. The digest is the ``Docker-Content-Digest`` header (on a ``GET`` without
it, the sha256 of the body). A registry that wants a token answers 401 with a ``Bearer``
challenge (the distribution project's "Token Authentication Specification"); an anonymous
token for ``repository:<name>:pull`` is fetched from its realm and the request made once more.
Nothing reads the user's registry credentials: a private repository is reported as refused.
"""

from __future__ import annotations

import errno
import hashlib
import http.client
import ipaddress
import json
import os
import re
import socket
import ssl
import stat
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from .. import output
from ..enums import TextEnum
from ..errors import ToolkitError
from ..stack import envfile, sources
from ..stack.model import Model
from ..system import fsutil
from ..system.retry import poll
from . import pull

#: A registry could not be reached, so a pin is unchecked (sysexits.h's ``EX_UNAVAILABLE``).
EXIT_UNAVAILABLE = output.EXIT_UNAVAILABLE
EXIT_FAILED = output.EXIT_FAILED

#: Seconds for one connection or read; a registry is slow only in its first byte.
TIMEOUT = 5.0
#: Attempts of one request when it fails for a transient reason (a timeout, a reset, 429, 5xx).
ATTEMPTS = 3
#: The most manifest bytes read from one answer (distribution refuses manifests over 4 MiB).
MAX_MANIFEST = 4 * 1024 * 1024
#: Registries asked at once (each one's pins in turn: one token per repository, one failure per host).
PARALLEL = 8

#: What a tag may resolve to, the multi-platform kinds first: the digest of an index is what
#: ``docker pull`` resolves, and pins every platform.
MANIFEST_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)

#: Docker Hub: the name in references, and where its API answers.
DOCKER_HUB, DOCKER_HUB_API = "docker.io", "registry-1.docker.io"
#: Where Docker reads a registry's own CA (``/etc/docker/certs.d/<registry>/*.crt``).
DOCKER_CERTS = Path("/etc/docker/certs.d")

ENV, EXAMPLE = ".env", ".env.example"


# ---------------------------------------------------------------------------------- references

# The grammar of distribution's ``reference`` package (``regexp.go``), which Docker parses with.
_ALNUM = r"[a-z0-9]+"
_COMPONENT = rf"{_ALNUM}(?:(?:[._]|__|-+){_ALNUM})*"
_PATH = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = re.compile(rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")  # ASCII only, as Go's \w in Docker's grammar
_DIGEST = re.compile(r"sha256:[a-f0-9]{64}|sha384:[a-f0-9]{96}|sha512:[a-f0-9]{128}")
_NAME_MAX = 255


class BadReference(ValueError):
    """Not an image reference Docker accepts; the message says why."""


@dataclass(frozen=True)
class Reference:
    """An image reference as Docker reads it: ``busybox:1.37`` is ``docker.io``,
    ``library/busybox``, tag ``1.37``."""

    registry: str  # as references name it: docker.io, ghcr.io, 127.0.0.1:5000
    repository: str  # library/busybox, zalando/spilo-17
    tag: str | None  # "latest" when the reference names neither tag nor digest
    digest: str | None

    @property
    def host(self) -> str:
        """Where the registry's API answers (Docker Hub's is not ``docker.io``)."""
        return DOCKER_HUB_API if self.registry == DOCKER_HUB else self.registry

    @property
    def manifest(self) -> str:
        """What ``/manifests/<...>`` names: the digest when pinned (what the engine pulls), else the tag."""
        return self.digest or self.tag or "latest"

    @property
    def loopback(self) -> bool:
        return is_loopback(self.registry)


def parse_reference(ref: str) -> Reference:
    """``ref`` split as Docker splits it (``reference.ParseNormalizedNamed``); BadReference if invalid.

    The first path component is the registry when it has a ``.`` or a ``:``, is ``localhost``
    or has an upper-case letter; otherwise the registry is Docker Hub, where a name of one
    component lives under ``library/``. ``name:tag@sha256:...`` keeps both (the engine pulls
    the digest and ignores the tag).
    """
    if not ref or ref != ref.strip():
        raise BadReference("empty, or surrounded by blanks")
    name, _, digest = ref.partition("@")
    if "@" in ref and not _DIGEST.fullmatch(digest):
        raise BadReference(f"the digest {digest!r} is not sha256:<64 lowercase hex digits>")
    tag = None
    slash, colon = name.rfind("/"), name.rfind(":")
    if colon > slash:
        name, tag = name[:colon], name[colon + 1:]
        if not _TAG.fullmatch(tag):
            raise BadReference(f"the tag {tag!r} is not a valid tag (letters, digits, _ . -; at most 128)")
    if len(name) > _NAME_MAX:
        raise BadReference(f"the name is longer than {_NAME_MAX} characters")
    first, sep, rest = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost" or first.lower() != first):
        registry, path = first, rest
        if not _DOMAIN.fullmatch(registry):
            raise BadReference(f"the registry {registry!r} is not a host name or address (with an optional port)")
    else:
        registry, path = DOCKER_HUB, name
    if registry == "index.docker.io":
        registry = DOCKER_HUB
    if registry == DOCKER_HUB and "/" not in path:
        path = f"library/{path}"
    if not _PATH.fullmatch(path):
        raise BadReference(f"the repository {path!r} is not valid (lowercase letters, digits and . _ - between them)")
    if tag is None and not digest:
        tag = "latest"
    return Reference(registry, path, tag, digest or None)


def _host(registry: str) -> str:
    """The host part of ``registry`` (no port, no brackets)."""
    if registry.startswith("["):
        return registry[1:].split("]", 1)[0]
    return registry.rsplit(":", 1)[0] if registry.count(":") == 1 else registry


def is_loopback(registry: str) -> bool:
    """Whether ``registry`` is this machine: ``localhost``, 127.0.0.0/8 or ``::1`` (with any port)."""
    host = _host(registry)
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# ---------------------------------------------------------------------------------- WWW-Authenticate

@dataclass(frozen=True)
class Challenge:
    scheme: str  # lower case: "bearer", "basic"
    params: dict[str, str] = field(default_factory=dict)


_CHALLENGE_PARAM = re.compile(r'([A-Za-z0-9_.-]+)[ \t]*=[ \t]*("(?:[^"\\]|\\.)*"|[^\s,"]*)')
_CHALLENGE_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]*")


def parse_challenges(header: str) -> list[Challenge]:
    """The challenges of a ``WWW-Authenticate`` value: RFC 9110's ``auth-scheme 1*SP auth-param``,
    several challenges separated by commas; a quoted value may hold commas and ``\\"``. An item
    ``name=value`` is a parameter of the challenge before it; a bare name starts a new one."""
    out: list[Challenge] = []
    i, n = 0, len(header)
    while i < n:
        if header[i] in ", \t":
            i += 1
            continue
        p = _CHALLENGE_PARAM.match(header, i)
        if p and out:
            value = p.group(2)
            if value.startswith('"'):
                value = re.sub(r"\\(.)", r"\1", value[1:-1])
            out[-1].params[p.group(1).lower()] = value
            i = p.end()
            continue
        m = _CHALLENGE_SCHEME.match(header, i)
        if not m:
            break  # not a header this parser understands: what was read so far stands
        out.append(Challenge(m.group(0).lower(), {}))
        i = m.end()
    return out


def bearer(header: str) -> Challenge | None:
    """The ``Bearer`` challenge of a ``WWW-Authenticate`` value that has one with a realm."""
    return next((c for c in parse_challenges(header) if c.scheme == "bearer" and c.params.get("realm")), None)


# ---------------------------------------------------------------------------------- the registry client

class Status(TextEnum):
    """What became of one pin."""

    LISTED = "listed"  # not asked (no --check, no --digests)
    PRESENT = "present"
    ABSENT = "absent"  # the registry says the tag (or digest) does not exist
    DENIED = "denied"  # the registry refused an anonymous read (a private repository, or none by that name)
    INVALID = "invalid"  # not a reference Docker accepts
    ERROR = "error"  # the registry answered something else
    UNREACHABLE = "unreachable"  # its registry could not be reached
    SKIPPED = "skipped"  # the value uses $VAR, which only Compose resolves


#: Statuses that fail a check (exit 1); UNREACHABLE fails with EXIT_UNAVAILABLE unless one of these occurs.
FAILED = frozenset({Status.ABSENT, Status.DENIED, Status.INVALID, Status.ERROR})


@dataclass(frozen=True)
class Answer:
    status: Status
    digest: str | None = None
    detail: str = ""


class Unreachable(Exception):
    """The registry (or its token service) cannot be reached; the message says why."""


@dataclass
class _Response:
    status: int
    headers: Any  # email.message.Message: case-insensitive .get()
    body: bytes
    url: str


@dataclass
class _Failure:
    """A request that got no HTTP answer (or a transient one)."""

    reason: str
    transient: bool


_TRANSIENT_STATUS = frozenset({429, 500, 502, 503, 504})


def _failure(exc: BaseException, host: str) -> _Failure:
    """What a failed connection means, in words, and whether another attempt may help."""
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if isinstance(reason, ssl.SSLCertVerificationError):
        why = getattr(reason, "verify_message", None) or reason
        return _Failure(f"TLS: the certificate of {host} is not trusted ({why})", False)
    if isinstance(reason, ssl.SSLError):
        return _Failure(f"TLS: {getattr(reason, 'reason', None) or reason}", False)
    if isinstance(reason, socket.gaierror):
        if reason.errno == socket.EAI_AGAIN:
            return _Failure(f"the name {_host(host)} cannot be resolved now (temporary DNS failure)", True)
        return _Failure(f"the name {_host(host)} does not resolve ({reason.strerror})", False)
    if isinstance(reason, (TimeoutError, socket.timeout)):
        return _Failure(f"no answer within {TIMEOUT:.0f} s (timed out)", True)
    if isinstance(reason, ConnectionRefusedError):
        return _Failure("connection refused (nothing listens there)", False)
    if isinstance(reason, (ConnectionResetError, ConnectionAbortedError, http.client.RemoteDisconnected,
                           http.client.IncompleteRead, BrokenPipeError)):
        return _Failure(f"the connection was dropped ({type(reason).__name__})", True)
    if isinstance(reason, OSError) and reason.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
        return _Failure(f"no route to {_host(host)} ({reason.strerror})", False)
    if isinstance(reason, OSError):
        return _Failure(reason.strerror or str(reason), False)
    return _Failure(f"{type(reason).__name__}: {reason}", False)


def _no_proxy(url: str) -> bool:
    """Loopback never goes through a proxy: Docker's Go client never proxies it either, and a
    proxy on another machine could not reach this one's registry."""
    return is_loopback(urllib.parse.urlsplit(url).netloc)


def _ssl_context(registry: str, verify: bool) -> ssl.SSLContext:
    """The system's CAs (``SSL_CERT_FILE`` honoured), plus the registry's own CA where Docker
    reads it (``/etc/docker/certs.d/<registry>/*.crt``); ``verify=False`` for a loopback
    registry, which the engine treats as insecure too."""
    ctx = ssl.create_default_context()
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    try:
        for crt in sorted((DOCKER_CERTS / registry).glob("*.crt")):
            ctx.load_verify_locations(cafile=str(crt))
    except (OSError, ssl.SSLError):
        pass  # an unreadable file: the system's store still decides
    return ctx


class _Redirect(urllib.request.HTTPRedirectHandler):
    """Redirects as urllib follows them, but a token never goes to another host (as in Go's client)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and urllib.parse.urlsplit(newurl).netloc != urllib.parse.urlsplit(req.full_url).netloc:
            new.remove_header("Authorization")
        return new


def _opener(context: ssl.SSLContext, proxy: bool) -> urllib.request.OpenerDirector:
    """http and https only (no ``file:``, no ``ftp:``: a realm or a redirect is the registry's to
    name), proxies from the environment unless ``proxy`` is False."""
    opener = urllib.request.OpenerDirector()
    for handler in (urllib.request.ProxyHandler() if proxy else urllib.request.ProxyHandler({}),
                    urllib.request.HTTPHandler(), urllib.request.HTTPSHandler(context=context),
                    urllib.request.HTTPDefaultErrorHandler(), _Redirect(), urllib.request.HTTPErrorProcessor()):
        opener.add_handler(handler)
    return opener


class RegistryClient:
    """One registry's API, asked by one thread: its scheme, its tokens, whether it answers.

    The scheme is https. A loopback registry (127.0.0.0/8, ``::1``, ``localhost``) is tried
    over https without verifying its certificate, then over plain http: that is what the
    engine does with the registries it treats as insecure, and it treats loopback as insecure
    by default (``insecure-registries`` always holds 127.0.0.0/8), so ``docker pull
    127.0.0.1:5000/x`` works against a plain-http registry, as the e2e suite's does. Proxies
    are used as urllib uses them (``HTTPS_PROXY``, ``NO_PROXY``...), never for loopback.
    """

    def __init__(self, registry: str, host: str, timeout: float = TIMEOUT, attempts: int = ATTEMPTS) -> None:
        self.registry, self.host = registry, host
        self.timeout, self.attempts = timeout, attempts
        self.loopback = is_loopback(host)
        self.schemes = ["https", "http"] if self.loopback else ["https"]
        self.scheme: str | None = None  # known once /v2/ answered
        self.tried = self.schemes[0]  # the scheme of the last attempt (what an unreachable registry reports)
        self.challenge: Challenge | None = None  # the Bearer challenge of /v2/, if it asked for one
        self.tokens: dict[str, str] = {}  # repository -> anonymous token
        self.unreachable: str | None = None
        context = _ssl_context(registry, verify=not self.loopback)
        self.openers = {proxy: _opener(context, proxy) for proxy in (True, False)}

    @property
    def endpoint(self) -> str:
        return f"{self.scheme or self.tried}://{self.host}"

    # ---------------------------------------------------------------- one exchange

    def _once(self, method: str, url: str, headers: dict[str, str]) -> _Response | _Failure:
        opener = self.openers[not _no_proxy(url)]
        request = urllib.request.Request(url, method=method, headers={"User-Agent": "readiness-pins", **headers})
        try:
            with opener.open(request, timeout=self.timeout) as resp:
                body = resp.read(MAX_MANIFEST + 1) if method == "GET" else b""
                return _Response(resp.status, resp.headers, body, resp.geturl())
        except urllib.error.HTTPError as exc:
            try:
                body = exc.read(64 * 1024) if method == "GET" else b""
            except (OSError, http.client.HTTPException):
                body = b""
            return _Response(exc.code, exc.headers, body, url)
        except (OSError, http.client.HTTPException, ValueError) as exc:
            return _failure(exc, urllib.parse.urlsplit(url).netloc)

    def _send(self, method: str, url: str, headers: dict[str, str]) -> _Response | _Failure:
        """One request, tried again (up to ``attempts``) while it fails for a transient reason."""
        from tenacity import wait_incrementing

        def transient(result: _Response | _Failure) -> bool:
            if isinstance(result, _Failure):
                return result.transient
            return result.status in _TRANSIENT_STATUS

        return poll(lambda: self._once(method, url, headers), lambda r: not transient(r), attempts=self.attempts,
                    wait=wait_incrementing(start=0.5, increment=1.0))

    # ---------------------------------------------------------------- the API

    def ping(self) -> None:
        """``GET /v2/``: which scheme answers, and the challenge if it wants a token; Unreachable else."""
        if self.scheme is not None:
            return
        if self.unreachable is not None:
            raise Unreachable(self.unreachable)
        why = ""
        for scheme in self.schemes:
            self.tried = scheme
            result = self._send("GET", f"{scheme}://{self.host}/v2/", {})
            if isinstance(result, _Failure):
                why = result.reason
                continue
            if result.status in _TRANSIENT_STATUS:
                why = f"it answers {result.status} {_reason(result.status)} (tried {self.attempts} times)"
                break
            api = (result.headers.get("Docker-Distribution-Api-Version") or "").lower()
            if result.status not in (200, 401, 403) and "registry/2" not in api:
                why = (f"{scheme}://{self.host}/v2/ answers {result.status} {_reason(result.status)}: "
                       f"not a registry (Registry HTTP API v2)")
                continue
            self.scheme = scheme
            if result.status == 401:
                self.challenge = bearer(result.headers.get("WWW-Authenticate") or "")
            return
        self.unreachable = why or "no answer"
        raise Unreachable(self.unreachable)

    def _token(self, challenge: Challenge, repository: str) -> str:
        """An anonymous pull token for ``repository`` from the challenge's realm."""
        query = {"scope": f"repository:{repository}:pull"}
        if challenge.params.get("service"):
            query = {"service": challenge.params["service"], **query}
        realm = challenge.params["realm"]
        if urllib.parse.urlsplit(realm).scheme not in ("http", "https"):
            raise _Refused(f"its token realm {realm!r} is not an http(s) URL")
        url = realm + ("&" if "?" in realm else "?") + urllib.parse.urlencode(query)
        result = self._send("GET", url, {"Accept": "application/json"})
        where = urllib.parse.urlsplit(realm).netloc or realm
        if isinstance(result, _Failure):
            self.unreachable = f"its token service {where} cannot be reached: {result.reason}"
            raise Unreachable(self.unreachable)
        if result.status in (401, 403):
            raise _Refused(f"its token service {where} refuses an anonymous token "
                           f"({result.status} {_reason(result.status)})")
        if result.status != 200:
            raise _Refused(f"its token service {where} answers {result.status} {_reason(result.status)}")
        try:
            doc = json.loads(result.body.decode("utf-8"))
            token = doc.get("token") or doc.get("access_token")
        except (ValueError, AttributeError):
            token = None
        if not isinstance(token, str) or not token:
            raise _Refused(f"its token service {where} answered without a token")
        self.tokens[repository] = token
        return token

    def _authorised(self, method: str, path: str, repository: str, headers: dict[str, str]) -> _Response | _Failure:
        """``method path`` with the repository's token (fetched first when /v2/ asked for one),
        and once more with a fresh token if the registry answers 401 with a Bearer challenge."""
        url = f"{self.scheme}://{self.host}{path}"
        token = self.tokens.get(repository)
        if token is None and self.challenge is not None:
            token = self._token(self.challenge, repository)
        result = self._send(method, url, {**headers, **({"Authorization": f"Bearer {token}"} if token else {})})
        if isinstance(result, _Response) and result.status == 401:
            challenge = bearer(result.headers.get("WWW-Authenticate") or "")
            if challenge is not None:
                token = self._token(challenge, repository)
                result = self._send(method, url, {**headers, "Authorization": f"Bearer {token}"})
        return result

    def manifest(self, ref: Reference) -> Answer:
        """Whether the registry has ``ref``'s tag (or digest), and the digest it names."""
        try:
            self.ping()
            path = f"/v2/{ref.repository}/manifests/{ref.manifest}"
            accept = {"Accept": ", ".join(MANIFEST_TYPES)}
            result = self._authorised("HEAD", path, ref.repository, accept)
            if isinstance(result, _Response) and (result.status in (405, 501) or (
                    result.status == 200 and not result.headers.get("Docker-Content-Digest"))):
                result = self._authorised("GET", path, ref.repository, accept)
        except _Refused as exc:
            return Answer(Status.DENIED, detail=str(exc))
        if isinstance(result, _Failure):
            self.unreachable = result.reason
            raise Unreachable(result.reason)
        return self._judge(ref, result)

    def _judge(self, ref: Reference, result: _Response) -> Answer:
        what = f"manifest {ref.digest}" if ref.digest else f"tag {ref.tag}"
        if result.status == 200:
            digest = (result.headers.get("Docker-Content-Digest") or "").strip()
            if not digest and len(result.body) > MAX_MANIFEST:
                return Answer(Status.ERROR, detail=f"the manifest is larger than {MAX_MANIFEST} bytes")
            if not digest:
                digest = "sha256:" + hashlib.sha256(result.body).hexdigest()
            if not _DIGEST.fullmatch(digest):
                return Answer(Status.ERROR, detail=f"the registry names the digest {digest!r}, which is not one")
            if ref.digest and digest != ref.digest:
                return Answer(Status.ERROR, detail=f"asked for {ref.digest}, the registry answered {digest}")
            return Answer(Status.PRESENT, digest)
        codes = _error_codes(result.body)
        if result.status == 404:
            if "NAME_UNKNOWN" in codes:
                return Answer(Status.ABSENT, detail=f"{self.registry} has no repository {ref.repository}")
            return Answer(Status.ABSENT, detail=f"{self.registry}/{ref.repository} has no {what}")
        if result.status in (401, 403):
            return Answer(Status.DENIED, detail=(
                f"{self.registry} refuses an anonymous read of {ref.repository} ({result.status} "
                f"{_reason(result.status)}{': ' + ', '.join(codes) if codes else ''}): the repository is private "
                "or does not exist"))
        if result.status in _TRANSIENT_STATUS:
            self.unreachable = f"it answers {result.status} {_reason(result.status)} (tried {self.attempts} times)"
            raise Unreachable(self.unreachable)
        return Answer(Status.ERROR, detail=f"{self.registry} answers {result.status} {_reason(result.status)}"
                                           f"{' (' + ', '.join(codes) + ')' if codes else ''} for {what}")


class _Refused(Exception):
    """The token service refused (a pin-level failure, not an unreachable registry)."""


def _reason(status: int) -> str:
    return http.client.responses.get(status, "")


def _error_codes(body: bytes) -> list[str]:
    """The ``errors[].code`` of a registry's JSON error body (``MANIFEST_UNKNOWN``...)."""
    try:
        doc = json.loads(body.decode("utf-8"))
        return [str(e["code"]) for e in doc.get("errors") or [] if isinstance(e, dict) and "code" in e]
    except (ValueError, AttributeError, TypeError):
        return []


# ---------------------------------------------------------------------------------- the pins

@dataclass(frozen=True)
class Pin:
    """One image reference the project sets: its variable, where it is set, who runs it, what became of it."""

    variable: str | None
    value: str
    where: str  # ".env:12", ".env.example:46", "the environment (X)", "the compose files (default of $X)"
    services: tuple[str, ...]
    role: str = ""  # "helper" for the toolkit's helper image
    status: Status = Status.LISTED
    digest: str | None = None
    detail: str = ""
    ref: Reference | None = None

    def as_doc(self) -> dict[str, Any]:
        return {"variable": self.variable, "value": self.value, "where": self.where, "services": list(self.services),
                "helper": self.role == "helper", "registry": self.ref.registry if self.ref else None,
                "repository": self.ref.repository if self.ref else None,
                "tag": self.ref.tag if self.ref else None, "pinned_digest": self.ref.digest if self.ref else None,
                "status": str(self.status), "digest": self.digest, "detail": self.detail}

    @property
    def who(self) -> str:
        """The variable, where it is set, and its services: for a message."""
        parts = [f"{self.variable} in {self.where}" if self.variable else self.where]
        if self.services:
            parts.append(f"services {', '.join(self.services)}")
        elif self.role == "helper":
            parts.append("the toolkit's helper containers")
        else:
            parts.append("no service runs it")
        return "; ".join(parts)


_VARIABLE = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)")


def _lines(env: envfile.EnvFile) -> dict[str, int]:
    """Key -> the line of its last assignment (the one Compose uses)."""
    return {e.key: e.line for e in env.entries if not e.inherited}


def helper_variable(project: Path) -> str | None:
    """The variable ``x-readiness.helper-image`` of the root compose file is written with."""
    try:
        doc = sources.load_yaml((project / sources.COMPOSE_FILE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None  # Compose reports a broken file; the helper's variable is then unknown
    x = doc.get("x-readiness") if isinstance(doc, dict) else None
    m = _VARIABLE.search(str(x.get("helper-image") or "")) if isinstance(x, dict) else None
    return m.group(1) if m else None


def stack_pins(project: Path, model: Model) -> list[Pin]:
    """What the stack runs as Compose resolves it, the helper image, and any other ``*_IMAGE``
    of ``.env``/``.env.example`` no service runs (each other one with the value ``.env`` gives
    it, else the example's)."""
    env, example = envfile.read(project / ENV), envfile.read(project / EXAMPLE)
    env_lines, example_lines = _lines(env), _lines(example)

    def where(variable: str | None) -> str:
        if variable and variable in os.environ:
            return f"the environment ({variable}, which Compose prefers to .env)"
        if variable and variable in env_lines:
            return f"{ENV}:{env_lines[variable]}"
        if variable:
            return f"the compose files (the default of ${{{variable}}}; {ENV} does not set it)"
        return "the compose files (an image written without a variable)"

    written = sources.image_variables(project)
    pins = []
    for img in pull.images(model):  # one pin per variable: two variables may name the same image
        by_variable: dict[str | None, list[str]] = {}
        for svc in img.services:
            by_variable.setdefault(written.get(svc), []).append(svc)
        pins += [Pin(var, img.ref, where(var), tuple(svcs)) for var, svcs in by_variable.items()]
    covered = {p.variable for p in pins if p.variable}
    helper = (model.rendered.get("x-readiness") or {}).get("helper-image")
    if isinstance(helper, str) and helper:
        variable = helper_variable(project)
        pins.append(Pin(variable, helper, where(variable), (), "helper"))
        covered.add(variable or "")
    values = {**example.values, **env.values}
    for key in sorted(values):
        if envfile.is_pin(key) and key not in covered:
            place = f"{ENV}:{env_lines[key]}" if key in env_lines else f"{EXAMPLE}:{example_lines[key]}"
            pins.append(Pin(key, values[key], place, ()))
    return pins


def example_pins(project: Path, example: envfile.EnvFile, model: Model | None = None) -> list[Pin]:
    """The ``*_IMAGE`` values of ``.env.example``, with the services whose ``image:`` names each
    variable (read from the compose files as written: no render needed)."""
    written = sources.image_variables(project)
    if model is not None:
        written = {svc: var for svc, var in written.items() if svc in model.services}
    helper = helper_variable(project)
    lines = _lines(example)
    out = []
    for key, value in example.values.items():
        if not envfile.is_pin(key):
            continue
        services = tuple(sorted(svc for svc, var in written.items() if var == key))
        out.append(Pin(key, value, f"{EXAMPLE}:{lines[key]}", services, "helper" if key == helper else ""))
    return sorted(out, key=lambda p: lines[p.variable or ""])


def resolve(pins: list[Pin]) -> tuple[list[Pin], dict[str, dict[str, Any]]]:
    """Every pin asked of its registry: (the pins with status and digest, registry -> its record).

    Registries are asked in parallel, each one's pins in turn (one question per repository and
    tag or digest); a registry that cannot be reached is asked once, and all its pins are then
    marked unreachable.
    """
    parsed: list[Pin] = []
    for p in pins:
        if "$" in p.value:
            why = "the value uses $VAR, which only Compose resolves: not asked"
            parsed.append(replace(p, status=Status.SKIPPED, detail=why))
            continue
        try:
            parsed.append(replace(p, ref=parse_reference(p.value)))
        except BadReference as exc:
            parsed.append(replace(p, status=Status.INVALID, detail=f"not an image reference Docker accepts: {exc}"))
    by_registry: dict[str, list[int]] = {}
    for i, p in enumerate(parsed):
        if p.ref is not None:
            by_registry.setdefault(p.ref.registry, []).append(i)
    records: dict[str, dict[str, Any]] = {}

    def ask(registry: str) -> tuple[str, dict[int, Answer], dict[str, Any]]:
        first = parsed[by_registry[registry][0]].ref
        assert first is not None
        client = RegistryClient(registry, first.host)
        answers: dict[int, Answer] = {}
        seen: dict[tuple[str, str], Answer] = {}
        for i in by_registry[registry]:
            ref = parsed[i].ref
            assert ref is not None
            key = (ref.repository, ref.manifest)
            if key not in seen:
                if client.unreachable is not None:
                    seen[key] = Answer(Status.UNREACHABLE, detail=f"registry {registry}: {client.unreachable}")
                else:
                    try:
                        seen[key] = client.manifest(ref)
                    except Unreachable as exc:
                        seen[key] = Answer(Status.UNREACHABLE, detail=f"registry {registry}: {exc}")
            answers[i] = seen[key]
        record = {"registry": registry, "endpoint": client.endpoint, "reachable": client.unreachable is None,
                  "error": client.unreachable or ""}
        return registry, answers, record

    out = list(parsed)
    if by_registry:
        with ThreadPoolExecutor(max_workers=min(PARALLEL, len(by_registry))) as pool:
            for registry, answers, record in pool.map(ask, sorted(by_registry)):
                records[registry] = record
                for i, a in answers.items():
                    out[i] = replace(out[i], status=a.status, digest=a.digest, detail=a.detail)
    return out, records


# ---------------------------------------------------------------------------------- writing digests

#: Where a statement may start on a line (after blanks, a closing quote or a BOM), and what
#: ends an unquoted value.
_KEY_START, _VALUE_END = r"(?:^|(?<=[\s\"'\ufeff]))", r"[ \t\r]|$"


def with_digests(text: str, path: Path, new: dict[str, str]) -> str:
    """``text`` (a dotenv file) with the value of each key of ``new`` replaced, in place, on the
    line of its last assignment; every other byte as it was. Raises ToolkitError when a value
    cannot be found where the parser says it is, or the result would read differently."""
    before = envfile.parse_text(text, path)
    last = {e.key: e for e in before.entries if not e.inherited}
    lines = text.split("\n")
    for key, value in new.items():
        e = last[key]
        line = lines[e.line - 1]
        end = re.escape(e.quote) if e.quote else _VALUE_END
        pattern = re.compile(rf"{_KEY_START}(?:export[ \t]+)?{re.escape(key)}[ \t]*[=:][ \t]*{re.escape(e.quote)}"
                             rf"({re.escape(e.value)})(?={end})")
        m = pattern.search(line)
        if m is None or e.end_line != e.line:
            raise ToolkitError(f"cannot find the value of {key} on line {e.line} of {path.name} to pin it",
                               where=f"{path}:{e.line}", fix=f"write {key}=<image> on a line of its own, then run "
                                                             "`invoke pins --digests` again")
        lines[e.line - 1] = line[:m.start(1)] + value + line[m.end(1):]
    out = "\n".join(lines)
    after = envfile.parse_text(out, path)

    def shape(env: envfile.EnvFile, values: dict[str, str]) -> list[tuple]:
        lastline = {k: e.line for k, e in last.items()}
        return [(e.key, values[e.key] if e.key in values and lastline[e.key] == e.line else e.value, e.line,
                 e.end_line, e.inherited, e.quote) for e in env.entries]

    if after.errors or shape(after, {}) != shape(before, new):
        raise ToolkitError(f"pinning the digests would change how Compose reads {path.name}", where=str(path),
                           fix="write each *_IMAGE on a line of its own (KEY=value), then run `invoke pins --digests` "
                               "again")
    return out


def _write_example(path: Path, original: bytes, data: bytes) -> None:
    """Replace ``.env.example`` (through a symlink, keeping its mode) unless it changed meanwhile."""
    target = Path(os.path.realpath(path))
    if target.read_bytes() != original:
        raise ToolkitError(f"{path.name} changed while the registries were asked", where=str(path),
                           fix="run `invoke pins --digests` again")
    st = target.stat()
    fsutil.atomic_write(target, data, stat.S_IMODE(st.st_mode), owner=(st.st_uid, st.st_gid))


# ---------------------------------------------------------------------------------- the task

@dataclass(frozen=True)
class Result:
    """The task's JSON document and verdict (``steps.pins`` makes the :class:`Outcome` of it:
    this layer may not import ``readiness.cli``)."""

    doc: dict[str, Any]
    ok: bool
    code: int = 0  # the exit code when not ok: 1 a check failed, 69 a registry could not be reached


def verdict(pins: Iterable[Pin]) -> tuple[bool, int]:
    statuses = {p.status for p in pins}
    if statuses & FAILED:
        return False, EXIT_FAILED
    if Status.UNREACHABLE in statuses:
        return False, EXIT_UNAVAILABLE
    return True, 0


def _status_text(p: Pin) -> str:
    if p.status == Status.PRESENT:
        return f"present {p.digest}"
    return str(p.status) if p.status == Status.LISTED else f"{p.status}: {p.detail}"


def _table(pins: list[Pin], asked: bool) -> str:
    out = output.current()

    def services(p: Pin) -> str:
        return ", ".join(p.services) or ("(helper)" if p.role == "helper" else "-")

    if not asked:
        return out.table(("VARIABLE", "SERVICES", "WHERE", "IMAGE"),
                         [(p.variable or "-", services(p), p.where.split(" (")[0], p.value) for p in pins])
    styles = ["ok" if p.status == Status.PRESENT else "error" if p.status in FAILED else "warning" for p in pins]
    return out.table(("VARIABLE", "IMAGE", "SERVICES", "STATUS"),
                     [(p.variable or "-", p.value, services(p), _status_text(p)) for p in pins], styles)


def _report(pins: list[Pin], records: dict[str, dict[str, Any]], what: str) -> None:
    """The problems, each with what, where and the fix; one line per unreachable registry."""
    out = output.current()
    for p in pins:
        if p.status == Status.ABSENT:
            ref = p.ref
            assert ref is not None
            tags = f"{records.get(ref.registry, {}).get('endpoint', '')}/v2/{ref.repository}/tags/list"
            out.say("pins", f"{p.value} ({p.who}): {p.detail}; fix: set {p.variable or 'the image'} in "
                            f"{p.where.split(' (')[0]} to a tag that exists (the registry lists them at {tags})",
                    "error")
        elif p.status == Status.DENIED:
            out.say("pins", f"{p.value} ({p.who}): {p.detail}; fix: check the name; this check is anonymous, so a "
                            "private repository is refused: `docker login` and `docker pull` it to check it",
                    "error")
        elif p.status in (Status.INVALID, Status.ERROR):
            out.say("pins", f"{p.value} ({p.who}): {p.detail}; fix: correct {p.variable or 'the image'} "
                            f"in {p.where.split(' (')[0]}", "error")
        elif p.status == Status.SKIPPED:
            out.say("pins", f"{p.value} ({p.who}): {p.detail}", "warning")
    for registry, record in sorted(records.items()):
        if record["reachable"]:
            continue
        names = sorted({p.variable or p.value for p in pins if p.ref and p.ref.registry == registry})
        if "TLS" in record["error"]:
            fix = (f"if {registry} has a CA of its own, put it where the engine reads it "
                   f"({DOCKER_CERTS}/{registry}/ca.crt) or name it in SSL_CERT_FILE, then run again")
        else:
            fix = ("check the registry's name, the network, DNS and the proxy variables (HTTPS_PROXY, NO_PROXY), "
                   "then run again")
        out.say("pins", f"registry {registry} cannot be reached ({record['endpoint']}): {record['error']}; "
                        f"{len(names)} pin(s) not {what}: {', '.join(names)}; fix: {fix}", "warning")


def _summary(pins: list[Pin]) -> str:
    counts: dict[str, int] = {}
    for p in pins:
        counts[str(p.status)] = counts.get(str(p.status), 0) + 1
    return ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))


def run(project: Path, model: Model | None, *, check: bool, digests: bool) -> Result:
    """``invoke pins [--check] [--digests]``: prints through :func:`readiness.output.current`
    and returns the document (``schemas/pins.schema.json``) with its verdict.

    ``model`` is needed to list or check what the stack runs; ``--digests`` alone reads only
    ``.env.example`` and the compose files as written, so ``model`` may then be None.
    """
    out = output.current()
    pins: list[Pin] = []
    records: dict[str, dict[str, Any]] = {}
    if check or not digests:
        if model is None:
            raise ValueError("listing or checking the pins needs the model")
        pins = stack_pins(project, model)
        if check:
            pins, records = resolve(pins)
        out.text(_table(pins, check))
        if check:
            _report(pins, records, "checked")
            out.say("pins", f"{len(pins)} pin(s) checked: {_summary(pins)}",
                    "ok" if verdict(pins)[0] else "error")
    changes: list[dict[str, str]] = []
    written = False
    if digests:
        example_pinned, changes, written, more = _digests(project, model)
        pins += example_pinned
        records.update({k: v for k, v in more.items() if k not in records or not v["reachable"]})
    ok, code = verdict(pins)
    doc = {"checked": check, "digests": digests, "pins": [p.as_doc() for p in pins],
           "registries": [records[k] for k in sorted(records)], "changes": changes, "written": written}
    return Result(doc, ok, code)


def _digests(project: Path, model: Model | None) -> tuple[list[Pin], list[dict[str, str]], bool, dict[str, Any]]:
    """``--digests``: resolve ``.env.example``'s pins and write ``tag@sha256:`` for the tag-only ones."""
    out = output.current()
    path = project / EXAMPLE
    try:
        original = path.read_bytes()
    except FileNotFoundError:
        raise ToolkitError(f"{EXAMPLE} is missing: there are no pins to fix", where=str(path),
                           fix="restore it from git: `git checkout -- .env.example`") from None
    text = envfile.decode(original)
    example = envfile.parse_text(text, path)
    envfile.raise_on_errors(example)
    pins, records = resolve(example_pins(project, example, model))
    out.text(f"the pins {EXAMPLE} ships:\n" + _table(pins, True))
    _report(pins, records, "resolved")
    to_pin = [p for p in pins if p.status == Status.PRESENT and p.ref is not None and not p.ref.digest]
    blocked = [p for p in pins if p.status not in (Status.PRESENT, Status.SKIPPED)]
    if blocked:
        out.say("pins", f"{EXAMPLE} is unchanged: {len(blocked)} pin(s) could not be resolved "
                        f"({', '.join(p.variable or p.value for p in blocked)}); nothing was written", "error")
        return pins, [], False, records
    if not to_pin:
        out.say("pins", f"{EXAMPLE}: every pin already names its digest (nothing changed)", "ok")
        return pins, [], False, records
    new = {p.variable or "": f"{p.value}@{p.digest}" for p in to_pin}
    data = with_digests(text, path, new).encode("utf-8", "surrogateescape")
    _write_example(path, original, data)
    changes = [{"variable": p.variable or "", "old": p.value, "new": new[p.variable or ""], "where": p.where}
               for p in to_pin]
    for c in changes:
        out.say("pins", f"{c['where']}: {c['variable']}: {c['old']} -> {c['new']}")
    out.say("pins", f"wrote {EXAMPLE}: {len(changes)} pin(s) now name their digest (`invoke upgrade --dry-run` "
                    "shows the move for .env)", "ok")
    return pins, changes, True, records

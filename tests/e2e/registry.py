"""A real registry for the end-to-end suite: images are pulled, not only built.

Debian's ``docker-registry`` (the CNCF distribution registry, 2.8) serves on 127.0.0.1, which
the engine accepts without TLS (loopback registries are insecure-allowed by default). In
front of it sits :class:`ThrottledProxy`, a TCP relay whose bandwidth a test can cap (a slow
link) or cut (a registry that is down).

:func:`publish` turns a booted-by-override e2e stack into one that *pulls*: for each
``*_IMAGE`` variable of the shipped compose files it pushes the locally built image, plus a
small layer unique to this session (so the pull really transfers bytes), under a
registry-qualified name, writes that name into the clone's ``.env`` -- exactly where a user
sets an image -- and removes the ``image`` keys from the override. Then it deletes the pushed
tags from the engine: the first ``invoke up`` starts from an engine that does not have them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path

import yaml

from .stack import E2EError, Stack, free_port, run

REGISTRY_BIN = Path("/usr/bin/docker-registry")  # Debian package `docker-registry`
#: Bytes of the per-session layer added to every published image (random, incompressible).
NONCE_BYTES = 2 * 1024 * 1024


class Registry:
    """``docker-registry serve`` on 127.0.0.1:<port>, storing under ``root``."""

    def __init__(self, root: Path) -> None:
        if not REGISTRY_BIN.is_file():
            raise E2EError(f"{REGISTRY_BIN} is missing (apt-get install docker-registry)")
        self.root = root
        self.port = free_port()
        root.mkdir(parents=True, exist_ok=True)
        config = root / "config.yml"
        config.write_text(yaml.safe_dump({
            "version": 0.1,
            "log": {"level": "warn"},
            "storage": {"filesystem": {"rootdirectory": str(root / "data")}, "delete": {"enabled": True}},
            "http": {"addr": f"127.0.0.1:{self.port}"},
        }))
        self.log = (root / "registry.log").open("w")
        self.proc = subprocess.Popen([str(REGISTRY_BIN), "serve", str(config)], stdout=self.log, stderr=self.log,
                                     stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.2)
        self.stop()
        log = (root / "registry.log").read_text()
        raise E2EError(f"docker-registry did not listen on 127.0.0.1:{self.port}: {log}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()


class ThrottledProxy:
    """A TCP relay 127.0.0.1:<port> -> ``target``: ``rate`` bytes/s (None: unlimited) in total,
    shared by every connection; :meth:`cut` refuses new connections and drops open ones."""

    def __init__(self, target_port: int) -> None:
        self.target = ("127.0.0.1", target_port)
        self.rate: float | None = None
        self._bucket = threading.Lock()
        self._next = time.monotonic()
        self.port = free_port()
        self.bytes = 0
        self._conns: list[socket.socket] = []
        self.server: socket.socket | None = None
        self.up()

    def up(self) -> None:
        """Listen (again) on the same port."""
        self.server = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, args=(self.server,), daemon=True).start()

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=10)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)  # the connect timeout must not end a long, one-way upload
            self._conns += [client, upstream]
            threading.Thread(target=self._pipe, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, True), daemon=True).start()

    def _throttle(self, n: int) -> None:
        if not self.rate:
            return
        with self._bucket:
            now = time.monotonic()
            self._next = max(self._next, now) + n / self.rate
            delay = self._next - now
        if delay > 0:
            time.sleep(delay)

    def _pipe(self, src: socket.socket, dst: socket.socket, download: bool) -> None:
        """Copy one direction; at its end, half-close the other side (the reverse direction
        may still be sending: an HTTP response after the request body, say)."""
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if download:
                    self._throttle(len(data))
                    self.bytes += len(data)
                dst.sendall(data)
        except OSError:
            with contextlib.suppress(OSError):
                src.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def down(self) -> None:
        """The registry is down: connections are refused until :meth:`up`."""
        if self.server is not None:
            self.server.close()
            self.server = None
        for s in self._conns:
            with contextlib.suppress(OSError):
                s.close()
        self._conns.clear()


def image_variables(root: Path) -> dict[str, str]:
    """Service -> the ``*_IMAGE`` variable its ``image:`` is written with (the shipped files, as written)."""
    from readiness.stack import sources

    return sources.image_variables(root)


def publish(stack: Stack, address: str, nonce: str | None = None) -> dict[str, str]:
    """Push every image of ``stack``'s override to ``address`` and point ``.env`` at it.

    Returns variable -> pushed reference. The pushed tags (and their unique layer) are removed
    from the engine afterwards, so the stack's next ``invoke up`` has to pull each one.
    """
    nonce = nonce or uuid.uuid4().hex[:10]
    override = yaml.safe_load(stack.override.read_text())
    variables = image_variables(stack.root)
    by_var: dict[str, set[str]] = {}
    for svc, spec in override["services"].items():
        if svc not in variables:
            raise E2EError(f"{svc}: its image is not set by a variable, so it cannot come from a registry")
        by_var.setdefault(variables[svc], set()).add(spec["image"])
    refs: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="e2e-nonce-") as ctx:
        (Path(ctx) / "nonce.bin").write_bytes(os.urandom(NONCE_BYTES))
        for var, local in sorted(by_var.items()):
            if len(local) != 1:
                raise E2EError(f"{var} is shared by services that need different images: {sorted(local)}")
            ref = f"{address}/e2e/{var.lower().removesuffix('_image')}:{nonce}"
            (Path(ctx) / "Dockerfile").write_text(f"FROM {next(iter(local))}\nCOPY nonce.bin /.e2e-nonce-{var}\n")
            built = run(["docker", "build", "-q", "-t", ref, ctx], env={"DOCKER_BUILDKIT": "0"}, timeout=600)
            if built.returncode != 0:
                raise E2EError(f"docker build {ref} failed: {built.stderr}")
            pushed = run(["docker", "push", ref], timeout=600)
            if pushed.returncode != 0:
                raise E2EError(f"docker push {ref} failed: {pushed.stderr}")
            refs[var] = ref
    forget(list(refs.values()))
    for spec in override["services"].values():
        spec.pop("image", None)
    header = "".join(line + "\n" for line in stack.override.read_text().splitlines() if line.startswith("#"))
    stack.override.write_text(header + "# Registry mode: images come from the *_IMAGE variables in .env.\n"
                              + yaml.safe_dump(override, sort_keys=True, width=200))
    with (stack.root / ".env").open("a") as fh:
        fh.write("# e2e registry mode: every image is pulled from the local registry\n")
        fh.writelines(f"{var}={ref}\n" for var, ref in sorted(refs.items()))
    return refs


def forget(refs: list[str]) -> None:
    """Remove ``refs`` from the engine (their unique layers go with them)."""
    if refs:
        run(["docker", "image", "rm", "--force", *refs], timeout=300)


def project_containers(project: str) -> list[str]:
    res = run(["docker", "ps", "-aq", "--filter", f"label=com.docker.compose.project={project}"], timeout=60)
    return res.stdout.split()


def cleanup_dir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)

"""A private Docker engine for one test module: its own data root, socket and network namespace.

The machine's main dockerd is never touched (other tests and CI use it). The private one runs
in a network namespace of its own (``ip netns add``, then ``nsenter --net=… dockerd``): started
in the host's namespace, a dockerd without a bridge of its own deletes the host's ``docker0``,
and ``ip netns exec`` cannot be used (it remounts /sys, and dockerd then fails with "Devices
cgroup isn't mounted"). Needs root and dockerd (CI pass 1 has both).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest
from conftest import require_root, require_tool
from e2e.stack import clean_env


class PrivateEngine:
    """``dockerd <extra args>`` in a namespace of its own; ``env`` points a CLI at it."""

    def __init__(self, why: str, *extra: str, dockerd: str | None = None) -> None:
        """``dockerd``: another engine binary (its directory goes first on PATH, for its
        docker-proxy and docker-init); default: the machine's."""
        require_root(why)
        self.tools = {name: require_tool(name, why) for name in ("ip", "nsenter")}
        self.tools["dockerd"] = dockerd or require_tool("dockerd", why)
        self.extra = extra
        self.root = Path(tempfile.mkdtemp(prefix="rde-", dir="/tmp"))  # short: socket paths are limited
        self.root.chmod(0o711)  # a userns-remap engine's root must traverse to its graph root
        self.sock = self.root / "docker.sock"
        self.env = {"DOCKER_HOST": f"unix://{self.sock}"}
        self.log = self.root / "dockerd.log"
        self.proc: subprocess.Popen | None = None
        self.netns = f"readiness-engine-{uuid.uuid4().hex[:8]}"
        for args in (["netns", "add", self.netns], ["-n", self.netns, "link", "set", "lo", "up"]):
            res = subprocess.run([self.tools["ip"], *args], capture_output=True, text=True)
            assert res.returncode == 0, f"ip {' '.join(args)}: {res.stderr}"

    def docker(self, *args: str, timeout: float = 120, stdin: bytes | None = None,
               text: bool = False) -> subprocess.CompletedProcess:
        return subprocess.run(["docker", *args], capture_output=True, timeout=timeout, env=clean_env(self.env),
                              input=stdin, text=text)

    def start(self) -> None:
        """Start (or start again) the engine and wait until it answers."""
        args = [self.tools["nsenter"], f"--net=/var/run/netns/{self.netns}", self.tools["dockerd"],
                "--data-root", str(self.root / "data"), "--exec-root", str(self.root / "exec"),
                "--pidfile", str(self.root / "docker.pid"), "-H", f"unix://{self.sock}", "--iptables=false",
                "--storage-driver=vfs", "--shutdown-timeout=2", "--default-address-pool", "base=10.214.0.0/16,size=24",
                *self.extra]
        bindir = str(Path(self.tools["dockerd"]).parent)
        env = {**os.environ, "PATH": f"{bindir}:{bindir.replace('/sbin', '/bin')}:{os.environ.get('PATH', '')}"}
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True, env=env)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and self.proc.poll() is None:
            if self.docker("info", timeout=10).returncode == 0:
                return
            time.sleep(0.3)
        tail = self.log.read_text(errors="replace")[-2000:]
        self.close()
        pytest.fail(f"the private dockerd did not come up:\n{tail}")

    def load(self, image: str) -> None:
        """Copy ``image`` from the main engine (what a pull would give it)."""
        saved = subprocess.run(["docker", "image", "save", image], capture_output=True, timeout=300)
        assert saved.returncode == 0, saved.stderr
        loaded = self.docker("image", "load", "-q", stdin=saved.stdout, timeout=300)
        assert loaded.returncode == 0, loaded.stderr

    def stop(self) -> None:
        """Stop the engine, keeping its state (``start`` brings it back with the same containers)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
        self.proc = None

    def close(self) -> None:
        """Remove its containers, stop it, and remove everything it made (namespace, data root)."""
        if self.proc is not None and self.proc.poll() is None:
            running = PrivateEngine.docker(self, "ps", "-aq", text=True).stdout.split()
            if running:
                PrivateEngine.docker(self, "rm", "-f", *running)
        self.stop()
        subprocess.run(["umount", "-R", str(self.root / "exec")], capture_output=True)
        subprocess.run([self.tools["ip"], "netns", "delete", self.netns], capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)

"""Engine faults (issue #6): the Docker engine stopped before `invoke up`, or during `up --wait`.

The machine's main dockerd is never touched (other tests and CI use it): the module starts a
second, private dockerd with its own ``--data-root``, ``--exec-root``, ``--pidfile`` and socket
(``--bridge=none --iptables=false``, its own address pool) and points the toolkit at it with
``DOCKER_HOST``. Images cannot be pulled here, so ``busybox:1.36.1`` is built into that engine
from the machine's static busybox (``FROM scratch``). The mini stack gets a small override
(``READINESS_EXTRA_COMPOSE_FILES``) so that ``up --wait`` lasts a few seconds and the
healthchecks run every second; nothing of the toolkit is mocked.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from .support import LEDGER, assert_clean_failure, cli_env, invoke_argv, make_mini, remove_network, run

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("dockerd"),
                                reason="a second Docker engine needs root and dockerd (CI has both)")

OVERRIDE = """\
services:
  web:
    command: ["sh", "-c", "sleep 10; echo ok > /www/index.html; exec httpd -f -p 8080 -h /www"]
    healthcheck:
      interval: 1s
      timeout: 3s
      retries: 60
  proxy:
    healthcheck:
      interval: 1s
"""


class Engine:
    """A private dockerd that can be stopped and started again with the same state."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="rdf-", dir="/tmp"))  # short: socket paths are limited
        self.sock = self.root / "docker.sock"
        self.env = {"DOCKER_HOST": f"unix://{self.sock}"}
        self.proc: subprocess.Popen | None = None
        self.log = self.root / "dockerd.log"

    def docker(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, **self.env})

    def start(self) -> None:
        args = ["dockerd", "--data-root", str(self.root / "data"), "--exec-root", str(self.root / "exec"),
                "--pidfile", str(self.root / "docker.pid"), "-H", f"unix://{self.sock}", "--bridge=none",
                "--iptables=false", "--ip-masq=false", "--storage-driver=vfs", "--shutdown-timeout=2",
                "--default-address-pool", "base=10.213.0.0/16,size=24", "--cgroup-parent=/readiness-faults"]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            if self.docker("info", "--format", "{{.ServerVersion}}", timeout=10).returncode == 0:
                return
            time.sleep(0.3)
        tail = self.log.read_text(errors="replace")[-2000:]
        self.stop()
        pytest.fail(f"the second dockerd did not come up:\n{tail}")

    def stop(self) -> None:
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

    def build_busybox(self) -> None:
        busybox = Path("/bin/busybox") if Path("/bin/busybox").is_file() else Path(shutil.which("busybox") or "")
        if not busybox.is_file():
            pytest.fail("busybox-static is required to build the test image (.ci/run installs it)")
        ctx = self.root / "build"
        ctx.mkdir()
        shutil.copy2(busybox, ctx / "busybox")
        (ctx / "Dockerfile").write_text('FROM scratch\nCOPY busybox /bin/busybox\n'
                                        'RUN ["/bin/busybox","--install","-s","/bin"]\n')
        res = self.docker("build", "-q", "-t", "busybox:1.36.1", str(ctx), timeout=300)
        assert res.returncode == 0, res.stderr

    def close(self) -> None:
        self.stop()
        LEDGER.output("second dockerd log", self.log.read_text(errors="replace") if self.log.exists() else "")
        subprocess.run(["umount", "-R", str(self.root / "exec")], capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="module")
def engine():
    eng = Engine()
    try:
        eng.start()
        eng.build_busybox()
        yield eng
    finally:
        eng.close()


@pytest.fixture
def stack(tmp_path, engine):
    project, net = make_mini(tmp_path / "mini")
    (project / "faults.override.yml").write_text(OVERRIDE)
    env = {**engine.env, "READINESS_EXTRA_COMPOSE_FILES": "faults.override.yml"}
    yield project, env
    if engine.proc is not None:
        subprocess.run(["docker", "compose", "--project-directory", str(project), "-f",
                        str(project / "docker-compose.yml"), "down", "-t", "0"], capture_output=True,
                       env={**os.environ, **env})
        remove_network(net, engine.env)


def engine_message(res) -> None:
    """The failure is about the engine, in one paragraph, without a traceback."""
    assert_clean_failure(res)
    text = res.stderr.lower()
    assert "docker" in text and ("engine" in text or "daemon" in text), res.stderr


def test_engine_stopped_before_up(stack, engine):
    LEDGER.start("engine.before-up")
    project, env = stack
    assert run(project, "bootstrap", env=env).returncode == 0
    engine.stop()
    try:
        res = run(project, "up", "--timeout", "60", env=env)
        engine_message(res)
        assert "start the Docker engine" in res.stderr
    finally:
        engine.start()
    res = run(project, "up", "--timeout", "90", env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "services are up and healthy" in res.stdout
    LEDGER.done("engine.before-up", 1, "`invoke up` exits 1 with `error: cannot list Docker networks: Cannot "
                "connect to the Docker daemon ...` and the fix `start the Docker engine`; after the engine "
                "is back the rerun exits 0 with every service healthy")


def test_engine_stopped_during_up_wait(stack, engine):
    LEDGER.start("engine.during-up")
    project, env = stack
    assert run(project, "bootstrap", env=env).returncode == 0
    proc = subprocess.Popen(invoke_argv("up", "--timeout", "90"), cwd=project, env=cli_env(project, env),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:  # containers created, not yet healthy
            ps = engine.docker("ps", "-q", "--filter", f"label=com.docker.compose.project.working_dir={project}",
                               "--filter", "health=starting")
            if ps.stdout.split():
                break
            time.sleep(0.2)
        assert proc.poll() is None, "up ended before the engine could be stopped"
        engine.stop()
        out, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
        if engine.proc is None:
            engine.start()
    LEDGER.output("invoke up (engine stopped)", out, err)
    res = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    engine_message(res)
    rerun = run(project, "up", "--timeout", "90", env=env)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    LEDGER.done("engine.during-up", 1, f"`invoke up` exits {proc.returncode} with one `error:` paragraph about "
                "the engine (no traceback); after the engine is back the rerun exits 0 with every service healthy")

"""Engine faults (issue #6): the Docker engine stopped before `invoke up`, or during `up --wait`.

The machine's main dockerd is never touched (other tests and CI use it): the module starts a
second, private dockerd with its own ``--data-root``, ``--exec-root``, ``--pidfile`` and socket
(``--bridge=none --iptables=false``, its own address pool) and points the toolkit at it with
``DOCKER_HOST``. That dockerd runs in a network namespace of its own (``ip netns add``, then
``nsenter --net=/var/run/netns/<ns> dockerd``): started in the host's namespace,
``--bridge=none`` deletes the host's ``docker0`` and the main engine can no longer start a
container on its default network (``ip netns exec`` cannot be used: it remounts /sys and
dockerd then fails with "Devices cgroup isn't mounted"). Its socket is a file, reachable from
the host's namespace. ``test_zz_hygiene`` and the session fixture ``main_engine_baseline``
check afterwards that ``docker0`` and the main engine's default network still work.

Images cannot be pulled here, so ``busybox:1.36.1`` is built into that engine from the
machine's static busybox (``FROM scratch``). The mini stack gets a small override
(``READINESS_EXTRA_COMPOSE_FILES``) so that ``up --wait`` lasts a few seconds and the
healthchecks run every second; nothing of the toolkit is mocked.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest
from conftest import FIXTURES, clean_env, require_root, require_tool  # tests/conftest.py
from helper_image import default_helper_image, ensure_helper_image

from .support import LEDGER, cli_env, failure_problems, invoke_argv, make_mini, remove_network, run, snapshot

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

WHY = "the engine faults run a second Docker engine in a network namespace of its own"


class Engine:
    """A private dockerd in its own network namespace that can be stopped and started again."""

    def __init__(self) -> None:
        require_root(WHY)
        self.tools = {name: require_tool(name, WHY) for name in ("dockerd", "ip", "nsenter")}
        self.root = Path(tempfile.mkdtemp(prefix="rdf-", dir="/tmp"))  # short: socket paths are limited
        self.sock = self.root / "docker.sock"
        self.env = {"DOCKER_HOST": f"unix://{self.sock}"}
        self.proc: subprocess.Popen | None = None
        self.log = self.root / "dockerd.log"
        self.netns: str | None = None

    def docker(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout,
                              env=clean_env(self.env))

    def make_netns(self) -> None:
        name = f"readiness-faults-{uuid.uuid4().hex[:8]}"
        res = subprocess.run([self.tools["ip"], "netns", "add", name], capture_output=True, text=True)
        assert res.returncode == 0, f"ip netns add {name}: {res.stderr}"
        self.netns = name
        # Published ports bind to 127.0.0.1 inside the namespace: its loopback must be up.
        res = subprocess.run([self.tools["ip"], "-n", name, "link", "set", "lo", "up"], capture_output=True,
                             text=True)
        assert res.returncode == 0, f"ip -n {name} link set lo up: {res.stderr}"

    def start(self) -> None:
        if self.netns is None:
            self.make_netns()
        args = [self.tools["nsenter"], f"--net=/var/run/netns/{self.netns}", self.tools["dockerd"],
                "--data-root", str(self.root / "data"), "--exec-root", str(self.root / "exec"),
                "--pidfile", str(self.root / "docker.pid"), "-H", f"unix://{self.sock}", "--bridge=none",
                "--iptables=false", "--ip-masq=false", "--storage-driver=vfs", "--shutdown-timeout=2",
                "--default-address-pool", "base=10.213.0.0/16,size=24", "--cgroup-parent=/readiness-faults"]
        with open(self.log, "ab") as log:  # nsenter execs dockerd: the pid is dockerd's
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
        busybox = Path(require_tool("busybox", "the second engine's test image is built from the static busybox "
                                    "(apt-get install busybox-static)"))
        ctx = self.root / "build"
        ctx.mkdir()
        shutil.copy2(busybox, ctx / "busybox")
        (ctx / "Dockerfile").write_text('FROM scratch\nCOPY busybox /bin/busybox\n'
                                        'RUN ["/bin/busybox","--install","-s","/bin"]\n')
        res = subprocess.run(["docker", "build", "-q", "-t", "busybox:1.36.1", str(ctx)], capture_output=True,
                             text=True, timeout=300, env=clean_env({**self.env, "DOCKER_BUILDKIT": "0"}))
        assert res.returncode == 0, res.stderr
        ensure_helper_image(default_helper_image(FIXTURES / "mini" / ".env.example"), env=clean_env(self.env))

    def close(self) -> None:
        self.stop()
        LEDGER.output("second dockerd log", self.log.read_text(errors="replace") if self.log.exists() else "")
        subprocess.run(["umount", "-R", str(self.root / "exec")], capture_output=True)
        if self.netns is not None:
            subprocess.run([self.tools["ip"], "netns", "delete", self.netns], capture_output=True)
            self.netns = None
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="module")
def engine(main_engine_baseline):
    """The second engine for the module; ``main_engine_baseline`` is taken before it starts."""
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
                       env=clean_env(env))
        remove_network(net, engine.env)


def engine_problems(res) -> list[str]:
    """What keeps ``res`` from being one clean paragraph about the engine."""
    problems = failure_problems(res)
    text = res.stderr.lower()
    if not ("docker" in text and ("engine" in text or "daemon" in text)):
        problems.append(f"the error does not name the Docker engine:\n{res.stderr}")
    return problems


UP = "after the engine was back the rerun of `invoke up` exited 0 with every service healthy"
KEPT = ".env and every secret and certificate were byte for byte the same after the failure and the rerun"


def test_engine_stopped_before_up(stack, engine):
    row = LEDGER.row("engine.before-up")
    project, env = stack
    assert run(project, "bootstrap", env=env).returncode == 0
    before = snapshot(project)
    engine.stop()
    try:
        res = run(project, "up", "--timeout", "60", env=env)
        row.cases += 1
        row.check(not engine_problems(res), "`invoke up` exited non-zero with one `error:` paragraph about the "
                  "engine, no traceback", engine_problems(res))
        fix = res.stderr.partition("fix:")[2].lower()
        row.check("start" in fix and "engine" in fix, "its `fix:` says to start the engine", res.stderr)
    finally:
        engine.start()
    res = run(project, "up", "--timeout", "90", env=env)
    row.check(res.returncode == 0 and "services are up and healthy" in res.stdout, UP, res.stdout + res.stderr)
    row.check(snapshot(project) == before, KEPT, keeps_data=True)


def test_engine_stopped_during_up_wait(stack, engine):
    row = LEDGER.row("engine.during-up")
    project, env = stack
    assert run(project, "bootstrap", env=env).returncode == 0
    before = snapshot(project)
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
    row.cases += 1
    row.check(not engine_problems(res), "`invoke up` exited non-zero with one `error:` paragraph about the engine, "
              "no traceback", engine_problems(res))
    row.figure(f"exit code {proc.returncode}")
    rerun = run(project, "up", "--timeout", "90", env=env)
    row.check(rerun.returncode == 0 and "services are up and healthy" in rerun.stdout, UP,
              rerun.stdout + rerun.stderr)
    row.check(snapshot(project) == before, KEPT, keeps_data=True)

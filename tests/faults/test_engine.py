"""Engine faults: the Docker engine stopped before `invoke up`, or during `up --wait`.

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
import subprocess
import time
from pathlib import Path

import pytest
from conftest import FIXTURES, clean_env, require_tool  # tests/conftest.py
from helper_image import default_helper_image, ensure_helper_image
from private_engine import PrivateEngine

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


class Engine(PrivateEngine):
    """The module's second engine (tests/private_engine.py): no bridge of its own, stopped and
    started again by the tests; its log goes to the ledger's output scan."""

    def __init__(self) -> None:
        super().__init__(WHY, "--bridge=none", "--ip-masq=false", "--cgroup-parent=/readiness-faults")

    def docker(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return super().docker(*args, timeout=timeout, text=True)

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
        LEDGER.output("second dockerd log", self.log.read_text(errors="replace") if self.log.exists() else "")
        super().close()


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

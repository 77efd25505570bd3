"""The engine is the authority: uid mapping, permissions, secret modes and ports, per engine kind.

The pure functions are tested for every kind of engine from ``docker info`` documents of the
shape each kind returns (rootful, rootless, userns-remap, Docker Desktop,
remote). The engine the suite runs against -- rootful in the main CI pass, rootless in the
rootless pass -- is then asked directly: its own ``/proc/self/uid_map`` seen from a
container must equal the mapping the toolkit computed, and a container run as each
service's uid must be able to write its data directory (checked from inside a container,
not with a host ``stat``).
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
from pathlib import Path

import pytest
from conftest import invoke_env, run_invoke
from helper_image import ensure_helper_image

from readiness import steps
from readiness.prepare import secrets as secretslib
from readiness.prepare import ulimits as ulimitslib
from readiness.system import engine as enginelib
from readiness.system.engine import IdRange, parse_info

ROOTFUL_INFO = {"ServerVersion": "26.1.5", "OperatingSystem": "Debian GNU/Linux 12 (bookworm)",
                "KernelVersion": "6.1.0", "SecurityOptions": ["name=seccomp,profile=builtin"],
                "DockerRootDir": "/var/lib/docker", "Name": "box", "NCPU": 2, "MemTotal": 8 << 30}
ROOTLESS_INFO = {**ROOTFUL_INFO, "SecurityOptions": ["name=seccomp,profile=builtin", "name=rootless"],
                 "DockerRootDir": "/home/dev/.local/share/docker"}
USERNS_INFO = {**ROOTFUL_INFO, "SecurityOptions": ["name=seccomp,profile=builtin", "name=userns"],
               "DockerRootDir": "/var/lib/docker/231072.231072"}
DESKTOP_INFO = {**ROOTFUL_INFO, "OperatingSystem": "Docker Desktop", "Name": "docker-desktop",
                "KernelVersion": "6.10.14-linuxkit"}
SUBUID = "dev:100000:65536\nother:165536:65536\n"


def parse(doc, **kw):
    args = {"docker_host": None, "local_kernel": "6.1.0", "local_uid": 1000, "subuid": SUBUID, "subgid": SUBUID,
            "user_of": lambda uid: "dev"}
    args.update(kw)
    return parse_info(doc, **args)


def test_kinds_and_mappings_from_docker_info():
    rootful = parse(ROOTFUL_INFO)
    assert rootful.kind == "rootful" and rootful.host_uid(472) == 472 and rootful.root_is_host_root
    assert rootful.version == (26, 1, 5) and rootful.start_interval

    rootless = parse(ROOTLESS_INFO, socket_owner=1000)
    assert rootless.kind == "rootless" and rootless.owner_uid == 1000
    assert rootless.host_uid(0) == 1000  # container root is the user
    assert rootless.host_uid(472) == 100000 + 471  # seen on our machines: 472 -> 100471
    assert rootless.host_uid(65536) == 100000 + 65535 and rootless.host_uid(65537) is None
    assert rootless.container_uid(1000) == 0 and rootless.container_uid(100471) == 472
    assert rootless.container_uid(0) is None  # host root is nobody in the container
    assert not rootless.root_is_host_root

    userns = parse(USERNS_INFO)
    assert userns.kind == "userns-remap" and userns.host_uid(0) == 231072 and userns.host_uid(472) == 231544
    assert userns.container_uid(1000) is None

    desktop = parse(DESKTOP_INFO)
    assert desktop.kind == "desktop" and not desktop.local
    assert not parse(DESKTOP_INFO, client_os="Darwin").ownership_matters
    assert parse(DESKTOP_INFO, client_os="Linux").ownership_matters  # WSL2: the distribution's own files

    remote = parse(ROOTFUL_INFO, docker_host="tcp://10.0.0.5:2376")
    assert remote.kind == "remote" and not remote.ownership_matters and not remote.local
    assert parse(ROOTFUL_INFO, local_kernel="5.15.0").kind == "remote"  # another kernel: another machine

    old = parse({**ROOTFUL_INFO, "ServerVersion": "20.10.24+dfsg1"})
    assert old.version == (20, 10, 24) and not old.start_interval


def test_id_map_text_and_subordinate_ranges():
    assert enginelib.parse_id_map("         0       1000          1\n         1     100000      65536\n") == (
        IdRange(0, 1000, 1), IdRange(1, 100000, 65536))
    assert enginelib.subordinate_range("1000:200000:65536\n", "dev", 1000) == (200000, 65536)  # by uid
    assert enginelib.subordinate_range(SUBUID, "nobody", 4242) is None


def test_permission_decisions_per_engine_kind():
    rootful, rootless, userns = parse(ROOTFUL_INFO), parse(ROOTLESS_INFO, socket_owner=1000), parse(USERNS_INFO)
    user_file = (1000, 1000, 0o400)  # a secret the user wrote, owner-only
    # Rootful: root bypasses the modes (CAP_DAC_OVERRIDE) unless the service dropped it.
    assert enginelib.permits(rootful, user_file, 0, 0, 0o4, dac_override=True)
    assert not enginelib.permits(rootful, user_file, 0, 0, 0o4, dac_override=False)
    assert not enginelib.permits(rootful, user_file, 472, 0, 0o4)
    assert enginelib.permits(rootful, (1000, 1000, 0o444), 472, 0, 0o4)
    # Rootless: container root *is* the user (owner bits); uid 472 is a subordinate uid ("other").
    assert enginelib.permits(rootless, user_file, 0, 0, 0o4, dac_override=False)
    assert not enginelib.permits(rootless, user_file, 472, 0, 0o4)
    assert enginelib.permits(rootless, (100471, 100000, 0o700), 472, 0, 0o7)  # a dir the engine chowned to 472
    assert not enginelib.permits(rootless, (472, 0, 0o700), 472, 0, 0o3)  # `sudo chown 472:0` is wrong here
    # userns-remap: even root is "other" for the user's files (not mapped into its namespace).
    assert not enginelib.permits(userns, user_file, 0, 0, 0o4, dac_override=True)
    assert enginelib.permits(userns, (1000, 1000, 0o444), 0, 0, 0o4, dac_override=True)
    # Docker Desktop on macOS: ownership does not decide anything.
    assert enginelib.permits(parse(DESKTOP_INFO, client_os="Darwin"), (501, 20, 0o400), 472, 0, 0o4)


def test_secret_mode_is_the_least_that_every_reader_can_read():
    Reader = secretslib.Reader
    rootful, rootless, userns = parse(ROOTFUL_INFO), parse(ROOTLESS_INFO, socket_owner=1000), parse(USERNS_INFO)
    root, grafana = Reader("valkey", 0, 0, True), Reader("grafana", 472, 0, True)
    root_no_caps = Reader("hardened", 0, 0, False)
    unknown = Reader("anon", None, None, True)
    as_user, as_root = (1000, 1000), (0, 0)
    assert secretslib.mode_for((root,), rootful, as_user) == 0o400
    assert secretslib.mode_for((root, grafana), rootful, as_user) == 0o444
    assert secretslib.mode_for((root_no_caps,), rootful, as_user) == 0o444  # cap_drop ALL: no bypass
    assert secretslib.mode_for((root_no_caps,), rootful, as_root) == 0o400  # ... unless root owns the file
    assert secretslib.mode_for((root,), rootless, as_user) == 0o400
    assert secretslib.mode_for((grafana,), rootless, as_user) == 0o444
    assert secretslib.mode_for((root,), userns, as_user) == 0o444
    assert secretslib.mode_for((unknown,), rootful, as_user) == 0o444  # not assumed to be root


def test_publishable_ports_for_a_rootless_engine():
    text = "# web\nHTTP_PORT=80\nHTTPS_PORT=443\nPOSTGRES_PORT=5432\nOTHER=22\n"
    new, chosen = steps.publishable_ports(text, {"HTTP_PORT", "HTTPS_PORT", "POSTGRES_PORT"}, 1024)
    assert chosen == ["HTTP_PORT=8080", "HTTPS_PORT=8443"]
    assert new == "# web\nHTTP_PORT=8080\nHTTPS_PORT=8443\nPOSTGRES_PORT=5432\nOTHER=22\n"
    assert steps.publishable_ports(text, {"HTTP_PORT"}, 0) == (text, [])


# ------------------------------------------------------------------ the real engine


def test_computed_mapping_is_the_engines_own(docker):
    """``/proc/self/uid_map`` inside a container is the engine's truth; the toolkit's computation must match."""
    engine = enginelib.info(fresh=True)
    uid_map, gid_map = enginelib.uid_map_from_container(ensure_helper_image())
    assert uid_map and gid_map
    for container_id in (0, 1, 65, 472, 999, 10001, 65534):
        assert engine.host_uid(container_id) == enginelib.map_id(uid_map, container_id), (engine.kind, container_id)
        assert engine.host_gid(container_id) == enginelib.map_id(gid_map, container_id), (engine.kind, container_id)


def _listen_below_1024() -> tuple[socket.socket, int] | None:
    for port in range(1023, 900, -1):
        sock = socket.socket()
        try:
            sock.bind(("127.0.0.1", port))
            sock.listen()
            return sock, port
        except OSError:
            sock.close()
    return None


def test_a_kernel_setting_of_an_engine_elsewhere_is_read_in_a_container(docker):
    """Docker Desktop's VM and remote engines have their own kernel: preflight reads
    vm.max_map_count there through a helper container. The real engine here, taken for a
    remote one (the only change: ``local=False``), answers what its kernel says."""
    from dataclasses import replace

    engine = replace(enginelib.info(fresh=True), local=False)
    expected = int(Path("/proc/sys/vm/max_map_count").read_text())
    assert enginelib.read_sysctl(engine, "vm.max_map_count", ensure_helper_image()) == expected
    assert enginelib.read_sysctl(engine, "vm.max_map_count") is None  # no image: unknown, not guessed


def test_a_listener_below_1024_is_taken_for_a_non_root_user(docker):
    """The bind probe alone would see EACCES as a non-root user and call the port free."""
    from readiness.preflight.check_network import port_taken

    if os.geteuid() == 0:
        found = _listen_below_1024()
        assert found, "no free port below 1024"
        sock, port = found
        "127.0.0.1".encode("idna")  # load the codec socket needs now: the child cannot read the stdlib
        try:  # the check itself runs in a child that dropped to an unprivileged uid
            pid = os.fork()
            if pid == 0:
                try:
                    os.setgroups([])
                    os.setgid(65534)
                    os.setuid(65534)
                    os._exit(0 if port_taken("127.0.0.1", port) else 3)
                finally:
                    os._exit(4)
            _, status = os.waitpid(pid, 0)
        finally:
            sock.close()
        assert os.waitstatus_to_exitcode(status) == 0, f"port {port} reported free to uid 65534"
        return
    # A non-root user cannot listen below 1024 itself: the engine (root) publishes one.
    image = ensure_helper_image()
    port = 999
    name = f"readiness-low-port-{os.getpid()}"
    started = subprocess.run(["docker", "run", "-d", "--rm", "--name", name, "-p", f"127.0.0.1:{port}:80",
                              "--entrypoint", "/bin/sh", image,
                              "-c", "exec nc -lk -p 80 -e true"], capture_output=True, text=True, timeout=120)
    if started.returncode != 0 and "privileged port" in started.stderr:
        pytest.skip("this engine cannot publish ports below 1024 either (rootless)")
    assert started.returncode == 0, started.stderr
    try:
        assert port_taken("127.0.0.1", port), f"port {port} reported free"
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, timeout=60)


def test_each_service_can_write_its_data_dir_from_inside_a_container(repo):
    """After `invoke bootstrap` (no sudo), a container the engine runs as each data owner creates a file."""
    boot = run_invoke(repo, "bootstrap")
    assert boot.returncode == 0, boot.stdout + boot.stderr
    image = ensure_helper_image()
    m = steps.model(repo)
    from readiness.prepare import dirs as dirslib

    dirs = dirslib.data_dirs(m)
    assert len(dirs) >= 9
    for d in dirs:
        owner = f"{d.owner[0]}:{d.owner[1]}" if d.owner else "0:0"
        caps = ["--cap-drop", "ALL"] + (["--cap-add", "DAC_OVERRIDE"] if d.dac_override else [])
        res = subprocess.run(["docker", "run", "--rm", "--network", "none", "--user", owner, *caps,
                              "-v", f"{d.path}:/data", "--entrypoint", "/bin/sh", image, "-c",
                              "echo probe > /data/.probe && cat /data/.probe && rm /data/.probe"],
                             capture_output=True, text=True, timeout=120)
        assert res.returncode == 0 and res.stdout.strip() == "probe", (d.service, owner, res.stderr)
    # Secrets too: each consumer's uid reads each secret it mounts, from inside a container.
    for spec in secretslib.specs(m):
        for reader in spec.readers:
            if spec.certificate or reader.uid is None:
                continue
            caps = [] if reader.dac_override else ["--cap-drop", "DAC_OVERRIDE"]
            res = subprocess.run(["docker", "run", "--rm", "--network", "none", "--user", f"{reader.uid}:{reader.gid}",
                                  *caps, "-v", f"{spec.path}:/run/secrets/s:ro", "--entrypoint", "/bin/sh", image, "-c",
                                  "test -s /run/secrets/s && cat /run/secrets/s >/dev/null"],
                                 capture_output=True, text=True, timeout=120)
            assert res.returncode == 0, (spec.name, reader, res.stderr)


def test_rootless_engine_gets_publishable_ports_and_preflight_names_privileged_ones(repo):
    """On a rootless engine: `invoke env` picks 8080/8443; HTTPS_PORT=443 makes preflight fail naming it."""
    engine = enginelib.info(fresh=True)
    if engine.kind != "rootless":
        pytest.skip(f"needs a rootless engine (this one is {engine.kind}; the rootless CI pass runs it)")
    example = (repo / ".env.example").read_text()  # the shipped defaults (the fixture picked free ports)
    example = re.sub(r"(?m)^HTTP_PORT=\d+$", "HTTP_PORT=80", example)
    (repo / ".env.example").write_text(re.sub(r"(?m)^HTTPS_PORT=\d+$", "HTTPS_PORT=443", example))
    env = run_invoke(repo, "env")
    assert env.returncode == 0 and "HTTP_PORT=8080" in env.stdout and "HTTPS_PORT=8443" in env.stdout, env.stdout
    text = (repo / ".env").read_text()
    (repo / ".env").write_text(text.replace("HTTPS_PORT=8443", "HTTPS_PORT=443"))
    assert run_invoke(repo, "bootstrap").returncode != 0
    pre = run_invoke(repo, "preflight", "--json")
    doc = json.loads(pre.stdout)
    assert pre.returncode == 1
    found = [f for f in doc["findings"] if f["id"] == "port.privileged"]
    assert len(found) == 1 and "HTTPS_PORT=443" in found[0]["message"]
    assert "ip_unprivileged_port_start" in found[0]["fix"] and "HTTPS_PORT" in found[0]["file"]


def test_ulimits_are_lowered_to_what_the_engine_grants_and_never_raised():
    """The pure part of engine.ulimit: /proc/self/limits as the engine's containers read it, and
    each wanted value lowered to the engine's hard limit (-1 is unlimited), never raised."""
    text = ("Limit                     Soft Limit           Hard Limit           Units\n"
            "Max open files            20000                20000                files\n"
            "Max locked memory         8388608              8388608              bytes\n"
            "Max core file size        0                    unlimited            bytes\n")
    granted = ulimitslib.parse_proc_limits(text)
    assert granted == {"nofile": (20000, 20000), "memlock": (8388608, 8388608), "core": (0, -1)}
    Limit = ulimitslib.Limit
    assert ulimitslib.lower(Limit("memlock", -1, -1), 8388608) == Limit("memlock", 8388608, 8388608)
    assert ulimitslib.lower(Limit("nofile", 1024, 65536), 20000) == Limit("nofile", 1024, 20000)
    assert ulimitslib.lower(Limit("nofile", 4096, 4096), 20000) == Limit("nofile", 4096, 4096)
    assert ulimitslib.lower(Limit("core", -1, -1), -1) == Limit("core", -1, -1)
    assert Limit("memlock", -1, -1).text() == "memlock=unlimited" and Limit("nofile", 1, 2).text() == "nofile=1:2"


def test_a_new_env_gets_the_ulimits_this_engine_grants(repo):
    """An engine without CAP_SYS_RESOURCE -- every rootless engine, and ours -- cannot give
    OpenSearch memlock=-1: runc would refuse the container at `up`. `invoke env` asks the engine
    and writes what it grants into a new .env (memory_lock off with it), so bootstrap passes
    and a container starts with exactly the ulimits the stack now renders. An engine that grants
    them (rootful with the capability) has nothing to adapt: skipped there, run by the rootless
    CI pass."""
    image = ensure_helper_image()
    probe = subprocess.run(["docker", "run", "--rm", "--network", "none", "--ulimit", "memlock=-1:-1",
                            "--entrypoint", "/bin/true", image], capture_output=True, text=True, timeout=120)
    if probe.returncode == 0:
        pytest.skip("this engine can raise memlock (CAP_SYS_RESOURCE); needs a rootless engine (the rootless CI "
                    "pass) or one without the capability")
    assert "rlimit" in probe.stderr, probe.stderr
    env = run_invoke(repo, "env")
    assert env.returncode == 0, env.stdout + env.stderr
    assert "OPENSEARCH_MEMORY_LOCK=false" in env.stdout and "OPENSEARCH_MEMLOCK=" in env.stdout, env.stdout
    values = dict(line.split("=", 1) for line in (repo / ".env").read_text().splitlines()
                  if line.startswith("OPENSEARCH_"))
    assert values["OPENSEARCH_MEMLOCK"] != "-1" and values["OPENSEARCH_MEMORY_LOCK"] == "false"
    boot = run_invoke(repo, "bootstrap")
    assert boot.returncode == 0, boot.stdout + boot.stderr
    assert "engine.ulimit" not in boot.stdout
    rendered = subprocess.run(["docker", "compose", "config", "--format", "json"], cwd=repo, capture_output=True,
                              text=True, timeout=120, env=invoke_env(repo))
    assert rendered.returncode == 0, rendered.stderr
    limits = json.loads(rendered.stdout)["services"]["opensearch"]["ulimits"]
    args = [a for n, v in sorted(limits.items()) for a in ("--ulimit", f"{n}={v['soft']}:{v['hard']}")]
    started = subprocess.run(["docker", "run", "--rm", "--network", "none", *args, "--entrypoint", "/bin/true",
                              image], capture_output=True, text=True, timeout=120)
    assert started.returncode == 0, started.stderr
    again = run_invoke(repo, "env")
    assert ".env has every key of .env.example (nothing changed)" in again.stdout, again.stdout


def test_the_engine_chosen_by_docker_context_use_is_the_one_asked(tmp_path, monkeypatch):
    """With DOCKER_HOST unset, the docker CLI talks to the context in use (`docker context use
    rootless` is how many choose a rootless engine): its socket is the one the toolkit inspects
    and writes as DOCKER_SOCKET, not /var/run/docker.sock. The real docker CLI, in a private
    DOCKER_CONFIG."""
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    monkeypatch.delenv("DOCKER_CONTEXT", raising=False)
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    assert enginelib.cli_endpoint() is None  # the default context
    sock = tmp_path / "rootless" / "docker.sock"
    create = ["context", "create", "elsewhere", "--docker", f"host=unix://{sock}"]
    for args in (create, ["context", "use", "elsewhere"]):
        res = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=60)
        assert res.returncode == 0, res.stderr
    assert enginelib.cli_endpoint() == f"unix://{sock}"
    assert enginelib.socket_path(enginelib.cli_endpoint()) == str(sock)
    monkeypatch.setenv("DOCKER_CONTEXT", "default")  # the variable wins over config.json, as for the CLI
    assert enginelib.cli_endpoint() is None
    monkeypatch.setenv("DOCKER_HOST", "unix:///run/other.sock")  # and DOCKER_HOST over both
    assert enginelib.cli_endpoint() == "unix:///run/other.sock"

"""The preflight checks that need a machine this one cannot be, and the parsers behind them.

Docker Desktop, an SELinux-enforcing host and WSL2 cannot exist here, so for
``desktop.file-sharing``, ``host.selinux-relabel`` and ``host.wsl-windows-drive`` the facts
are given by hand -- an :class:`~readiness.system.engine.Engine` parsed from a ``docker info`` of that
kind, the contents of ``/sys/fs/selinux/enforce``, the kernel release of WSL2, Docker
Desktop's ``settings-store.json`` -- while the model is the real one Compose renders for a
copy of the fixture stack. Each check is shown to bite with the fault and to stay silent
without it. The parsers are fed the texts the real files and commands hold.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import run_invoke

from readiness.preflight import check_host, check_network, check_resources, check_storage
from readiness.preflight.facts import Facts
from readiness.prepare import datastate, networks
from readiness.stack import compose, dbfacts
from readiness.system import engine as enginelib
from readiness.system import hostfacts


def engine_of(kind: str, *, client_os: str = "Linux", options: tuple[str, ...] = ()) -> enginelib.Engine:
    doc = {"ServerVersion": "26.1.5", "KernelVersion": "6.1.0", "OperatingSystem": "Debian GNU/Linux 12",
           "Architecture": "x86_64", "NCPU": 4, "MemTotal": 8 * 1024 ** 3, "DockerRootDir": "/var/lib/docker",
           "SecurityOptions": list(options)}
    if kind == enginelib.Kind.DESKTOP:
        doc.update(OperatingSystem="Docker Desktop", Name="docker-desktop", KernelVersion="6.10.14-linuxkit")
    return enginelib.parse_info(doc, docker_host=None, local_kernel=doc["KernelVersion"], local_uid=1000,
                                client_os=client_os)


@pytest.fixture
def mini_model(mini_files):
    assert run_invoke(mini_files, "env").returncode == 0
    return compose.load(mini_files)


def test_a_project_docker_desktop_does_not_share_is_named(mini_model, tmp_path):
    facts = Facts(engine=engine_of(enginelib.Kind.DESKTOP, client_os="Darwin"))
    facts.desktop_shares = ("settings-store.json", ["/Users", "/Volumes"])
    [f] = check_host.check_desktop_sharing(mini_model, facts)
    assert f.id == "desktop.file-sharing" and f.severity == "error" and str(mini_model.project_dir) in f.message
    assert "File sharing" in f.fix
    facts.desktop_shares = ("settings-store.json", [str(mini_model.project_dir.parent)])
    assert check_host.check_desktop_sharing(mini_model, facts) == []
    facts.desktop_shares = None  # settings not found: nothing is claimed
    assert check_host.check_desktop_sharing(mini_model, facts) == []
    # the settings file as Docker Desktop writes it; a missing key means its defaults
    home = tmp_path / "home"
    settings = home / "Library/Group Containers/group.com.docker/settings-store.json"
    settings.parent.mkdir(parents=True)
    settings.write_text(json.dumps({"FilesharingDirectories": ["/Users", "/opt/src"], "MemoryMiB": 8092}))
    assert hostfacts.desktop_shares("Darwin", home) == (str(settings), ["/Users", "/opt/src"])
    settings.write_text(json.dumps({"MemoryMiB": 8092}))
    assert hostfacts.desktop_shares("Darwin", home)[1] == list(hostfacts.DESKTOP_DEFAULT_SHARES["Darwin"])
    assert hostfacts.desktop_shares("Linux", home) is None


def test_selinux_enforcing_names_a_bind_mount_without_a_relabel_option(mini_model):
    engine = engine_of(enginelib.Kind.ROOTFUL, options=("name=seccomp,profile=builtin", "name=selinux"))
    facts = Facts(engine=engine, selinux_enforcing=hostfacts.selinux_enforcing("1\n"))
    [f] = check_host.check_selinux(mini_model, facts)
    assert f.id == "host.selinux-relabel" and f.service == "web" and "data/web" in f.message and ":z" in f.fix
    assert check_host.check_selinux(mini_model, Facts(engine=engine, selinux_enforcing=False)) == []
    no_labels = engine_of(enginelib.Kind.ROOTFUL, options=("name=seccomp,profile=builtin",))
    assert check_host.check_selinux(mini_model, Facts(engine=no_labels, selinux_enforcing=True)) == []
    for vol in mini_model.services["web"]["volumes"]:  # with the relabel option Compose renders
        vol.setdefault("bind", {})["selinux"] = "z"
    assert check_host.check_selinux(mini_model, facts) == []
    assert hostfacts.selinux_enforcing(None) is None and hostfacts.selinux_enforcing("0") is False


def test_a_project_on_a_windows_drive_under_wsl_is_named(mini_model):
    wsl = hostfacts.is_wsl("5.15.153.1-microsoft-standard-WSL2", None)
    assert wsl and not hostfacts.is_wsl("6.1.0-18-amd64", "Linux version 6.1.0-18-amd64 (debian-kernel@...)")
    facts = Facts(engine=engine_of(enginelib.Kind.ROOTFUL), wsl=wsl)
    assert check_host.check_wsl_drive(mini_model, facts) == []  # this copy is not on /mnt/c
    mini_model.project_dir = Path("/mnt/c/Users/me/infra-core")
    [f] = check_host.check_wsl_drive(mini_model, facts)
    assert f.id == "host.wsl-windows-drive" and "/mnt/c/Users/me/infra-core" in f.message and "~/src" in f.fix
    assert hostfacts.on_windows_drive(Path("/mnt/d")) and not hostfacts.on_windows_drive(Path("/mnt/data/x"))


def test_image_references_match_what_the_engine_lists():
    lines = "\n".join(json.dumps(d) for d in [
        {"tags": ["busybox:1.37.0"], "digests": [], "os": "linux", "arch": "amd64", "variant": "",
         "env": ["PATH=/bin"]},
        {"tags": ["quay.io/keycloak/keycloak:26.7.0"], "digests": ["quay.io/keycloak/keycloak@sha256:ab12"],
         "os": "linux", "arch": "arm64", "variant": "v8", "env": None},
    ])
    wanted = ["docker.io/library/busybox:1.37.0", "quay.io/keycloak/keycloak@sha256:ab12", "valkey/valkey:8.1.11"]
    got = hostfacts.parse_images(lines, wanted)
    assert set(got) == set(wanted[:2])
    assert got["quay.io/keycloak/keycloak@sha256:ab12"].platform == "linux/arm64/v8"
    assert hostfacts.normalize_ref("busybox") == "busybox:latest"
    assert hostfacts.normalize_ref("127.0.0.1:5000/e2e/spilo") == "127.0.0.1:5000/e2e/spilo:latest"
    assert hostfacts.normalize_ref("x/y:1@sha256:cd") == "x/y@sha256:cd"


def test_sizes_heaps_and_limits_are_read_as_compose_and_the_jvm_write_them():
    assert [hostfacts.parse_size(v) for v in ("512m", "1536M", "1G", 1610612736, "2g", "x", True)] == \
        [512 * 2 ** 20, 1536 * 2 ** 20, 2 ** 30, 1610612736, 2 * 2 ** 30, None, None]
    spec = {"environment": {"OPENSEARCH_JAVA_OPTS": "-Xms512m -Xmx512m"},
            "deploy": {"resources": {"limits": {"cpus": 2, "memory": "1610612736"}}}}
    assert check_resources.heap(spec) == 512 * 2 ** 20
    assert check_resources.limits(spec) == (2.0, 1610612736)
    assert check_resources.limits({"cpus": "0.5", "mem_limit": "256m"}) == (0.5, 256 * 2 ** 20)


def test_postgres_majors_and_patroni_clusters_come_from_images_and_the_model(repo_files):
    assert dbfacts.major("ghcr.io/zalando/spilo-17:4.0-p3", None) == dbfacts.Major(17, False, "its name")
    assert dbfacts.major("postgres:16.4-bookworm", None).exact
    assert dbfacts.major("x", ["PG_MAJOR=18", "PATH=/usr/lib/postgresql/18/bin"]) == \
        dbfacts.Major(18, True, "PG_MAJOR of the image")
    assert dbfacts.major("e2e/spilo:1", ["PATH=/usr/bin:/usr/lib/postgresql/17/bin"]).newest == 17
    assert dbfacts.major("valkey/valkey:8.1.11", ["PATH=/usr/bin"]) is None
    spilo = dbfacts.Major(17, False, "")
    assert spilo.runs(17) and spilo.runs(15) and not spilo.runs(18)
    assert not dbfacts.Major(17, True, "").runs(16)
    assert dbfacts.data_major("9.6") == 9 and dbfacts.data_major(None) is None
    assert run_invoke(repo_files, "env").returncode == 0
    model = compose.load(repo_files)
    assert dbfacts.clusters(model) == [dbfacts.Cluster("infra-pg", ("spilo-1", "spilo-2"), ("etcd",))]


def test_helper_script_lines_are_parsed_back():
    script = datastate.helper_script(2)
    assert "/mnt/1/*/*/PG_VERSION" in script and script.count("ls -A") == 2
    assert datastate.parse_helper("0 1 \n1 0 17\nnoise\n5 0 16\n", 2) == {0: (True, None), 1: (False, "17")}


def test_an_external_network_of_another_driver_or_scope_is_named(mini_model):
    """Drivers this engine cannot create (macvlan, ipvlan: "operation not supported" here) and the
    swarm scope; the internal bridge is injected for real in test_preflight_findings."""
    name = next(iter(networks.external(mini_model)))
    facts = Facts(engine=engine_of(enginelib.Kind.ROOTFUL))
    cases = (({"driver": "macvlan", "scope": "local", "internal": "false"}, ["driver macvlan"]),
             ({"driver": "overlay", "scope": "swarm", "internal": "false"}, ["driver overlay", "scope swarm"]))
    for net, words in cases:
        facts.networks = {name: net}
        [f] = check_network.check_network_kind(mini_model, facts)
        assert f.id == "network.mismatch" and name in f.message and all(w in f.message for w in words)
        assert "web" in f.message and "proxy" in f.message
    facts.networks = {name: {"driver": "bridge", "scope": "local", "internal": "false"}}
    assert check_network.check_network_kind(mini_model, facts) == []


def test_a_log_without_a_bound_is_named_with_the_engines_default_driver(mini_model):
    """Without a `logging:`, on an engine whose default driver is json-file (what `docker info`
    says here) each service is named, with its file; `local` rotates by itself, and a
    service's own bounded json-file or another driver is not named."""
    files = {"web": "infra/01-web/docker-compose.yml", "proxy": "infra/01-web/docker-compose.yml"}
    json_file = Facts(engine=engine_of(enginelib.Kind.ROOTFUL))
    assert check_storage.check_logs(mini_model, json_file, files) == []  # the fixture's services rotate
    for spec in mini_model.services.values():
        del spec["logging"]
    assert json_file.engine is not None and json_file.engine.logging_driver == "json-file"
    found = check_storage.check_logs(mini_model, json_file, files)
    assert [(f.id, f.severity, f.service, f.file) for f in found] == [
        ("logs.unbounded", "warning", "proxy", files["proxy"]), ("logs.unbounded", "warning", "web", files["web"])]
    assert "the engine's default driver" in found[0].message and "max-size" in found[0].fix

    local = enginelib.parse_info({"ServerVersion": "26.1.5", "KernelVersion": "6.1.0", "LoggingDriver": "local"},
                                 docker_host=None, local_kernel="6.1.0", local_uid=1000)
    assert check_storage.check_logs(mini_model, Facts(engine=local), files) == []

    mini_model.services["web"]["logging"] = {"driver": "json-file", "options": {"max-size": "10m"}}
    mini_model.services["proxy"]["logging"] = {"driver": "json-file", "options": {"max-file": "3"}}
    [f] = check_storage.check_logs(mini_model, Facts(engine=local), files)
    assert f.service == "proxy" and "(json-file, its driver)" in f.message
    mini_model.services["proxy"]["logging"] = {"driver": "journald"}
    assert check_storage.check_logs(mini_model, json_file, files) == []

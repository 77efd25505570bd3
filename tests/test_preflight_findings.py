"""Each prerequisite broken on a bootstrapped stack gives exactly one finding naming it.

On the small fixture stack and on this repository's own stack: a missing secret file; an
unescaped ``$VAR`` in a healthcheck; a bind-mount directory owned by another uid; a published
port taken by another process; a required variable blanked in .env; a certificate that does not
cover a routed hostname. Reverting the change brings exit 0 again. (REQ-BOOT-005, STORY-02,
VAL-PLN-003)
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import tarfile
import uuid
from dataclasses import dataclass

import pytest
from conftest import invoke_env, require_tool, run_invoke
from helper_image import engine_sh, ensure_helper_image

from readiness.system import engine as enginelib
from readiness.system import hostfacts


def engine_chown(path, owner: str) -> None:
    """chown ``path`` to a container ``owner`` through the engine."""
    engine_sh(path, f"chown {owner} /d")

#: Environment-dependent warnings that are not what these tests break (vm.max_map_count is
#: 65530 on a developer machine that has not raised it; CI raises it in .ci/run).
HOST_WARNINGS = {"host.max-map-count"}


@dataclass(frozen=True)
class Stack:
    fixture: str
    secret: str  # a secret file and the service that mounts it
    service: str
    compose_file: str  # the file defining `service`
    healthcheck: str  # a literal in service's healthcheck to put a $VAR into
    data_dir: str
    uid: int
    port_var: str
    port_service: str
    label_anchor: str  # a label line in compose_file after which a new router can be added


STACKS = [
    Stack("mini", "web_password", "web", "infra/01-web/docker-compose.yml", "http://127.0.0.1:8080/",
          "data/web", 472, "WEB_PORT", "web", "      traefik.enable: \"true\"\n"),
    Stack("repo", "grafana_admin_password", "grafana", "infra/06-observability/docker-compose.yml",
          "http://localhost:3000/api/health", "data/grafana", 472, "HTTPS_PORT", "traefik",
          "      - traefik.enable=true\n"),
]


def findings(project):
    result = run_invoke(project, "preflight", "--json")
    doc = json.loads(result.stdout)
    return result.returncode, [f for f in doc["findings"] if f["id"] not in HOST_WARNINGS]


def only(project, ident, code=1):
    """Exactly one finding (beside the host's own warnings), with ``ident``; the exit code is
    ``code`` (0 for a warning, which does not block the boot)."""
    got, found = findings(project)
    assert got == code and [f["id"] for f in found] == [ident], (got, found)
    return found[0]


@pytest.fixture(params=STACKS, ids=[s.fixture for s in STACKS])
def ready(request, docker):
    stack: Stack = request.param
    project = request.getfixturevalue(stack.fixture)
    result = run_invoke(project, "bootstrap")
    assert result.returncode == 0, result.stdout + result.stderr
    assert findings(project) == (0, [])
    return project, stack


def test_missing_secret_file(ready):
    project, stack = ready
    path = project / "secrets" / stack.secret
    saved, mode = path.read_bytes(), path.stat().st_mode
    path.unlink()
    f = only(project, "secret.missing")
    assert f["file"] == f"secrets/{stack.secret}" and stack.service in f["service"].split(",")
    path.write_bytes(saved)
    os.chmod(path, mode)
    assert findings(project) == (0, [])


def test_unescaped_dollar_in_healthcheck(ready):
    project, stack = ready
    compose = project / stack.compose_file
    original = compose.read_text()
    assert original.count(stack.healthcheck) == 1
    compose.write_text(original.replace(stack.healthcheck, stack.healthcheck + "?probe=$PROBE_TOKEN"))
    f = only(project, "compose.unescaped-dollar")
    assert "$PROBE_TOKEN" in f["message"] and f["service"] == stack.service
    assert f["file"] == stack.compose_file
    compose.write_text(original)
    assert findings(project) == (0, [])


def test_data_dir_owned_by_another_uid(ready):
    """The directory is given away through the engine (as any user could), so this runs as non-root too;
    the fix the finding names, `invoke dirs --repair`, brings exit 0 back without sudo."""
    project, stack = ready
    data = project / stack.data_dir
    engine_chown(data, "12345:12345")
    f = only(project, "dir.not-writable")
    assert f["file"] == stack.data_dir and f["service"] == stack.service and str(stack.uid) in f["message"]
    assert "invoke dirs --repair" in f["fix"] and f"owner {stack.uid}:" in f["fix"]
    assert "sudo" not in f["fix"].replace("no sudo", "")  # says that none is needed, never asks for it
    plain = run_invoke(project, "dirs")
    assert plain.returncode == 1 and "invoke dirs --repair" in plain.stderr, plain.stdout + plain.stderr
    repaired = run_invoke(project, "dirs", "--repair")
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert f"{stack.data_dir}: repaired (owner {stack.uid}:" in repaired.stdout
    assert findings(project) == (0, [])


def test_data_dir_with_a_wrong_mode_only_is_repaired_without_sudo(ready):
    """Owner right, mode wrong (0500: its uid cannot create files): as a user who does not own
    the directory, `invoke dirs --repair` sets the mode through the engine. (It once ran chmod
    on the host, got EPERM as non-root and advised `sudo chown -R` to the user.)"""
    project, stack = ready
    data = project / stack.data_dir
    engine_sh(data, "chmod 0500 /d")
    f = only(project, "dir.not-writable")
    assert f["file"] == stack.data_dir and "mode 0500" in f["message"], f
    repaired = run_invoke(project, "dirs", "--repair")
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert "sudo" not in repaired.stdout + repaired.stderr
    assert data.stat().st_mode & 0o777 == 0o750
    assert findings(project) == (0, [])


def test_published_port_taken(ready):
    project, stack = ready
    env = (project / ".env").read_text().splitlines()
    port = int(next(ln for ln in env if ln.startswith(stack.port_var + "=")).split("=")[1])
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
        sock.listen()
        f = only(project, "port.in-use")
        assert f"127.0.0.1:{port} ({stack.port_var}={port})" in f["message"] and f["service"] == stack.port_service
        assert f["file"] == f".env ({stack.port_var})" and stack.port_var in f["fix"]
    assert findings(project) == (0, [])


def test_required_variable_blanked(ready):
    project, _ = ready
    env = project / ".env"
    original = env.read_text()
    assert "LOCAL_DOMAIN=localhost" in original
    env.write_text(original.replace("LOCAL_DOMAIN=localhost", "LOCAL_DOMAIN="))
    f = only(project, "env.required-unset")
    assert "LOCAL_DOMAIN" in f["message"] and f["file"].startswith(".env:")
    env.write_text(original)
    assert findings(project) == (0, [])


def test_an_image_pin_the_repository_moved_is_named_until_taken_or_kept(ready):
    """A `git pull` that moves a pin in .env.example leaves .env on the old one: named, with
    both values and the .env line, as a warning (the boot goes on with the old image)."""
    project, _ = ready
    example = project / ".env.example"
    original = example.read_text()
    key, old = re.search(r"^([A-Z0-9_]+_IMAGE)=(\S+)$", original, re.M).groups()
    example.write_text(original.replace(f"{key}={old}\n", f"{key}={old}-moved\n"))
    try:
        f = only(project, "env.stale-default", code=0)
        assert f["severity"] == "warning" and key in f["message"] and f"{old!r}" in f["message"]
        assert f"{old + '-moved'!r}" in f["message"] and f["file"].startswith(".env:")
        assert f"invoke env --keep {key}" in f["fix"]
        assert run_invoke(project, "bootstrap").returncode == 0  # `invoke env` on its way does not forget it
        assert only(project, "env.stale-default", code=0)["message"] == f["message"]
        kept = run_invoke(project, "env", "--keep", key)
        assert kept.returncode == 0, kept.stdout + kept.stderr
        assert findings(project) == (0, [])
    finally:
        example.write_text(original)


def test_certificate_missing_a_routed_hostname(ready):
    project, stack = ready
    compose = project / stack.compose_file
    original = compose.read_text()
    rule = "traefik.http.routers.extra.rule" + (": " if stack.fixture == "mini" else "=")
    extra = "      " + ("" if stack.fixture == "mini" else "- ") + rule + \
        "Host(`extra.${LOCAL_DOMAIN:?set LOCAL_DOMAIN in .env}`)\n"
    assert stack.label_anchor in original
    # the anchor is the first label of the service block being edited
    head, _, tail = original.partition(stack.label_anchor)
    compose.write_text(head + stack.label_anchor + extra + tail)
    f = only(project, "cert.invalid")
    assert "extra.localhost" in f["message"]
    compose.write_text(original)
    assert findings(project) == (0, [])


def test_secret_files_tracked_by_git_are_refused(mini):
    assert run_invoke(mini, "bootstrap").returncode == 0
    require_tool("git", "the test tracks a secret in a real git repository")
    subprocess.run(["git", "init", "-q", str(mini)], check=True)
    subprocess.run(["git", "-C", str(mini), "add", "-f", "secrets/web_password"], check=True)
    f = only(mini, "secret.tracked")
    assert f["file"] == "secrets/web_password"
    result = run_invoke(mini, "secrets")
    assert result.returncode != 0 and "git rm --cached secrets/web_password" in result.stderr
    assert "Traceback" not in result.stderr


# ------------------------------------------------------------------ what the engine already holds,
# mounts, resources, platform (stale state: tests/test_preflight_state.py)


def project_name(project) -> str:
    return re.search(r"(?m)^name: (\S+)$", (project / "docker-compose.yml").read_text()).group(1)


def set_env(project, key: str, value: str) -> str:
    """Set ``key`` in the project's .env; returns the previous text (to restore it)."""
    env = project / ".env"
    original = env.read_text()
    assert re.search(rf"(?m)^{key}=", original), key
    env.write_text(re.sub(rf"(?m)^{key}=.*$", f"{key}={value}", original))
    return original


def docker_cli(*args: str) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    return res


def engine_info(field: str) -> str:
    return docker_cli("info", "--format", "{{." + field + "}}").stdout.strip()


#: Per stack: the variable naming its external network, a service's image variable, and where
#: a service block starts (to give it limits) in which file.
ENGINE_FACTS = {
    "mini": ("MINI_NETWORK", "WEB_IMAGE", "web", "infra/01-web/docker-compose.yml", "  web:\n"),
    "repo": ("EDGE_NETWORK", "VALKEY_IMAGE", "valkey", "infra/07-cache/docker-compose.yml", "  valkey:\n"),
}


def with_limits(project, stack: Stack, limits: str) -> str:
    """Give the stack's chosen service ``deploy.resources.limits`` (replacing any); returns the old text."""
    _, _, _, file, anchor = ENGINE_FACTS[stack.fixture]
    path = project / file
    original = path.read_text()
    head, _, tail = original.partition(anchor)
    tail = re.sub(r"(?m)^    deploy:\n(      .*\n)+", "", tail, count=1)  # the service's own block, if any
    block = "    deploy:\n      resources:\n        limits:\n"
    block += "".join(f"          {line}\n" for line in limits.split(";"))
    path.write_text(head + anchor + block + tail)
    return original


def test_containers_of_this_project_from_another_directory(ready):
    project, _ = ready
    name, other = project_name(project), "/srv/another-checkout"
    container = f"readiness-test-{uuid.uuid4().hex[:8]}"
    docker_cli("create", "--name", container, "--label", f"com.docker.compose.project={name}",
           "--label", f"com.docker.compose.project.working_dir={other}", ensure_helper_image(), "true")
    try:
        f = only(project, "project.other-directory")
        assert f["file"] == other and container in f["message"] and name in f["message"]
        assert f"docker compose -p {name} down" in f["fix"] and "COMPOSE_PROJECT_NAME" in f["fix"]
    finally:
        docker_cli("rm", "-f", container)
    assert findings(project) == (0, [])


def test_published_port_held_by_a_container(ready):
    """The port is held by a real container of another Compose project: the finding names both."""
    project, stack = ready
    env = (project / ".env").read_text().splitlines()
    port = int(next(ln for ln in env if ln.startswith(stack.port_var + "=")).split("=")[1])
    container, other = f"readiness-test-{uuid.uuid4().hex[:8]}", f"other-stack-{uuid.uuid4().hex[:6]}"
    docker_cli("run", "-d", "--name", container, "--label", f"com.docker.compose.project={other}",
           "-p", f"127.0.0.1:{port}:80", "--entrypoint", "/bin/sleep", ensure_helper_image(), "600")
    try:
        f = only(project, "port.in-use")
        assert f"published by container {container} of Compose project {other}" in f["message"]
        assert f"docker compose -p {other} down" in f["fix"] and f["service"] == stack.port_service
    finally:
        docker_cli("rm", "-f", container)
    assert findings(project) == (0, [])


def test_external_network_that_is_not_a_plain_bridge(ready):
    project, stack = ready
    var = ENGINE_FACTS[stack.fixture][0]
    lines = (project / ".env").read_text().splitlines()
    network = next(ln.split("=", 1)[1] for ln in lines if ln.startswith(var + "="))
    docker_cli("network", "rm", network)
    docker_cli("network", "create", "--internal", network)  # what another tool might have made under this name
    f = only(project, "network.mismatch")
    assert network in f["message"] and "internal" in f["message"] and f"docker network rm {network}" in f["fix"]
    docker_cli("network", "rm", network)
    assert run_invoke(project, "networks").returncode == 0
    assert findings(project) == (0, [])


def test_read_only_mount_source_missing_then_a_directory(repo):
    assert run_invoke(repo, "bootstrap").returncode == 0
    rel = "infra/02-postgres/haproxy/haproxy.cfg"
    source = repo / rel
    saved = source.read_bytes()
    source.unlink()
    f = only(repo, "mount.missing")
    assert (f["service"], f["file"]) == ("haproxy", rel) and "/usr/local/etc/haproxy/haproxy.cfg" in f["message"]
    assert f"git checkout -- {rel}" in f["fix"]
    source.mkdir()  # what Docker leaves when `up` ran while the file was missing
    f = only(repo, "mount.wrong-kind")
    assert (f["service"], f["file"]) == ("haproxy", rel) and "empty directory" in f["message"]
    assert f"rmdir {rel}" in f["fix"]
    source.rmdir()
    source.write_bytes(saved)
    assert findings(repo) == (0, [])


def test_cpu_and_memory_limits_against_the_engine(ready):
    project, stack = ready
    service, file = ENGINE_FACTS[stack.fixture][2], ENGINE_FACTS[stack.fixture][3]
    ncpu, mem = int(engine_info("NCPU")), int(engine_info("MemTotal"))
    original = with_limits(project, stack, f'cpus: "{ncpu + 1}";memory: 64M')
    f = only(project, "resources.cpus")
    assert f["service"] == service and f["file"] == file and f"{ncpu} CPU(s)" in f["message"]
    with_limits(project, stack, f'cpus: "0.5";memory: {2 * mem // 1024 ** 2}M')
    f = only(project, "resources.memory", code=0)  # limits are caps: a warning
    assert f["severity"] == "warning" and f"{service} " in f["message"]
    (project / file).write_text(original)
    assert findings(project) == (0, [])


def test_jvm_heap_against_its_memory_limit(repo):
    assert run_invoke(repo, "bootstrap").returncode == 0
    original = set_env(repo, "OPENSEARCH_HEAP", "2g")  # opensearch's limit is 1536M
    f = only(repo, "resources.heap")
    assert f["severity"] == "error" and f["service"] == "opensearch" and f["file"] == ".env (OPENSEARCH_HEAP)"
    assert "OPENSEARCH_HEAP" in f["fix"] and "768m" in f["fix"]
    set_env(repo, "OPENSEARCH_HEAP", "1200m")
    assert only(repo, "resources.heap", code=0)["severity"] == "warning"
    (repo / ".env").write_text(original)
    assert findings(repo) == (0, [])


def test_free_space_below_what_the_stack_needs(ready):
    """The real filesystems' free space, against a need raised above it in the stack's own declaration."""
    project, stack = ready
    compose = project / "docker-compose.yml"
    original = compose.read_text()
    anchor = "  helper-image: ${HELPER_IMAGE:-busybox:1.37.0}\n"
    head, _, tail = original.partition(anchor)
    tail = re.sub(r"(?m)^  free-space:\n(    .*\n)+", "", tail, count=1)
    env_text = set_env(project, ENGINE_FACTS[stack.fixture][1], f"readiness-test/absent:{uuid.uuid4().hex[:8]}")

    compose.write_text(head + anchor + "  free-space:\n    data: 100000T\n" + tail)
    f = only(project, "disk.data", code=0)
    assert f["severity"] == "warning" and f["file"].startswith("data/") and "DATA_ROOT" in f["fix"]
    compose.write_text(head + anchor + "  free-space:\n    engine: 100000T\n" + tail)
    f = only(project, "disk.engine", code=0)  # an image is still to be pulled
    assert engine_info("DockerRootDir") in f["message"] and "image(s) still to pull" in f["message"]
    compose.write_text(original)
    (project / ".env").write_text(env_text)
    assert findings(project) == (0, [])


def test_image_built_for_another_architecture(ready, tmp_path):
    project, stack = ready
    var, service = ENGINE_FACTS[stack.fixture][1], ENGINE_FACTS[stack.fixture][2]
    native = hostfacts.OCI_ARCH.get(engine_info("Architecture"))
    foreign = "arm64" if native != "arm64" else "amd64"
    image = f"readiness-test/foreign-arch:{uuid.uuid4().hex[:8]}"
    empty = tmp_path / "empty.tar"
    with tarfile.open(empty, "w"):
        pass
    docker_cli("image", "import", "--platform", f"linux/{foreign}", str(empty), image)
    try:
        original = set_env(project, var, image)
        emulated = hostfacts.can_emulate(foreign, hostfacts.binfmt_handlers())
        f = only(project, "image.platform", code=0 if emulated else 1)
        assert f["service"] == service and f["file"] == f".env ({var})" and f"linux/{foreign}" in f["message"]
        assert f"docker pull --platform linux/{native} {image}" in f["fix"]
        (project / ".env").write_text(original)
        assert findings(project) == (0, [])
    finally:
        docker_cli("image", "rm", image)


# --------------------------------------------------------------------- ulimits the engine cannot apply


def put_env(project, values: dict[str, str]) -> None:
    """Set each key in the project's .env, appending the ones it lacks."""
    env = project / ".env"
    text = env.read_text()
    for key, value in values.items():
        if re.search(rf"(?m)^{key}=", text):
            text = re.sub(rf"(?m)^{key}=.*$", f"{key}={value}", text)
        else:
            text += f"{key}={value}\n"
    env.write_text(text)


def engine_starts(ulimits: list[str]) -> subprocess.CompletedProcess[str]:
    """A container of the helper image, started with ``--ulimit`` each of ``ulimits``."""
    args = [a for u in ulimits for a in ("--ulimit", u)]
    return subprocess.run(["docker", "run", "--rm", "--network", "none", *args, "--entrypoint", "/bin/true",
                           ensure_helper_image()], capture_output=True, text=True, timeout=120)


def rendered_ulimits(project, service: str) -> list[str]:
    """``name=soft:hard`` of each ulimit the stack gives ``service``, as Compose renders it now."""
    res = subprocess.run(["docker", "compose", "config", "--format", "json"], cwd=project, capture_output=True,
                         text=True, timeout=120, env=invoke_env(project))
    assert res.returncode == 0, res.stderr
    limits = json.loads(res.stdout)["services"][service].get("ulimits") or {}
    return [f"{n}={v['soft']}:{v['hard']}" if isinstance(v, dict) else f"{n}={v}:{v}"
            for n, v in sorted(limits.items())]


def fixed_lines(fix: str) -> dict[str, str]:
    """The ``KEY=value`` lines a fix says to set in .env."""
    m = re.search(r"set in \.env: ((?:[A-Z_][A-Z0-9_]*=\S+ ?)+)", fix)
    assert m, fix
    return dict(item.split("=", 1) for item in m.group(1).split())


def test_ulimits_the_engine_cannot_apply_are_refused_with_the_env_lines_that_fit(repo):
    """Each refusal is the engine's, checked here with the same `docker run --ulimit` that
    `up` would need: OpenSearch's open files above the kernel's fs.nr_open (no engine may raise
    a limit above it, CAP_SYS_RESOURCE or not), and, on an engine that cannot raise memlock
    (rootless, or without CAP_SYS_RESOURCE, as on our machines), the shipped memlock=-1. The
    finding names the .env lines; set, they render ulimits the engine starts a container with."""
    result = run_invoke(repo, "bootstrap")
    assert result.returncode == 0, result.stdout + result.stderr
    assert findings(repo) == (0, [])
    ceiling = int(engine_sh_output("cat /proc/sys/fs/nr_open"))
    cases = [{"OPENSEARCH_NOFILE": str(ceiling + 1)}]
    if "rlimit" in engine_starts(["memlock=-1:-1"]).stderr:
        cases.append({"OPENSEARCH_MEMLOCK": "-1", "OPENSEARCH_MEMORY_LOCK": "true"})
    for case in cases:
        put_env(repo, case)
        refused = engine_starts(rendered_ulimits(repo, "opensearch"))
        assert refused.returncode != 0 and "rlimit" in refused.stderr, refused.stderr  # what `up` would hit
        f = only(repo, "engine.ulimit")
        assert f["service"] == "opensearch" and "runc would refuse" in f["message"], f
        lines = fixed_lines(f["fix"])
        assert set(case) <= set(lines) and all(k in f["file"] for k in lines), f
        if "OPENSEARCH_MEMLOCK" in case:
            assert lines["OPENSEARCH_MEMORY_LOCK"] == "false" and lines["OPENSEARCH_MEMLOCK"] != "-1"
        put_env(repo, lines)
        assert findings(repo) == (0, [])
        started = engine_starts(rendered_ulimits(repo, "opensearch"))
        assert started.returncode == 0, started.stderr


def engine_sh_output(script: str) -> str:
    """``script``'s output in a helper container of the engine (its kernel, not this machine's)."""
    res = enginelib.helper(ensure_helper_image(), script, [], timeout=120)
    return res.stdout.strip()

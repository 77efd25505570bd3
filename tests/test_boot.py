"""`invoke up`'s two phases and where the stack lives, without booting the stack.

The booting itself is the end-to-end suite's (tests/e2e); here: the compatibility override
for engines before Docker 25 as Compose itself renders it, the pull progress and error
classification, the "which services started" rule, and ``invoke urls`` on this repository's
own stack -- every routed service once, each URL a name the certificate covers, no secret
value printed.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

from conftest import run_invoke
from cryptography import x509

from readiness import steps
from readiness.run import pull, start
from readiness.stack import compose
from readiness.system.engine import parse_info


def test_engines_before_25_boot_without_start_interval(repo):
    """The override `up` adds for an old engine removes exactly start_interval, as Compose renders it."""
    assert run_invoke(repo, "env").returncode == 0
    model = compose.load(repo)
    shipped = {svc for svc, spec in model.services.items() if "start_interval" in (spec.get("healthcheck") or {})}
    assert len(shipped) >= 12  # every long-running service of the stack
    old = parse_info({"ServerVersion": "20.10.24+dfsg1", "KernelVersion": "6.1"}, docker_host=None,
                     local_kernel="6.1", local_uid=0)
    new = parse_info({"ServerVersion": "26.1.5", "KernelVersion": "6.1"}, docker_host=None, local_kernel="6.1",
                     local_uid=0)
    assert start.compat_files(model, new) == []
    files = start.compat_files(model, old)
    assert files == [repo / start.COMPAT_FILE]
    argv = compose.command(model.cli.argv, repo, "config", "--format", "json", extra_files=files)
    res = subprocess.run(argv, cwd=repo, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    rendered = json.loads(res.stdout)["services"]
    assert not [svc for svc, spec in rendered.items() if "start_interval" in (spec.get("healthcheck") or {})]
    for svc in shipped:  # everything else of each healthcheck is as shipped
        before = {k: v for k, v in model.services[svc]["healthcheck"].items() if k != "start_interval"}
        after = rendered[svc]["healthcheck"]
        assert after["test"] == before["test"] and after.get("retries") == before.get("retries"), svc


def test_pull_progress_and_errors():
    images = [pull.Image("127.0.0.1:5000/e2e/a:1", ("a", "a2"), "A_IMAGE"), pull.Image("b:1", ("b",), "B_IMAGE")]
    lines: list[str] = []
    progress = pull.PullProgress(images, lines.append)
    for event in (
        {"id": "a", "text": "Pulling"}, {"id": "b", "text": "Pulling"},
        {"id": "l1", "parent_id": "a", "text": "Downloading", "current": 1_000_000, "total": 4_000_000},
        {"id": "b", "text": "Error", "status": "manifest unknown"},
        {"id": "l1", "parent_id": "a", "text": "Pull complete"},
        {"id": "a", "text": "Pulled"}, {"id": "a2", "text": "Pulled"},  # a2 shares a's image: one line
    ):
        progress.event(json.dumps(event))
    progress.event("not json")
    assert [p.image.ref for p in progress.failed()] == ["b:1"]
    assert lines[-1] == "127.0.0.1:5000/e2e/a:1: done (4.0 MB in 0 s)", lines
    assert "b:1: failed: manifest unknown" in lines and sum("done" in ln for ln in lines) == 1
    assert images[0].registry == "127.0.0.1:5000" and images[1].registry == "docker.io"
    assert pull.Image("localhost/x:1", (), None).registry == "localhost"
    assert pull.Image("library/x:1", (), None).registry == "docker.io"
    err = pull.pull_error([(images[1], "manifest unknown")])
    assert "b:1 (registry docker.io, set by B_IMAGE; services b): manifest unknown" in err.message
    assert "B_IMAGE" in (err.where or "") and "docker login" in (err.fix or "")
    for transient in ("net/http: TLS handshake timeout", "read: connection reset by peer", "unexpected EOF",
                      "received unexpected HTTP status: 503 Service Unavailable", "toomanyrequests: rate"):
        assert pull._TRANSIENT.search(transient), transient
    for final in ("manifest unknown", "dial tcp 127.0.0.1:5002: connect: connection refused", "unauthorized",
                  "pull access denied", "no such host"):
        assert not pull._TRANSIENT.search(final), final


def test_started_services_come_from_container_ids():
    before = {"a": {"ID": "1", "State": "running"}, "b": {"ID": "2", "State": "exited"},
              "c": {"ID": "3", "State": "running"}}
    after = {"a": {"ID": "1", "State": "running"}, "b": {"ID": "2", "State": "running"},
             "c": {"ID": "4", "State": "running"}, "d": {"ID": "5", "State": "running"}}
    assert start.started_services(before, after) == {"b", "c", "d"}
    # Preflight's `docker ps --no-trunc` gives full ids, Compose may give short ones: the same container.
    full = "f" * 12 + "0" * 52
    assert start.started_services({"a": {"ID": full, "State": "running"}},
                                  {"a": {"ID": full[:12], "State": "running"}}) == set()
    assert start.started_services({"a": {"ID": "", "State": "running"}}, {"a": {"ID": "", "State": "running"}}) == {"a"}


def test_project_containers_read_like_compose_ps():
    """`up` reads its project's containers with `docker ps`; what `compose ps --format json`
    says of the same containers (recorded from Compose 2.40 on Docker 26.1): service, name,
    state, health from the status text, the exit code, and no `compose run` one-off."""
    from readiness.system.engine import parse_project_containers

    def line(name, service, state, status, oneoff="False"):
        labels = (f"com.docker.compose.oneoff={oneoff},com.docker.compose.depends_on=etcd:service_healthy:false,"
                  f"spilo-1:service_started:false,com.docker.compose.project=p"
                  + (f",com.docker.compose.service={service}" if service else ""))
        return json.dumps({"ID": name * 8, "Names": f"p-{name}-1", "Labels": labels, "State": state,
                           "Status": status, "Ports": ""})

    rows = parse_project_containers("\n".join([
        line("a", "grafana", "running", "Up 14 seconds (healthy)"),
        line("b", "init", "exited", "Exited (3) 14 seconds ago"),
        line("c", "valkey", "running", "Up 2 seconds (health: starting)"),
        line("d", "loki", "running", "Up 3 minutes (unhealthy)"),
        line("e", "etcd", "exited", "Exited (137) Less than a second ago"),
        line("f", "traefik", "created", "Created"),
        line("g", "grafana", "running", "Up 1 second", oneoff="True"),
        line("h", "", "running", "Up 1 second"),  # the project's label, no service's: not Compose's
        "WARNING: a line that is not a container",
    ]) + "\n")
    assert [(r["Service"], r["Name"], r["State"], r["Health"], r["ExitCode"]) for r in rows] == [
        ("grafana", "p-a-1", "running", "healthy", 0), ("init", "p-b-1", "exited", "", 3),
        ("valkey", "p-c-1", "running", "starting", 0), ("loki", "p-d-1", "running", "unhealthy", 0),
        ("etcd", "p-e-1", "exited", "", 137), ("traefik", "p-f-1", "created", "", 0)]
    assert rows[0]["ID"] == "a" * 8


def test_up_reads_preflights_snapshot_of_its_own_project(repo):
    """`up` starts from what preflight just saw: this project's service containers (not another
    project's, not a `compose run` one-off), and the images it lacks; nothing when the engine
    was not asked, so that `up` asks itself."""
    from readiness.preflight.facts import Container, Facts

    assert run_invoke(repo, "env").returncode == 0
    model = compose.load(repo)
    wanted = pull.images(model)
    assert len(wanted) >= 2
    engine = parse_info({"ServerVersion": "26.1.5", "KernelVersion": "6.1"}, docker_host=None, local_kernel="6.1",
                    local_uid=0)

    def box(name, project, service, state="running", oneoff=False):
        return Container(name=name, project=project, working_dir="", state=state, ports=(), id=name * 3,
                         service=service, oneoff=oneoff)

    facts = Facts(engine=engine, containers=[box("a", model.name, "valkey"), box("b", "other", "grafana"),
                                             box("c", model.name, "valkey", oneoff=True),
                                             box("d", model.name, "etcd", state="exited"), box("e", model.name, "")],
                  images={i.ref: None for i in wanted[1:]}, images_known=True, containers_known=True)
    snap = steps.up_snapshot(model, facts)
    assert snap.engine is engine
    assert snap.states == {"valkey": {"ID": "aaa", "State": "running"}, "etcd": {"ID": "ddd", "State": "exited"}}
    assert [i.ref for i in snap.missing or []] == [wanted[0].ref]
    unknown = steps.up_snapshot(model, Facts(engine=engine, images_known=False, containers_known=False))
    assert unknown.missing is None and unknown.states is None  # `docker ps` failed: not "nothing runs"
    assert steps.up_snapshot(model, Facts()) == start.Snapshot()
    assert steps.up_snapshot(model, None) == start.Snapshot()


def test_urls_name_every_routed_service_once_with_covered_names(repo):
    boot_run = run_invoke(repo, "bootstrap")
    assert boot_run.returncode == 0, boot_run.stdout + boot_run.stderr
    res = run_invoke(repo, "urls", "--json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    model = compose.load(repo)
    assert [s["service"] for s in doc["services"]] == sorted(model.routers)  # each routed service, once
    cert = x509.load_pem_x509_certificate((repo / "secrets" / "certs" / "cert.pem").read_bytes())
    names = set(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
                .get_values_for_type(x509.DNSName))
    port = int(next(ln.split("=")[1] for ln in (repo / ".env").read_text().splitlines()
                    if ln.startswith("HTTPS_PORT=")))
    for entry in doc["services"]:
        for url in entry["urls"]:
            assert url.startswith("https://") and f":{port}/" in url, url  # the port, since it is not 443
            host = url.removeprefix("https://").split(":")[0].split("/")[0]
            assert host in names, (entry["service"], host)
        if entry["password_file"]:
            assert (repo / entry["password_file"]).is_file(), entry
    assert {c["service"] for c in doc["connections"]} == {"haproxy", "valkey"}
    for c in doc["connections"]:  # user names at most, never a password
        assert urlsplit(c["url"]).password is None and (repo / c["password_file"]).is_file(), c
    # No secret value in either form of the output.
    text = run_invoke(repo, "urls")
    assert text.returncode == 0 and "Where the stack lives" in text.stdout
    for secret in Path(repo / "secrets").glob("*"):
        if secret.is_file() and secret.name not in ("README.md", ".gitkeep"):
            value = secret.read_text().strip()
            for line in value.splitlines():
                if len(line) >= 8:
                    assert line not in res.stdout + text.stdout + text.stderr, secret.name

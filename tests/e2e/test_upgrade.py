"""End-to-end: ``invoke upgrade --yes`` rolls the session's stack onto moved pins, and back at a failure.

A ``git pull`` that moves pins is what the scenario plays: ``.env`` and ``.env.example`` first
hold the images the stack runs (``GRAFANA_IMAGE``, a contract fake's stand-in, and
``SPILO_IMAGE``, the real Patroni/PostgreSQL image built from Debian), recorded by
``invoke env`` as what the repository shipped; then ``.env.example`` moves both to a second
local tag of the same build. The override's ``image`` keys of those services are removed, so
``.env`` decides, as for a user. No registry is needed: the new tags are on the engine
already, which is what the pull step finds.

1. The upgrade: a fresh backup, grafana recreated alone, the Patroni members one at a time
   with a planned switchover between them (the old leader is the last one recreated), and
   ``invoke verify`` green at the end; rows written before are there, every container runs
   its new tag, and a second plan has nothing to move.
2. A new image that cannot start (its entrypoint replaced by a file that is not a program):
   the upgrade stops at grafana, exit 1, naming it; grafana runs the image it ran before,
   ``.env`` holds that pin again, the plan still offers the move, and health is green.
3. The repository moves the pins back: the same rolling restart (a switchover again) returns
   every service to the images the session built, as test_dbtier.py expects them.

Runs after test_backup.py and before test_dbtier.py (conftest orders the files).
"""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest
import yaml
from jsonschemas import validator

from . import dbclient as db
from . import realdb
from .stack import Stack, run

pytestmark = [pytest.mark.e2e, pytest.mark.docker]

TABLE = "readiness_upgrade_rows"
STATE: dict[str, str] = {}


@pytest.fixture(autouse=True)
def _real_programs() -> None:
    reason = realdb.unavailable_reason()
    if reason:
        pytest.skip(reason)


def out(res: subprocess.CompletedProcess[str]) -> str:
    return f"exit {res.returncode}\n--- stdout\n{res.stdout}\n--- stderr\n{res.stderr}"


def run_json(stack: Stack, *args: str, timeout: float = 1200) -> tuple[subprocess.CompletedProcess[str], dict]:
    res = stack.invoke(*args, "--json", timeout=timeout)
    try:
        doc = json.loads(res.stdout)
    except json.JSONDecodeError:
        raise AssertionError(f"not one JSON document:\n{out(res)}") from None
    errors = sorted(validator("error" if "error" in doc else "upgrade").iter_errors(doc), key=str)
    assert not errors, [e.message for e in errors]
    return res, doc


def set_line(path: Path, key: str, value: str) -> None:
    text, n = re.subn(rf"(?m)^{key}=.*$", f"{key}={value}", path.read_text())
    assert n == 1, f"{path.name}: {key} is not one plain line"
    path.write_text(text)


def value_of(path: Path, key: str) -> str:
    return re.search(rf"(?m)^{key}=(.*)$", path.read_text()).group(1)


def image_of(stack: Stack, svc: str) -> str:
    """The image reference the service's container was created from."""
    cid = stack.compose("ps", "-q", svc, timeout=60).stdout.strip()
    assert cid, f"{svc} has no container"
    return run(["docker", "inspect", "--format", "{{.Config.Image}}", cid], timeout=60).stdout.strip()


def container_id(stack: Stack, svc: str) -> str:
    return stack.compose("ps", "-q", svc, timeout=60).stdout.strip()


def leader(stack: Stack) -> str:
    res = stack.compose("exec", "-T", "spilo-1", "curl", "-fsS", "http://localhost:8008/cluster", timeout=60)
    assert res.returncode == 0, out(res)
    [name] = [m["name"] for m in json.loads(res.stdout)["members"] if m["role"] == "leader"]
    return name


def test_upgrade_rolls_through_with_a_switchover(running: Stack):
    stack = running
    override = yaml.safe_load(stack.override.read_text())
    services = override["services"]
    old = {"GRAFANA_IMAGE": services["grafana"]["image"], "SPILO_IMAGE": services["spilo-1"]["image"]}
    nonce = uuid.uuid4().hex[:8]
    new = {"GRAFANA_IMAGE": f"e2e-upgrade/grafana:new-{nonce}", "SPILO_IMAGE": f"e2e-upgrade/spilo:new-{nonce}"}
    for var in old:  # a second tag of the same build: a moved pin, as far as Compose can tell
        assert run(["docker", "tag", old[var], new[var]], timeout=60).returncode == 0
        stack.extra_images.append(new[var])
    # `.env` decides these services' images from now on, as for a user (same images: nothing restarts).
    for svc, spec in services.items():
        if spec.get("image") in old.values() and svc in ("grafana", "spilo-1", "spilo-2", "postgres-init"):
            spec.pop("image")
    stack.override.write_text(yaml.safe_dump(override, sort_keys=True, width=200))
    env, example = stack.root / ".env", stack.root / ".env.example"
    for var, image in old.items():
        set_line(env, var, image)
        set_line(example, var, image)
    res = stack.invoke("env", timeout=120)  # records them as what the repository shipped
    assert res.returncode == 0, out(res)
    before = {svc: container_id(stack, svc) for svc in ("grafana", "spilo-1", "spilo-2")}

    token = uuid.uuid4().hex
    db.query(stack, f"CREATE TABLE IF NOT EXISTS {TABLE} (n int, token text)")
    db.query(stack, f"INSERT INTO {TABLE} SELECT g, %s FROM generate_series(1, 1000) g", (token,))
    first_leader = leader(stack)

    # The `git pull`: the repository ships the new tags now.
    for var, image in new.items():
        set_line(example, var, image)
    res, plan = run_json(stack, "upgrade", "--dry-run")
    assert res.returncode == 0, out(res)
    assert {m["variable"]: m["new"] for m in plan["moves"]} == new
    res = stack.invoke("upgrade", timeout=300)  # without --yes: the plan, exit 2, nothing changed
    assert res.returncode == 2 and "--yes" in res.stdout, out(res)
    assert value_of(env, "GRAFANA_IMAGE") == old["GRAFANA_IMAGE"]
    assert {svc: container_id(stack, svc) for svc in before} == before

    res, doc = run_json(stack, "upgrade", "--yes")
    assert res.returncode == 0, out(res)
    assert doc["applied"] is True and doc["verify"]["ok"] is True, out(res)
    assert (Path(doc["backup"]) / "manifest.json").is_file(), "a fresh backup first"
    recreated = doc["recreated"]
    assert set(recreated) == {"grafana", "spilo-1", "spilo-2"}, recreated
    leader_svc = first_leader  # Patroni's member name is the service's hostname, which is its name
    assert doc["switchovers"] == [{"from": leader_svc, "to": next(s for s in ("spilo-1", "spilo-2")
                                                                   if s != leader_svc)}], doc["switchovers"]
    members = [s for s in recreated if s.startswith("spilo-")]
    assert members[-1] == leader_svc, "the old leader is recreated last, after the switchover"
    for svc, var in (("grafana", "GRAFANA_IMAGE"), ("spilo-1", "SPILO_IMAGE"), ("spilo-2", "SPILO_IMAGE")):
        assert image_of(stack, svc) == new[var], svc
        assert container_id(stack, svc) != before[svc], f"{svc} was recreated"
    assert value_of(env, "GRAFANA_IMAGE") == new["GRAFANA_IMAGE"]
    assert db.query(stack, f"SELECT count(*), min(token) FROM {TABLE}") == [(1000, token)]
    res, again = run_json(stack, "upgrade", "--dry-run")
    assert res.returncode == 0 and again["moves"] == [], out(res)
    stack.events.append(f"upgrade: {doc['seconds']}")
    STATE.update(grafana=new["GRAFANA_IMAGE"], **{f"old_{var}": image for var, image in old.items()})


def test_an_image_that_cannot_start_stops_the_upgrade_on_the_old_one(running: Stack):
    stack = running
    if "grafana" not in STATE:
        pytest.skip("needs the upgraded stack of the scenario before")
    good = STATE["grafana"]
    bad = f"e2e-upgrade/grafana:broken-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory(prefix="e2e-broken-") as ctx:
        (Path(ctx) / "standin").write_text("this is not a program\n")
        (Path(ctx) / "standin").chmod(0o755)
        (Path(ctx) / "Dockerfile").write_text(f"FROM {good}\nCOPY standin /standin\n")
        built = run(["docker", "build", "-q", "-t", bad, ctx], env={"DOCKER_BUILDKIT": "0"}, timeout=600)
    assert built.returncode == 0, built.stderr
    stack.extra_images.append(bad)
    env, example = stack.root / ".env", stack.root / ".env.example"
    before = container_id(stack, "grafana")
    set_line(example, "GRAFANA_IMAGE", bad)
    try:
        res, doc = run_json(stack, "upgrade", "--yes", "--no-backup", "--timeout", "60")
        assert res.returncode == 1, out(res)
        assert "grafana" in doc["error"]["what"] and "old images" in doc["error"]["what"], doc
        assert value_of(env, "GRAFANA_IMAGE") == good, ".env holds the pin it held"
        assert image_of(stack, "grafana") == good and container_id(stack, "grafana") != before
        res, plan = run_json(stack, "upgrade", "--dry-run")
        assert [m["new"] for m in plan["moves"]] == [bad], "the move is still offered (the record is back too)"
        res = stack.invoke("health", "--json", timeout=180)
        assert res.returncode == 0, out(res)
    finally:
        set_line(example, "GRAFANA_IMAGE", good)


def test_moving_back_to_the_first_tags_is_an_upgrade_like_any_other(running: Stack):
    """The repository moves the pins back (a revert): the same rolling restart brings every
    service onto the images the session built, which the scenarios after this file expect."""
    stack = running
    if "grafana" not in STATE:
        pytest.skip("needs the upgraded stack of the first scenario")
    example = stack.root / ".env.example"
    back = {var: STATE[f"old_{var}"] for var in ("GRAFANA_IMAGE", "SPILO_IMAGE")}
    for var, image in back.items():
        set_line(example, var, image)
    res, doc = run_json(stack, "upgrade", "--yes", "--no-backup")
    assert res.returncode == 0, out(res)
    assert set(doc["recreated"]) == {"grafana", "spilo-1", "spilo-2"} and len(doc["switchovers"]) == 1, doc
    for svc, var in (("grafana", "GRAFANA_IMAGE"), ("spilo-1", "SPILO_IMAGE"), ("spilo-2", "SPILO_IMAGE")):
        assert image_of(stack, svc) == back[var], svc

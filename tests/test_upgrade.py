"""`invoke upgrade --dry-run`: the plan from the pins .env kept against those the repository ships.

On this repository's own stack, as Compose renders it (no engine: `docker compose config`
needs none), with `.env.example` edited as a `git pull` would move its pins: which services
run each moved pin, the order they restart in, what a PostgreSQL image's move means for the
data (Spilo runs older majors: a note; an image that cannot run the data's major: refused),
a value the user chose left alone. Through the CLI on the fixture stack: one schema-valid
document, and not one file written by a dry run.
"""

from __future__ import annotations

import json
import re
import shutil

import pytest
from conftest import copy_repo, run_invoke, tree_digest
from jsonschemas import validator

from readiness.errors import ToolkitError
from readiness.run import diskuse, rollout, upgrade
from readiness.stack import compose, envfile


@pytest.fixture(scope="module")
def repo_stack(tmp_path_factory, compose_cli):
    dest = copy_repo(tmp_path_factory.mktemp("upgrade") / "repo")
    assert run_invoke(dest, "env").returncode == 0
    return dest, compose.load(dest)


def moved(example: str, key: str, new: str) -> str:
    return re.sub(rf"^{key}=.*$", f"{key}={new}", example, count=1, flags=re.M)


def test_the_plan_moves_stale_pins_in_dependency_order(repo_stack):
    root, model = repo_stack
    env = envfile.read(root / ".env")
    record = envfile.load_shipped(root)
    example_text = (root / ".env.example").read_text()
    old = {k: env.values[k] for k in ("GRAFANA_IMAGE", "SPILO_IMAGE", "ETCD_IMAGE", "VALKEY_IMAGE")}
    assert record["GRAFANA_IMAGE"] == old["GRAFANA_IMAGE"]  # `invoke env` recorded the shipped pins
    assert upgrade.plan(model, env, envfile.read(root / ".env.example"), record).moves == ()  # nothing moved yet

    major = int(re.search(r"spilo-(\d+)", old["SPILO_IMAGE"]).group(1))
    text = moved(moved(example_text, "GRAFANA_IMAGE", old["GRAFANA_IMAGE"] + "-next"),
                 "ETCD_IMAGE", old["ETCD_IMAGE"] + "-next")
    text = moved(text, "SPILO_IMAGE", f"ghcr.io/zalando/spilo-{major + 1}:9.9-p1")
    text = moved(text, "VALKEY_IMAGE", "valkey/valkey:99.0.0")
    example = envfile.parse_text(text, root / ".env.example")
    chosen = envfile.parse_text(moved((root / ".env").read_text(), "VALKEY_IMAGE", "valkey/valkey:8.0.9"),
                                root / ".env")  # a pin the user set: not the repository's to move
    p = upgrade.plan(model, chosen, example, record)
    moves = {m.variable: m for m in p.moves}
    assert set(moves) == {"GRAFANA_IMAGE", "ETCD_IMAGE", "SPILO_IMAGE"}
    assert moves["GRAFANA_IMAGE"].services == ("grafana",) and moves["GRAFANA_IMAGE"].postgres is None
    assert moves["SPILO_IMAGE"].services == ("postgres-init", "spilo-1", "spilo-2")
    assert moves["SPILO_IMAGE"].postgres == (major, major + 1)
    # etcd before the members that depend on it; the one-shot that needs the leader after them.
    order = list(p.restart)
    assert set(order) == {"grafana", "etcd", "spilo-1", "spilo-2", "postgres-init"}
    assert order.index("etcd") < order.index("spilo-1") < order.index("postgres-init")
    assert order.index("spilo-2") < order.index("postgres-init")
    # Spilo runs older majors: the move keeps the data's major, and says the upgrade is its own step.
    assert p.refusals == () and len(p.notes) == 1 and f"stays on PostgreSQL {major}" in p.notes[0]
    assert "valkey" not in upgrade.to_text(p)

    # An image that runs exactly one major, another than the data's: refused, with the way.
    exact = envfile.parse_text(moved(example_text, "SPILO_IMAGE", f"postgres:{major + 1}.1"), root / ".env.example")
    [refusal] = upgrade.plan(model, env, exact, record).refusals
    assert f"cannot run the data's PostgreSQL {major}" in refusal and "dump and restore" in refusal
    older = envfile.parse_text(moved(example_text, "SPILO_IMAGE", f"postgres:{major - 1}"), root / ".env.example")
    assert "restore a backup" in upgrade.plan(model, env, older, record).refusals[0]


def test_without_a_record_differing_pins_are_unknown_not_moved(repo_stack):
    root, model = repo_stack
    env = envfile.read(root / ".env")
    example = envfile.parse_text(moved((root / ".env.example").read_text(), "GRAFANA_IMAGE", "grafana/grafana:99"),
                                 root / ".env.example")
    p = upgrade.plan(model, env, example, {})
    assert p.moves == () and [k for k, _, _ in p.unknown] == ["GRAFANA_IMAGE"]
    assert "no record says" in upgrade.to_text(p)


def test_the_rolling_restart_takes_the_database_tier_as_one_step_and_checks_room(repo_stack):
    """The steps ``invoke upgrade --yes`` takes, from the plan and what runs (pure): one service
    each, dependencies first; the Patroni members together, where the first of them stands;
    one-shots and stopped services left to their next start. And the room rule: free space
    for the database's size again beside each member's data, or a refusal naming where."""
    root, model = repo_stack
    env, record = envfile.read(root / ".env"), envfile.load_shipped(root)
    text = (root / ".env.example").read_text()
    for key in ("GRAFANA_IMAGE", "SPILO_IMAGE", "ETCD_IMAGE", "LOKI_IMAGE"):
        text = moved(text, key, env.values[key] + "-next")
    p = upgrade.plan(model, env, envfile.parse_text(text, root / ".env.example"), record)
    running = set(model.services) - {"loki"}
    steps = rollout.steps_for(model, p, running)
    assert ["spilo-1", "spilo-2"] in steps and ["grafana"] in steps and ["etcd"] in steps
    assert steps.index(["etcd"]) < steps.index(["spilo-1", "spilo-2"]), "etcd before the members that need it"
    flat = [svc for step in steps for svc in step]
    assert "postgres-init" not in flat and "loki" not in flat and len(flat) == len(set(flat))
    assert rollout.patroni_members(model) == ["spilo-1", "spilo-2"]

    gib = 1 << 30
    spilo = root / "data" / "spilo-1"
    usage = [diskuse.Usage("spilo-1", spilo, 10 * gib, 4 * gib), diskuse.Usage("spilo-2", spilo, 9 * gib, 4 * gib),
             diskuse.Usage("grafana", root / "data" / "grafana", 50 * gib, 1)]
    problem = rollout.room_problem(model, p, usage)
    assert problem and all(s in problem.message for s in ("10.0 GiB", "4.0 GiB", "data/spilo-1")), problem
    roomy = [diskuse.Usage("spilo-1", spilo, 10 * gib, 11 * gib), diskuse.Usage("grafana", spilo, 50 * gib, 1)]
    assert rollout.room_problem(model, p, roomy) is None, "only the database's filesystem is asked"
    assert rollout.room_problem(model, p, [diskuse.Usage("spilo-1", spilo, None, 1)]) is None  # unknown: no refusal

    err = rollout.failure(rollout.StepFailed("grafana", "did not become healthy"), ["etcd", "grafana"], [],
                          "/b/infra-core-1")
    assert "stopped at grafana: did not become healthy" in err.message and "etcd, grafana run their old" in err.message
    assert "invoke restore /b/infra-core-1 --yes" in err.fix and "invoke logs grafana" in err.fix
    stuck = rollout.failure(rollout.StepFailed("spilo-1", "x"), ["spilo-1"], ["spilo-1"], None)
    assert "did not come back healthy" in stuck.message and "`invoke up`" in stuck.message


def test_a_tier_half_running_is_refused_and_a_grafana_move_needs_no_database_room(repo_stack):
    root, model = repo_stack
    env, record = envfile.read(root / ".env"), envfile.load_shipped(root)
    text = (root / ".env.example").read_text()
    both = envfile.parse_text(moved(moved(text, "SPILO_IMAGE", env.values["SPILO_IMAGE"] + "-next"),
                                    "GRAFANA_IMAGE", env.values["GRAFANA_IMAGE"] + "-next"), root / ".env.example")
    p = upgrade.plan(model, env, both, record)
    half = rollout.tier_problem(model, p, set(model.services) - {"spilo-2"})
    assert half and "spilo-2 is not running" in half.message and "invoke up" in half.fix
    assert rollout.tier_problem(model, p, set(model.services)) is None
    assert rollout.tier_problem(model, p, set(model.services) - {"spilo-1", "spilo-2"}) is None  # all stopped: fine
    only_grafana = envfile.parse_text(moved(text, "GRAFANA_IMAGE", "g:next"), root / ".env.example")
    grafana = upgrade.plan(model, env, only_grafana, record)
    tight = [diskuse.Usage("spilo-1", root / "data" / "spilo-1", 10 << 30, 1)]
    assert rollout.room_problem(model, grafana, tight) is None, "no member restarts: no database room needed"
    assert rollout.room_problem(model, p, tight) is not None


def test_whatever_fails_inside_a_step_is_that_steps_failure(repo_stack, monkeypatch):
    """A timeout or an engine that stops answering inside a step (a ToolkitError) must reach the
    caller as the step's failure, so that the pins and images go back (never a half-done
    upgrade reported as an error about something else)."""
    root, model = repo_stack
    env, record = envfile.read(root / ".env"), envfile.load_shipped(root)
    text = moved((root / ".env.example").read_text(), "GRAFANA_IMAGE", "grafana/grafana:99")
    p = upgrade.plan(model, env, envfile.parse_text(text, root / ".env.example"), record)

    def timed_out(*_a, **_k):
        raise ToolkitError("docker compose up did not finish within 420 s")

    monkeypatch.setattr(rollout, "recreate", timed_out)
    done = rollout.Rollout()
    with pytest.raises(rollout.StepFailed) as exc:
        rollout.roll(model, None, p, lambda m, s: None, timeout=300, done=done, running={"grafana"})
    assert exc.value.service == "grafana" and "420 s" in exc.value.why and done.recreated == ["grafana"]


def test_rolling_back_goes_last_first_and_switches_a_leader_over_to_an_old_member(repo_stack, monkeypatch):
    """The upgrade recreated spilo-2, switched over to it, then spilo-1 failed: spilo-1 goes back
    first; spilo-2 leads, so it is switched over to spilo-1 (already on the old image) before
    it is recreated; a service that does not come back is named."""
    _, model = repo_stack
    calls: list[tuple[str, ...]] = []
    lead = ["spilo-2"]

    def switch(_m, old, new, _members, timeout=60.0):
        calls.append(("switchover", old, new))
        lead[0] = new

    def again(_m, _e, svc, _t):
        calls.append(("recreate", svc))
        if svc == "grafana":
            raise rollout.StepFailed(svc, "still broken")

    monkeypatch.setattr(rollout, "leader", lambda _m, _members: lead[0])
    monkeypatch.setattr(rollout, "candidate", lambda _m, _members, _old, among: among[0])
    monkeypatch.setattr(rollout, "switchover", switch)
    monkeypatch.setattr(rollout, "recreate", again)
    failed = rollout.roll_back(model, None, ["grafana", "spilo-2", "spilo-1"], 60)
    assert calls == [("recreate", "spilo-1"), ("switchover", "spilo-2", "spilo-1"), ("recreate", "spilo-2"),
                     ("recreate", "grafana")]
    assert failed == ["grafana"]


@pytest.mark.parametrize("text, why", [
    ("WEB_IMAGE=a\nWEB_IMAGE=\"a\"\n", "plain KEY=value"),  # the effective (last) line is quoted
    ("WEB_IMAGE=a\r\n", "Windows line endings"),
])
def test_pins_are_set_only_where_the_effective_line_is_plain(tmp_path, text, why):
    (tmp_path / ".env").write_bytes(text.encode())
    with pytest.raises(ToolkitError) as exc:
        envfile.pinned_text(tmp_path, {"WEB_IMAGE": "b"})
    assert why in exc.value.message and "WEB_IMAGE" in exc.value.message


def test_pins_keep_every_other_byte_even_those_that_are_not_utf8(tmp_path):
    data = b"# caf\xe9 (latin-1)\nWEB_IMAGE=busybox:1.36.1\nOTHER=x\n"
    (tmp_path / ".env").write_bytes(data)
    record = {"WEB_IMAGE": "busybox:1.37.0"}
    envfile.write_pins(tmp_path, {"WEB_IMAGE": "busybox:1.37.0"}, record)
    assert (tmp_path / ".env").read_bytes() == data.replace(b"1.36.1", b"1.37.0")
    assert envfile.load_shipped(tmp_path) == record


def test_dry_run_prints_one_document_and_writes_nothing(mini_files):
    mini = mini_files
    assert run_invoke(mini, "env").returncode == 0
    record = (mini / envfile.SHIPPED).read_bytes()
    shutil.rmtree(mini / ".readiness")  # no cache, no lock: a dry run must not make them
    (mini / envfile.SHIPPED).parent.mkdir(parents=True)
    (mini / envfile.SHIPPED).write_bytes(record)
    example = mini / ".env.example"
    example.write_text(moved(example.read_text(), "WEB_IMAGE", "busybox:1.37.0"))
    before = tree_digest(mini, ".")
    res = run_invoke(mini, "upgrade", "--dry-run", "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    doc = json.loads(res.stdout)
    assert not sorted(validator("upgrade").iter_errors(doc), key=str)
    assert doc["ok"] is True and doc["dry_run"] is True and doc["restart"] == ["web"]
    assert doc["moves"] == [{"variable": "WEB_IMAGE", "old": "busybox:1.36.1", "new": "busybox:1.37.0",
                             "services": ["web"], "postgres_major": None}]
    assert tree_digest(mini, ".") == before
    assert sorted(str(p.relative_to(mini)) for p in (mini / ".readiness").rglob("*")) == [envfile.SHIPPED]
    text = run_invoke(mini, "upgrade", "--dry-run")
    assert "WEB_IMAGE: busybox:1.36.1 -> busybox:1.37.0 (services: web)" in text.stdout
    # Without --yes (and without --dry-run): the plan, how to apply it, exit 2, nothing written.
    asked = run_invoke(mini, "upgrade", "--json")
    doc = json.loads(asked.stdout)
    assert asked.returncode == 2 and doc["ok"] is False and doc["moves"] and "applied" not in doc
    assert "--yes" in run_invoke(mini, "upgrade").stdout
    assert tree_digest(mini, ".") == before

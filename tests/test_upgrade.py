"""`invoke upgrade --dry-run`: the plan from the pins .env kept against those the repository ships.

On this repository's own stack, as Compose renders it (no engine: `docker compose config`
needs none), with `.env.example` edited as a `git pull` would move its pins: which services
run each moved pin, the order they restart in, a PostgreSQL major refused with its paths,
a value the user chose left alone. Through the CLI on the fixture stack: one schema-valid
document, and not one file written by a dry run.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conftest import copy_repo, run_invoke, tree_digest
from jsonschemas import validator

from readiness.run import upgrade
from readiness.stack import compose, envfile


@pytest.fixture(scope="module")
def repo_stack(tmp_path_factory, compose_cli):
    dest = copy_repo(tmp_path_factory.mktemp("upgrade") / "repo")
    assert run_invoke(dest, "env").returncode == 0
    return dest, compose.load(dest)


def moved(example: str, key: str, new: str) -> str:
    return re.sub(rf"^{key}=.*$", f"{key}={new}", example, count=1, flags=re.M)


def test_the_plan_moves_stale_pins_in_dependency_order_and_refuses_a_postgres_major(repo_stack, tmp_path: Path):
    root, model = repo_stack
    env = envfile.read(root / ".env")
    record = envfile.load_shipped(root)
    example_text = (root / ".env.example").read_text()
    old = {k: env.values[k] for k in ("GRAFANA_IMAGE", "SPILO_IMAGE", "ETCD_IMAGE", "VALKEY_IMAGE")}
    assert record["GRAFANA_IMAGE"] == old["GRAFANA_IMAGE"]  # `invoke env` recorded the shipped pins

    assert upgrade.plan(model, env, envfile.read(root / ".env.example"), record).moves == ()  # nothing moved yet

    text = moved(moved(example_text, "GRAFANA_IMAGE", old["GRAFANA_IMAGE"] + "-next"),
                 "ETCD_IMAGE", old["ETCD_IMAGE"] + "-next")
    text = moved(text, "SPILO_IMAGE", "ghcr.io/zalando/spilo-18:4.1-p1")
    text = moved(text, "VALKEY_IMAGE", "valkey/valkey:9.0.0")
    example = envfile.parse_text(text, root / ".env.example")
    chosen = envfile.parse_text(moved((root / ".env").read_text(), "VALKEY_IMAGE", "valkey/valkey:8.0.9"),
                                root / ".env")  # a pin the user set: not the repository's to move
    p = upgrade.plan(model, chosen, example, record)
    moves = {m.variable: m for m in p.moves}
    assert set(moves) == {"GRAFANA_IMAGE", "ETCD_IMAGE", "SPILO_IMAGE"}
    assert moves["GRAFANA_IMAGE"].services == ("grafana",) and moves["GRAFANA_IMAGE"].postgres is None
    assert moves["SPILO_IMAGE"].services == ("postgres-init", "spilo-1", "spilo-2")
    assert moves["SPILO_IMAGE"].postgres == (17, 18)
    # etcd before the members that depend on it; the one-shot that needs the leader after them.
    order = list(p.restart)
    assert set(order) == {"grafana", "etcd", "spilo-1", "spilo-2", "postgres-init"}
    assert order.index("etcd") < order.index("spilo-1") < order.index("postgres-init")
    assert order.index("spilo-2") < order.index("postgres-init")
    [refusal] = p.refusals
    assert "PostgreSQL 17 -> 18" in refusal and "dump and restore" in refusal and "SPILO_IMAGE" in refusal
    assert "valkey" not in upgrade.to_text(p)


def test_dry_run_prints_one_document_and_writes_nothing(mini):
    assert run_invoke(mini, "env").returncode == 0
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
    assert tree_digest(mini, ".") == before  # not .env, not the record, not a cache
    text = run_invoke(mini, "upgrade", "--dry-run")
    assert "WEB_IMAGE: busybox:1.36.1 -> busybox:1.37.0 (services: web)" in text.stdout
    # Applying is refused until backups exist: an error that says how to do it by hand.
    applied = run_invoke(mini, "upgrade", "--json")
    assert applied.returncode == 1 and "invoke backup" in json.loads(applied.stdout)["error"]["what"]

"""External networks: Compose refuses to start when one is missing; we create it.

REQ-BOOT-007: the stack declares its shared networks ``external: true`` (so ``compose down``
never removes what other stacks use), and the toolkit creates them when missing.
"""

from __future__ import annotations

import re

from ..errors import ToolkitError
from ..stack.model import Model
from ..system import runner


def external(model: Model) -> list[str]:
    """Docker names of the external networks the rendered model uses, sorted."""
    return sorted({str(n.get("name") or key) for key, n in model.networks.items() if n.get("external")})


def existing() -> set[str]:
    res = runner.run(["docker", "network", "ls", "--format", "{{.Name}}"], timeout=30)
    if not res.ok:
        raise ToolkitError(f"cannot list Docker networks: {res.stderr.strip()}",
                           fix="start the Docker engine and check with `docker info`")
    return {line.strip() for line in res.stdout.splitlines() if line.strip()}


def ensure(model: Model) -> list[str]:
    """Create every missing external network; returns the names created."""
    wanted = external(model)
    if not wanted:
        return []
    have = existing()
    created = []
    for name in wanted:
        if name in have:
            continue
        res = runner.run(["docker", "network", "create", name], timeout=60)
        if not res.ok and "already exists" not in res.stderr:
            raise ToolkitError(f"cannot create network {name}: {res.stderr.strip()}",
                               fix=f"docker network create {name}")
        dedupe(name)
        created.append(name)
    return created


def dedupe(name: str) -> None:
    """Keep one network called ``name`` when two runs created it at the same moment.

    The engine's duplicate-name check is not atomic: two concurrent ``docker network create``
    can both succeed, and Compose then refuses the ambiguous name. Every run keeps the first in
    (created, id) order and removes the others, so concurrent runs agree on the survivor.
    """
    res = runner.run(["docker", "network", "ls", "-q", "--no-trunc", "--filter", f"name=^{re.escape(name)}$"],
                     timeout=30)
    ids = res.stdout.split() if res.ok else []
    if len(ids) < 2:
        return
    info = runner.run(["docker", "network", "inspect", "--format", "{{.Created}} {{.Id}} {{.Name}}",
                       *ids], timeout=30)
    fields = (line.split(" ", 2) for line in info.stdout.splitlines() if line.count(" ") >= 2)
    rows = sorted((created, network_id) for created, network_id, n in fields if n == name)
    extra = [network_id for _, network_id in rows[1:]]
    if extra:
        runner.run(["docker", "network", "rm", *extra], timeout=60)  # "no such network": a racer removed it

"""A real userns-remap engine: the mapping, the secret modes and the data owners it needs.

Under ``userns-remap`` every container uid, root included, is a subordinate host uid
(``/var/lib/docker/<start>.<start>``): container root is *not* the file owner and its
CAP_DAC_OVERRIDE does not reach the user's files. So secrets read by root-run services need
0444 there (0400 on a rootful engine), and data directories belong to ``start + uid``. A
private engine (tests/private_engine.py) runs with ``--userns-remap=default``; the toolkit is
pointed at it with ``DOCKER_HOST``, and containers of that engine check the result from inside.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from conftest import FIXTURES, run_invoke
from helper_image import default_helper_image, ensure_helper_image
from private_engine import PrivateEngine

from readiness.system import engine as enginelib

WHY = "a userns-remap engine is a second dockerd, which needs root (CI pass 1 runs as root)"


@pytest.fixture(scope="module")
def remapped(engine_answers) -> Iterator[PrivateEngine]:
    engine = PrivateEngine(WHY, "--userns-remap=default", "--bridge=none")
    try:
        engine.start()
        image = ensure_helper_image(default_helper_image(FIXTURES / "mini" / ".env.example"))
        engine.load(image)
        yield engine
    finally:
        engine.close()


def test_userns_remap_mapping_secret_modes_and_owners(remapped, mini, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", remapped.env["DOCKER_HOST"])
    engine = enginelib.info(fresh=True)
    assert engine.kind == "userns-remap", engine
    start = engine.host_uid(0)
    assert start and start > 0 and str(start) in engine.data_root
    image = default_helper_image(FIXTURES / "mini" / ".env.example")
    uid_map, gid_map = enginelib.uid_map_from_container(image)
    for container_id in (0, 1, 472, 65534):
        assert engine.host_uid(container_id) == enginelib.map_id(uid_map, container_id)
        assert engine.host_gid(container_id) == enginelib.map_id(gid_map, container_id)

    res = run_invoke(mini, "bootstrap", "--json", env=remapped.env)
    assert res.returncode == 0, res.stdout + res.stderr
    assert json.loads(res.stdout)["ok"] is True
    # Every secret a container reads is 0444 here, even those only root-run services read
    # (the proxy service): remapped root is "other" for the user's files.
    for name in ("web_password", "api_token", "hook_url", "dash_htpasswd"):
        assert (mini / "secrets" / name).stat().st_mode & 0o777 == 0o444, name
    st = (mini / "data" / "web").stat()
    assert (st.st_uid, st.st_gid) == (start + 472, start + 0)

    # From inside a container of that engine, as the service's uid: read the secret, write the data dir.
    for user, extra in (("472:0", []), ("0:0", ["--cap-drop", "ALL"])):
        run = remapped.docker("run", "--rm", "--network", "none", "--user", user, *extra,
                              "-v", f"{mini / 'secrets' / 'web_password'}:/run/secrets/web_password:ro",
                              "-v", f"{mini / 'data' / 'web'}:/www", "--entrypoint", "/bin/sh", image, "-c",
                              "test -s /run/secrets/web_password && cat /run/secrets/web_password >/dev/null"
                              + (" && echo ok > /www/probe && rm /www/probe" if user == "472:0" else ""))
        assert run.returncode == 0, (user, run.stderr)
    # And what a rootful engine would have made, a 0400 secret, is refused there: the check means something.
    (mini / "secrets" / "dash_htpasswd").chmod(0o400)
    refused = remapped.docker("run", "--rm", "--network", "none", "--user", "0:0",
                              "-v", f"{mini / 'secrets' / 'dash_htpasswd'}:/s:ro", "--entrypoint", "/bin/sh", image,
                              "-c", "cat /s")
    assert refused.returncode != 0
    pre = run_invoke(mini, "preflight", "--json", env=remapped.env)
    found = [f for f in json.loads(pre.stdout)["findings"] if f["id"] == "secret.unreadable"]
    assert pre.returncode == 1 and [f["service"] for f in found] == ["proxy"], pre.stdout
    assert "userns-remap engine" in found[0]["message"]


def test_a_non_root_user_gets_remapped_owners_through_the_engine(remapped, mini, monkeypatch):
    """The helper path a non-root user takes (`--userns=host`, host ids), on the real remapped engine.

    Only this process's euid is faked (a second engine needs root, so the test runs as root):
    with it, `dirs.ensure` must not chown itself but ask the engine, as it does for a user.
    """
    from readiness.prepare import dirs
    from readiness.stack import compose

    monkeypatch.setenv("DOCKER_HOST", remapped.env["DOCKER_HOST"])
    assert run_invoke(mini, "env", env=remapped.env).returncode == 0
    engine = enginelib.info(fresh=True)
    model = compose.load(mini)
    monkeypatch.setattr(dirs.os, "geteuid", lambda: 1000)
    changes, problems = dirs.ensure(model, engine)
    assert problems == [] and [c.action for c in changes] == ["created (owner 472:0, mode 0750)"]
    st = (mini / "data" / "web").stat()
    start = engine.host_uid(0)
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (start + 472, start, 0o750)

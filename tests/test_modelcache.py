"""The render cache never serves a stale model: every input Compose reads is in its key.

Each test renders, changes one input, renders again, and checks the model shows the change
(and that an unchanged stack is served from the cache without running Compose).
"""

from __future__ import annotations

import pytest

from readiness import compose, runner


def web_port(model) -> str:
    return model.services["web"]["ports"][0]["published"]


@pytest.fixture
def calls(monkeypatch):
    """Counts `docker compose ... config` runs (the real runner still runs them)."""
    seen = []
    real = runner.run

    def counting(args, **kwargs):
        if "config" in args:
            seen.append(list(args))
        return real(args, **kwargs)

    monkeypatch.setattr(runner, "run", counting)
    return seen


@pytest.fixture
def stack(mini, monkeypatch):
    for name in ("WEB_PORT", "READINESS_NO_CACHE"):
        monkeypatch.delenv(name, raising=False)
    (mini / ".env").write_text((mini / ".env.example").read_text())
    return mini


def test_unchanged_stack_is_served_from_the_cache(stack, calls):
    first = compose.load(stack)
    second = compose.load(stack)
    assert len(calls) == 1
    assert second.rendered == first.rendered and second.warnings == first.warnings


def test_env_file_value_change_renders_again(stack, calls):
    compose.load(stack)
    env = stack / ".env"
    env.write_text(env.read_text().replace(f"WEB_PORT={web_port(compose.load(stack))}", "WEB_PORT=23456"))
    assert web_port(compose.load(stack)) == "23456"
    assert len(calls) == 2


def test_environment_variable_change_renders_again(stack, calls, monkeypatch):
    compose.load(stack)
    monkeypatch.setenv("WEB_PORT", "23457")
    assert web_port(compose.load(stack)) == "23457"
    monkeypatch.setenv("COMPOSE_PROJECT_NAME", "other-name")
    assert compose.load(stack).name == "other-name"


def test_included_file_change_renders_again(stack, calls):
    compose.load(stack)
    inc = stack / "infra" / "01-web" / "docker-compose.yml"
    inc.write_text(inc.read_text().replace("traefik.enable: \"true\"", "traefik.enable: \"false\""))
    assert compose.load(stack).services["web"]["labels"]["traefik.enable"] == "false"


def test_env_file_dependency_change_renders_again(stack, calls):
    inc = stack / "infra" / "01-web" / "docker-compose.yml"
    inc.write_text(inc.read_text().replace("  web:\n", "  web:\n    env_file: [web.env]\n", 1))
    (stack / "infra" / "01-web" / "web.env").write_text("GREETING=hello\n")
    assert compose.load(stack).services["web"]["environment"]["GREETING"] == "hello"
    (stack / "infra" / "01-web" / "web.env").write_text("GREETING=bye\n")
    assert compose.load(stack).services["web"]["environment"]["GREETING"] == "bye"
    assert len(calls) == 2


def test_cache_can_be_switched_off(stack, calls, monkeypatch):
    monkeypatch.setenv("READINESS_NO_CACHE", "1")
    compose.load(stack)
    compose.load(stack)
    assert len(calls) == 2


def test_failed_renders_are_not_cached(stack, calls):
    env = stack / ".env"
    env.write_text(env.read_text().replace("LOCAL_DOMAIN=localhost", "LOCAL_DOMAIN="))
    model = compose.load(stack, tolerate_missing=True)
    assert model.missing_required == ["LOCAL_DOMAIN"]
    assert not list((stack / ".readiness" / "cache").glob("*.json"))

"""The render cache never serves a stale model: every input Compose reads is in its key.

Each test renders, changes one input, renders again, and checks the model shows the change
(and that an unchanged stack is served from the cache without running Compose).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest

from readiness.stack import compose, modelcache, sources
from readiness.system import runner


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
def stack(mini_files, monkeypatch):
    for name in ("WEB_PORT", "READINESS_NO_CACHE"):
        monkeypatch.delenv(name, raising=False)
    (mini_files / ".env").write_text((mini_files / ".env.example").read_text())
    return mini_files


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


# ---------------------------------------------------------------- inputs beyond the compose files


def include_file(stack: Path) -> Path:
    return stack / "infra" / "01-web" / "docker-compose.yml"


def add_to_web(stack: Path, yaml_lines: str, service: str = "web") -> None:
    """Insert ``yaml_lines`` (indented for a service) at the top of an included service."""
    inc = include_file(stack)
    inc.write_text(inc.read_text().replace(f"  {service}:\n", f"  {service}:\n" + yaml_lines, 1))


def greeting(model) -> str | None:
    return (model.services["web"].get("environment") or {}).get("GREETING")


@pytest.fixture
def no_greeting(monkeypatch):
    for name in ("GREETING", "FROM_SHELL", "COMPOSE_ENV_FILES", "WEB_DIR", "BASE_FILE", "WEB_ENV"):
        monkeypatch.delenv(name, raising=False)


def test_included_files_own_env_change_renders_again(stack, calls, no_greeting):
    """An `include:` without `env_file` reads the included project's own .env."""
    add_to_web(stack, "    environment:\n      GREETING: ${GREETING:-none}\n")
    own_env = include_file(stack).parent / ".env"
    own_env.write_text("GREETING=hello\n")
    assert greeting(compose.load(stack)) == "hello"
    own_env.write_text("GREETING=bye\n")
    assert greeting(compose.load(stack)) == "bye"


def test_compose_env_files_change_renders_again(stack, calls, no_greeting, monkeypatch):
    """`COMPOSE_ENV_FILES` names the project's env files instead of .env: their bytes count."""
    alt = stack / "alt.env"
    text = (stack / ".env").read_text()
    alt.write_text(re.sub(r"(?m)^WEB_PORT=.*$", "WEB_PORT=23458", text))
    monkeypatch.setenv("COMPOSE_ENV_FILES", "alt.env")
    assert web_port(compose.load(stack)) == "23458"
    alt.write_text(re.sub(r"(?m)^WEB_PORT=.*$", "WEB_PORT=23459", text))
    assert web_port(compose.load(stack)) == "23459"


def test_label_file_change_renders_again(stack, calls):
    add_to_web(stack, "    label_file: ./web.labels\n")
    labels = include_file(stack).parent / "web.labels"
    labels.write_text("x.greeting=hello\n")
    assert compose.load(stack).services["web"]["labels"]["x.greeting"] == "hello"
    labels.write_text("x.greeting=bye\n")
    assert compose.load(stack).services["web"]["labels"]["x.greeting"] == "bye"


def test_interpolated_include_path_renders_again(stack, calls, no_greeting):
    """A `$` in an include path: the file it names is only known once Compose interpolates."""
    root = stack / "docker-compose.yml"
    root.write_text(root.read_text().replace("  - infra/01-web/docker-compose.yml",
                                             "  - ${WEB_DIR:-infra/01-web}/docker-compose.yml"))
    assert compose.load(stack).services["web"]["labels"]["traefik.enable"] == "true"
    inc = include_file(stack)
    inc.write_text(inc.read_text().replace('traefik.enable: "true"', 'traefik.enable: "false"'))
    assert compose.load(stack).services["web"]["labels"]["traefik.enable"] == "false"


def test_interpolated_extends_file_renders_again(stack, calls, no_greeting):
    add_to_web(stack, "    extends:\n      file: ${BASE_FILE:-base.yml}\n      service: base\n")
    base = include_file(stack).parent / "base.yml"
    base.write_text("services:\n  base:\n    environment:\n      GREETING: hello\n")
    assert greeting(compose.load(stack)) == "hello"
    base.write_text("services:\n  base:\n    environment:\n      GREETING: bye\n")
    assert greeting(compose.load(stack)) == "bye"


def test_interpolated_env_file_path_renders_again(stack, calls, no_greeting):
    add_to_web(stack, "    env_file: ${WEB_ENV:-web.env}\n")
    env_file = include_file(stack).parent / "web.env"
    env_file.write_text("GREETING=hello\n")
    assert greeting(compose.load(stack)) == "hello"
    env_file.write_text("GREETING=bye\n")
    assert greeting(compose.load(stack)) == "bye"


def docker_config_dir() -> Path:
    return Path(os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker")


def test_home_for_tilde_in_a_bind_mount_renders_again(stack, calls, monkeypatch, tmp_path):
    """`~` in a path is $HOME: no file is read, but the rendered source differs."""
    monkeypatch.setenv("DOCKER_CONFIG", str(docker_config_dir()))  # the plugin stays where it is
    add_to_web(stack, "    volumes:\n      - ~/proxy-data:/data\n", service="proxy")
    monkeypatch.setenv("HOME", str(tmp_path / "a"))
    assert compose.load(stack).services["proxy"]["volumes"][0]["source"] == str(tmp_path / "a" / "proxy-data")
    monkeypatch.setenv("HOME", str(tmp_path / "b"))
    assert compose.load(stack).services["proxy"]["volumes"][0]["source"] == str(tmp_path / "b" / "proxy-data")


def test_home_for_tilde_in_an_env_file_renders_again(stack, calls, no_greeting, monkeypatch, tmp_path):
    """`~` in an env_file path is $HOME: another HOME is another file, and that file's bytes count."""
    monkeypatch.setenv("DOCKER_CONFIG", str(docker_config_dir()))  # the plugin stays where it is
    add_to_web(stack, "    env_file: ~/web.env\n")
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "web.env").write_text(f"GREETING=from-{name}\n")
    monkeypatch.setenv("HOME", str(tmp_path / "a"))
    assert greeting(compose.load(stack)) == "from-a"
    monkeypatch.setenv("HOME", str(tmp_path / "b"))
    assert greeting(compose.load(stack)) == "from-b"
    (tmp_path / "b" / "web.env").write_text("GREETING=edited\n")  # the file `~` names is read, not another
    assert greeting(compose.load(stack)) == "edited"


def test_variable_taken_from_the_shell_renders_again(stack, calls, no_greeting, monkeypatch):
    """`environment: [FROM_SHELL]` takes its value from the shell, with no `$` in any file."""
    add_to_web(stack, "    environment:\n      - FROM_SHELL\n")
    monkeypatch.setenv("FROM_SHELL", "one")
    assert compose.load(stack).services["web"]["environment"]["FROM_SHELL"] == "one"
    monkeypatch.setenv("FROM_SHELL", "two")
    assert compose.load(stack).services["web"]["environment"]["FROM_SHELL"] == "two"


def real_compose_plugin() -> Path:
    for directory in (docker_config_dir() / "cli-plugins", *map(Path, modelcache.SYSTEM_PLUGIN_DIRS)):
        if (directory / "docker-compose").is_file():
            return directory / "docker-compose"
    pytest.fail("the Compose plugin is in none of the docker CLI's plugin directories")


def test_plugin_in_cli_plugins_extra_dirs_renders_again(stack, calls, monkeypatch, tmp_path):
    """A Compose plugin dropped into a `cliPluginsExtraDirs` directory wins over the others.

    The new plugin is a stand-in (a shell script that runs the real Compose with WEB_PORT set):
    installing a second Compose release here would need a registry.
    """
    real = real_compose_plugin()
    extra, config = tmp_path / "extra-plugins", tmp_path / "docker-config"
    extra.mkdir()
    config.mkdir()
    (config / "config.json").write_text(json.dumps({"cliPluginsExtraDirs": [str(extra), str(real.parent)]}))
    monkeypatch.setenv("DOCKER_CONFIG", str(config))
    before = web_port(compose.load(stack))
    write_wrapper(extra / "docker-compose", real, "34567")
    assert before != "34567" and web_port(compose.load(stack)) == "34567"
    (config / "config.json").write_text(json.dumps({"cliPluginsExtraDirs": [str(real.parent)]}))  # config.json counts
    assert web_port(compose.load(stack)) == before


def write_wrapper(path: Path, real: Path | str, port: str) -> None:
    """A stand-in program: runs the real one with WEB_PORT set (the environment wins over .env)."""
    path.write_text(f'#!/bin/sh\nWEB_PORT={port} exec "{real}" "$@"\n')
    path.chmod(0o755)


def test_docker_cli_replaced_renders_again(stack, calls, monkeypatch, tmp_path):
    """Another `docker` on PATH (here a stand-in script running the real one) is another renderer."""
    real = shutil.which("docker")
    assert real
    bindir = tmp_path / "bin"
    bindir.mkdir()
    write_wrapper(bindir / "docker", real, "34571")
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    assert web_port(compose.load(stack)) == "34571"
    write_wrapper(bindir / "docker", real, "34572")
    assert web_port(compose.load(stack)) == "34572"


def test_plugin_replaced_in_docker_config_renders_again(stack, calls, monkeypatch, tmp_path):
    real = real_compose_plugin()
    plugins = tmp_path / "docker-config" / "cli-plugins"
    plugins.mkdir(parents=True)
    write_wrapper(plugins / "docker-compose", real, "34573")
    monkeypatch.setenv("DOCKER_CONFIG", str(plugins.parent))
    assert web_port(compose.load(stack)) == "34573"
    write_wrapper(plugins / "docker-compose", real, "34574")
    assert web_port(compose.load(stack)) == "34574"


def test_standalone_docker_compose_replaced_renders_again(stack, calls, monkeypatch, tmp_path):
    """With no Compose plugin, the toolkit falls back to `docker-compose` on PATH: that binary counts too.

    A docker CLI without the plugin is a stand-in (a script that answers `compose` as the CLI does
    when the plugin is missing and runs the real CLI otherwise): the plugin may be installed
    system-wide here, where no test can hide it.
    """
    real = real_compose_plugin()
    bindir = tmp_path / "bin"
    bindir.mkdir()
    docker, real_docker = bindir / "docker", shutil.which("docker")
    docker.write_text('#!/bin/sh\nif [ "$1" = compose ]; then echo "docker: \'compose\' is not a docker command." >&2; '
                      f'exit 1; fi\nexec "{real_docker}" "$@"\n')
    docker.chmod(0o755)
    write_wrapper(bindir / "docker-compose", real, "34575")
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    assert web_port(compose.load(stack)) == "34575"
    write_wrapper(bindir / "docker-compose", real, "34576")
    assert web_port(compose.load(stack)) == "34576"
    # The second load of an unchanged stack comes from the cache and still names the CLI
    # that rendered it: the plugin fails here, so a model that said `docker compose` would
    # break every later `up`, `ps` and `down`.
    before = len(calls)
    assert compose.load(stack).cli.argv == ("docker-compose",)
    assert len(calls) == before + 1  # the plugin's failed render; no second standalone render


def test_a_render_keeps_the_other_caches(stack, calls):
    """The directory of the render cache also holds preflight's data-state cache: a new
    render replaces the old render only (it once deleted every ``*.json`` there)."""
    other = stack / ".readiness" / "cache" / "datastate.json"
    compose.load(stack)
    other.write_text("{}\n")
    env = stack / ".env"
    env.write_text(env.read_text() + "\nUNUSED_VARIABLE=1\n")
    compose.load(stack)
    assert len(calls) == 2
    assert other.read_text() == "{}\n"
    assert len(list(other.parent.glob("render-*.json"))) == 1



def test_develop_watch_paths_follow_their_symlinks(stack, calls):
    """Compose resolves a `develop.watch` path through symlinks on disk: such a stack always renders."""
    add_to_web(stack, "    develop:\n      watch:\n        - path: ./src\n          action: sync\n"
                      "          target: /www\n")
    web_dir = include_file(stack).parent
    (web_dir / "a").mkdir()
    (web_dir / "b").mkdir()
    (web_dir / "src").symlink_to("a")
    assert compose.load(stack).services["web"]["develop"]["watch"][0]["path"] == str(web_dir / "a")
    (web_dir / "src").unlink()
    (web_dir / "src").symlink_to("b")
    assert compose.load(stack).services["web"]["develop"]["watch"][0]["path"] == str(web_dir / "b")


@pytest.mark.parametrize("reference", ["oci://registry.invalid/stack:1", "git@github.com:org/stack.git",
                                       "https://github.com/org/stack.git"])
def test_remote_includes_are_never_cached(tmp_path, reference):
    """A remote include is fetched by Compose; nothing local can say it has not changed."""
    (tmp_path / "docker-compose.yml").write_text(f"include:\n  - {reference}\nservices: {{}}\n")
    assert sources.graph([tmp_path / "docker-compose.yml"], tmp_path).opaque
    assert modelcache.key(tmp_path, ("docker", "compose"), [tmp_path / "docker-compose.yml"]) is None


def test_the_shells_bookkeeping_does_not_invalidate(stack, calls, monkeypatch):
    """bash sets `_` to the path of every command it runs: `time invoke up` after `invoke bootstrap`
    must not render again for that alone."""
    monkeypatch.setenv("_", "/usr/bin/time")
    compose.load(stack)
    monkeypatch.setenv("_", "/home/me/.venv/bin/invoke")
    monkeypatch.setenv("OLDPWD", "/somewhere/else")
    compose.load(stack)
    assert len(calls) == 1


def test_the_shells_bookkeeping_counts_when_a_file_names_it(stack, calls, no_greeting, monkeypatch):
    add_to_web(stack, "    environment:\n      GREETING: ${OLDPWD:-none}\n")
    monkeypatch.setenv("OLDPWD", "/one")
    assert greeting(compose.load(stack)) == "/one"
    monkeypatch.setenv("OLDPWD", "/two")
    assert greeting(compose.load(stack)) == "/two"

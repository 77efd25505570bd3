"""``.env`` as Compose reads it: the reader agrees with Compose, and ``invoke env`` changes nothing Compose sees.

The oracle is Compose itself: ``docker compose config --environment`` prints the variables
Compose took from ``.env``. Every test here uses the real Compose binary (no engine); nothing
is mocked.
"""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest
from conftest import require_root, run_invoke

from readiness.errors import ToolkitError
from readiness.stack import envfile
from readiness.system import fsutil

MINIMAL = "services:\n  s:\n    image: busybox:1.36.1\n"
#: What Compose adds to the environment of its own (not from .env).
NOT_FROM_ENV_FILE = ("PATH", "HOME", "PWD", "COMPOSE_PROJECT_NAME", "DOCKER_CLI_PLUGIN_", "DOCKER_CONFIG")


class ComposeRefused(Exception):
    pass


def compose_view(directory: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The variables Compose reads from ``directory/.env`` (``config --environment``).

    Compose prints ``KEY=value`` lines; a value that spans lines continues on lines with no
    ``=`` (the cases below are written so that this reading is unambiguous). The process
    environment is reduced to PATH, HOME and DOCKER_CONFIG (to find the plugin), so
    every other variable printed comes from the file.
    """
    if not (directory / "docker-compose.yml").exists():
        (directory / "docker-compose.yml").write_text(MINIMAL)
    env = {k: os.environ[k] for k in ("PATH", "HOME", "DOCKER_CONFIG") if k in os.environ}
    env.setdefault("DOCKER_CONFIG", str(Path.home() / ".docker"))  # the plugin, even with another HOME
    env.update(extra or {})
    res = subprocess.run(["docker", "compose", "--project-directory", str(directory), "config", "--environment"],
                         cwd=directory, env=env, capture_output=True, timeout=60)  # bytes: a value's CR stays
    if res.returncode != 0:
        raise ComposeRefused(res.stderr.decode(errors="replace").strip())
    view: dict[str, str] = {}
    last = None
    for line in res.stdout.decode("utf-8", "surrogateescape").removesuffix("\n").split("\n"):
        if "=" in line:
            last, _, value = line.partition("=")
            view[last] = value
        elif last is not None:
            view[last] += "\n" + line
    return {k: v for k, v in view.items() if not k.startswith(NOT_FROM_ENV_FILE) and k not in (extra or {})}


def write_env(directory: Path, text: str) -> envfile.EnvFile:
    (directory / ".env").write_bytes(text.encode())
    return envfile.read(directory / ".env")


# ------------------------------------------------------------------ the reader agrees with Compose

ACCEPTED = {
    # name: (text, {key: line}) -- every key the reader must find, on the line it is written
    "bare key (taken from the environment)": ("INHERITED\nB=2\n", {"INHERITED": 1, "B": 2}),
    "yaml-style KEY: value": ("A: value\nB:x # comment\n", {"A": 1, "B": 2}),
    "multi-line double quotes": ('A="line one\nline two"\nB=3\n', {"A": 1, "B": 3}),
    "multi-line single quotes": ("# note\nA='one\n\ntwo'\nB=3\n", {"A": 2, "B": 5}),
    "escaped single quote": ("A='it\\'s'\n", {"A": 1}),
    "key starting with a digit": ("1A=x\nB=y\n", {"1A": 1, "B": 2}),
    "two assignments on one line": ('A="x" B=y\n', {"A": 1, "B": 1}),
    "export, spaces and CRLF": ("  export   A = x  \r\nB='y'\r\n", {"A": 1, "B": 2}),
    "unicode, dots, dashes, brackets": ("é=1\nk.y=2\nDB-URL=3\nA[0]=4\n", {"é": 1, "k.y": 2, "DB-URL": 3, "A[0]": 4}),
    "comment right after a quote": ('A="x"# c\nB=\'y\'\t# c\n', {"A": 1, "B": 2}),
    "escapes in double quotes": ('A="tab\\tnew\\\\n \\$HOME \\0123 \\c"\n', {"A": 1}),
}


@pytest.mark.parametrize("name", sorted(ACCEPTED))
def test_reader_accepts_what_compose_accepts(name, tmp_path, compose_cli):
    text, where = ACCEPTED[name]
    parsed = write_env(tmp_path, text)
    view = compose_view(tmp_path, {"INHERITED": "from-the-shell"})
    assert parsed.errors == [], parsed.errors
    assert {e.key: e.line for e in parsed.entries} == where
    assigned = {e.key: e.value for e in parsed.entries if not e.inherited}
    assert set(assigned) == set(view), (assigned, view)
    for key, value in assigned.items():  # no `$` to interpolate here but `\$HOME`: Compose's value is ours
        assert view[key] == value.replace("$$", "$"), key
    assert [e.key for e in parsed.entries if e.inherited] == (["INHERITED"] if "INHERITED" in text else [])


REFUSED = {
    "space in a key": ("A=1\nA B=x\n", 2),
    "dollar in a key": ("A=1\n\nA$=x\n", 3),
    "unterminated quote": ('A=1\nB="open\nC=2\n', 2),
    "export with no name at the end": ("A=1\nexport ", 2),
}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_reader_refuses_what_compose_refuses_and_names_the_line(name, tmp_path, compose_cli):
    text, line = REFUSED[name]
    parsed = write_env(tmp_path, text)
    with pytest.raises(ComposeRefused):
        compose_view(tmp_path)
    assert parsed.errors and parsed.errors[0][0] == line, parsed.errors
    with pytest.raises(ToolkitError) as exc:
        envfile.raise_on_errors(parsed)
    assert exc.value.where == f"{tmp_path / '.env'}:{line}"


# ------------------------------------------------------------------ appending changes nothing Compose sees


def test_appended_lines_are_the_examples_lines_verbatim(tmp_path, compose_cli):
    example = ("A=1\n\n# Where the data lives; ${HOME} is expanded by Compose.\n# (second comment line)\n"
               "DATA_ROOT=${HOME}/data\nQUOTED=\"two\\nlines\"  # kept as written\n")
    (tmp_path / ".env.example").write_text(example)
    write_env(tmp_path, "A=mine\n")
    result = envfile.ensure(tmp_path / ".env", tmp_path / ".env.example")
    assert result.added == ["DATA_ROOT", "QUOTED"]
    after = (tmp_path / ".env").read_text()
    assert after.startswith("A=mine\n")
    assert after.endswith(example.split("\n\n", 1)[1]), after
    view = compose_view(tmp_path, {"HOME": "/home/someone"})
    assert view == {"A": "mine", "DATA_ROOT": "/home/someone/data", "QUOTED": "two\nlines"}


def test_invoke_env_keeps_composes_view_of_every_variable(mini_files, compose_cli):
    """`invoke env` on a .env in every syntax Compose accepts: Compose sees the same values after."""
    env = mini_files / ".env"
    env.write_bytes(
        b"\xef\xbb\xbf# mine\r\nLOCAL_DOMAIN: example.test\r\nINHERITED\r\nexport BIND_ADDRESS='127.0.0.1'\r\n"
        b"NOTE=\"first\r\nsecond\"\r\n1ST=digit\r\nLATIN=caf\xe9\r\nWEB_PORT=${PORT_FROM_SHELL:-1}0"
    )
    before = compose_view(mini_files, {"INHERITED": "shell"})
    result = run_invoke(mini_files, "env", env={"INHERITED": "shell"})
    assert result.returncode == 0, result.stderr
    after = compose_view(mini_files, {"INHERITED": "shell"})
    for key, value in before.items():
        assert after.get(key) == value, key
    example = envfile.read(mini_files / ".env.example")
    assert set(after) == set(before) | set(example.keys())
    assert env.read_bytes().startswith(b"\xef\xbb\xbf# mine\r\nLOCAL_DOMAIN: example.test\r\n")
    again = run_invoke(mini_files, "env", env={"INHERITED": "shell"})
    assert again.returncode == 0 and "nothing changed" in again.stdout


def test_a_symlinked_env_stays_a_symlink(tmp_path):
    (tmp_path / ".env.example").write_text("A=1\nB=2\n")
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "real.env").write_text("A=mine\n")
    (tmp_path / ".env").symlink_to("shared/real.env")
    assert envfile.ensure(tmp_path / ".env", tmp_path / ".env.example").added == ["B"]
    assert (tmp_path / ".env").is_symlink() and os.readlink(tmp_path / ".env") == "shared/real.env"
    assert (shared / "real.env").read_text().startswith("A=mine\n")
    assert envfile.read(tmp_path / ".env").values == {"A": "mine", "B": "2"}
    assert sorted(p.name for p in shared.iterdir()) == ["real.env"]  # no temp file left beside the target


def test_a_dangling_env_symlink_gets_its_target_created(tmp_path):
    (tmp_path / ".env.example").write_text("A=1\n")
    (tmp_path / ".env").symlink_to("real.env")
    assert envfile.ensure(tmp_path / ".env", tmp_path / ".env.example").created
    assert (tmp_path / ".env").is_symlink() and (tmp_path / "real.env").read_text() == "A=1\n"


def test_owner_and_mode_of_env_are_kept(tmp_path):
    require_root("giving a file another owner needs root (CI runs as root)")
    (tmp_path / ".env.example").write_text("A=1\nB=2\n")
    env = tmp_path / ".env"
    env.write_text("A=mine\n")
    os.chown(env, 1234, 2345)
    env.chmod(0o640)
    envfile.ensure(env, tmp_path / ".env.example")
    st = env.stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1234, 2345, 0o640)
    assert env.read_text().startswith("A=mine\n") and "B=2" in env.read_text()


def test_atomic_write_can_keep_an_owner(tmp_path):
    require_root("giving a file another owner needs root (CI runs as root)")
    target = tmp_path / "f"
    fsutil.atomic_write(target, b"x", 0o640, owner=(4321, 5432))
    st = target.stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode), target.read_bytes()) == (4321, 5432, 0o640, b"x")


def test_a_line_that_cannot_take_a_newline_is_not_appended_to(tmp_path, compose_cli):
    """`A` at the very end, with no newline, is a variable named "" for Compose: appending would change it."""
    (tmp_path / ".env.example").write_text("A=1\nB=2\n")
    write_env(tmp_path, "A=1\nLAST")
    assert compose_view(tmp_path) == {"A": "1", "": "LAST"}
    with pytest.raises(ToolkitError) as exc:
        envfile.ensure(tmp_path / ".env", tmp_path / ".env.example")
    assert exc.value.where == f"{tmp_path / '.env'}:2"
    assert (tmp_path / ".env").read_text() == "A=1\nLAST"


def test_half_a_line_is_never_copied(tmp_path):
    """Two keys on one example line, one of them already in .env: copying the line would reset it."""
    (tmp_path / ".env.example").write_text("A=1\nB='2' C=3\n")
    write_env(tmp_path, "A=1\nB=mine\n")
    with pytest.raises(ToolkitError) as exc:
        envfile.ensure(tmp_path / ".env", tmp_path / ".env.example")
    assert exc.value.where.endswith(".env.example:2") and "C" in exc.value.message
    assert (tmp_path / ".env").read_text() == "A=1\nB=mine\n"


def test_a_pasted_password_is_never_quoted_back(tmp_path):
    """A line with no `=` is refused naming its line and the bad character, never its text."""
    secret = "hunter2!Sup3rS3cret"
    parsed = envfile.parse_text(f"A=1\n{secret}\n", tmp_path / ".env")
    assert [line for line, _ in parsed.errors] == [2]
    message = parsed.errors[0][1]
    assert "'!'" in message and "column 8" in message
    assert "hunter2" not in message and "Sup3rS3cret" not in message


def test_what_a_killed_write_left_is_swept_by_the_next_run(tmp_path):
    """A write killed between naming its complete temporary file and renaming it leaves
    ``..env.<hex>.tmp`` (it may hold a pasted password): the next run removes it, and
    nothing else beside ``.env``."""
    example = tmp_path / ".env.example"
    example.write_text("# a comment\nA=1\n")
    (tmp_path / ".env").write_text("A=1\n")
    left = [tmp_path / "..env.4033a0b9c1af.tmp", tmp_path / "..env.k3x9q2.tmp"]
    for path in left:
        path.write_text("A=1\nPASSWORD=pasted\n")
    kept = [tmp_path / ".env.example", tmp_path / "..envrc.1.tmp", tmp_path / ".other.1.tmp"]
    for path in kept[1:]:
        path.write_text("x")
    envfile.ensure(tmp_path / ".env", example)
    assert not any(p.exists() for p in left)
    assert all(p.exists() for p in kept)
    assert (tmp_path / ".env").read_text() == "A=1\n"


def _env(tmp_path: Path, name: str, text: str) -> envfile.EnvFile:
    return envfile.parse_text(text, tmp_path / name)


def test_a_default_the_repository_moved_is_told_from_a_chosen_value(tmp_path):
    """What `invoke env` records: per key, the example's value while `.env` agrees with it.
    After a `git pull` moves two pins, the one `.env` still holds at the old default is
    stale; the one the user changed is theirs; a key kept on purpose is forgotten."""
    example = _env(tmp_path, ".env.example", "A_IMAGE=a:1\nB_IMAGE=b:1\nPORT=80\nC_IMAGE=c:1\n")
    env = _env(tmp_path, ".env", "A_IMAGE=a:1\nB_IMAGE=b:9\nPORT=8080\nC_IMAGE=c:1\n")  # B and PORT: chosen
    record = envfile.shipped_after({}, env, example)
    assert record == {"A_IMAGE": "a:1", "C_IMAGE": "c:1"}
    assert envfile.stale_defaults(record, env, example) == []

    moved = _env(tmp_path, ".env.example", "A_IMAGE=a:2\nB_IMAGE=b:2\nPORT=80\nC_IMAGE=c:2\n")
    assert envfile.stale_defaults(record, env, moved) == [("A_IMAGE", "a:1", "a:2"), ("C_IMAGE", "c:1", "c:2")]
    record = envfile.shipped_after(record, env, moved, keep=("C_IMAGE",))  # `invoke env --keep C_IMAGE`
    assert record == {"A_IMAGE": "a:1"}
    assert envfile.stale_defaults(record, env, moved) == [("A_IMAGE", "a:1", "a:2")]

    followed = _env(tmp_path, ".env", "A_IMAGE=a:2\nB_IMAGE=b:9\nPORT=8080\nC_IMAGE=c:1\n")  # the user took a:2
    record = envfile.shipped_after(record, followed, moved)
    assert record == {"A_IMAGE": "a:2"} and envfile.stale_defaults(record, followed, moved) == []
    again = _env(tmp_path, ".env.example", "A_IMAGE=a:3\nB_IMAGE=b:2\nPORT=80\nC_IMAGE=c:2\n")
    assert envfile.stale_defaults(record, followed, again) == [("A_IMAGE", "a:2", "a:3")]

    # Only image pins: a moved DATA_ROOT kept from the example is never advice to follow (it
    # would point the stack at an empty directory).
    data = _env(tmp_path, ".env", "DATA_ROOT=../data\n")
    kept = envfile.shipped_after({}, data, _env(tmp_path, ".env.example", "DATA_ROOT=../data\n"))
    assert kept == {"DATA_ROOT": "../data"}
    assert envfile.stale_defaults(kept, data, _env(tmp_path, ".env.example", "DATA_ROOT=/srv/data\n")) == []
    # No record at all (a .env older than it): the pins that differ are unknown, not stale.
    assert envfile.unrecorded_pins({}, followed, again) == [("A_IMAGE", "a:2", "a:3"), ("B_IMAGE", "b:9", "b:2"),
                                                            ("C_IMAGE", "c:1", "c:2")]
    assert envfile.unrecorded_pins(record, followed, again) == []


def test_invoke_env_records_the_repositorys_values_and_keeps_on_request(mini_files):
    """`invoke env` writes the record beside its caches; `--keep` forgets a key and says so;
    a name that is not a variable is a usage error, not a traceback."""
    assert run_invoke(mini_files, "env").returncode == 0
    record = envfile.load_shipped(mini_files)
    assert record["WEB_IMAGE"] == "busybox:1.36.1" and record["LOCAL_DOMAIN"] == "localhost"
    kept = run_invoke(mini_files, "env", "--keep", "WEB_IMAGE")
    assert kept.returncode == 0 and "WEB_IMAGE: the value in .env is kept as your choice" in kept.stdout, kept.stdout
    assert "WEB_IMAGE" not in envfile.load_shipped(mini_files)
    again = run_invoke(mini_files, "env")
    assert again.returncode == 0 and "WEB_IMAGE" in envfile.load_shipped(mini_files)  # .env agrees with the example
    bad = run_invoke(mini_files, "env", "--keep", "not a key")
    assert bad.returncode == 2 and "not a variable name" in bad.stdout + bad.stderr and "Traceback" not in bad.stderr

"""Phase 1 of ``invoke up``: pull what the engine lacks, with progress, retries and a clear refusal.

``compose pull --ignore-pull-failures`` with JSON progress, and no time limit of its own -- a
slow link is not a failure -- one progress line per image at least every few seconds, and a
retry for transient network errors (through :func:`readiness.system.retry.poll`). An image
that cannot be pulled ends the command *before any container is created*, naming each image,
its registry, the variable that sets it and the reason.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .. import output
from ..enums import TextEnum
from ..errors import ToolkitError
from ..stack import compose, sources
from ..stack.model import Model
from ..system import engine as enginelib
from ..system import runner
from ..system.retry import poll

#: Longest silence while pulling or waiting before a summary line is printed.
HEARTBEAT_SECONDS = 4.0


PULL_ATTEMPTS = 3
#: Errors worth a retry: the network or the registry hiccuped, the image itself is fine.
_TRANSIENT = re.compile(r"(?i)timeout|timed out|connection reset|broken pipe|unexpected EOF|\bEOF$|temporar|"
                        r"TLS handshake|status(?: code)?:? 50[0234]|\b50[234] (?:bad gateway|service unavail|"
                        r"gateway time)|internal server error|too many requests|toomanyrequests|i/o error")


@dataclass(frozen=True)
class Image:
    """An image the stack uses: its reference, the services that use it, the variable naming it."""

    ref: str
    services: tuple[str, ...]
    variable: str | None

    @property
    def registry(self) -> str:
        first = self.ref.split("/", 1)[0]
        return first if "/" in self.ref and ("." in first or ":" in first or first == "localhost") else "docker.io"


def images(model: Model) -> list[Image]:
    """Every image the stack pulls (not built), with the ``*_IMAGE`` variable that sets it."""
    written = sources.image_variables(model.project_dir)
    by_ref: dict[str, list[str]] = {}
    variables: dict[str, str] = {}
    for svc, spec in sorted(model.services.items()):
        ref = spec.get("image")
        if not ref or spec.get("build"):
            continue
        by_ref.setdefault(str(ref), []).append(svc)
        if svc in written:
            variables.setdefault(str(ref), written[svc])
    return [Image(ref, tuple(svcs), variables.get(ref)) for ref, svcs in sorted(by_ref.items())]


def missing_images(wanted: list[Image]) -> list[Image]:
    """The images the engine does not have (one ``docker image inspect``)."""
    if not wanted:
        return []
    res = runner.run(["docker", "image", "inspect", "--format", "{{.Id}}", *(i.ref for i in wanted)], timeout=60)
    if res.ok:
        return []
    hint = enginelib.unreachable_hint(res.stderr)
    if hint:
        raise ToolkitError(f"the Docker engine does not answer: {res.stderr.strip().splitlines()[-1]}", fix=hint)
    absent = set(re.findall(r"No such image: (\S+)", res.stderr))
    return [i for i in wanted if i.ref in absent or _normal(i.ref) in {_normal(a) for a in absent}]


def _normal(ref: str) -> str:
    return ref.removeprefix("docker.io/").removeprefix("library/")


class PullState(TextEnum):
    """Where the pull of one image is, from Compose's progress events."""

    WAITING = "waiting"
    PULLING = "pulling"
    DONE = "done"
    FAILED = "failed"


@dataclass
class _Pull:
    image: Image
    layers: dict[str, tuple[int, int]] = field(default_factory=dict)  # layer -> (current, total)
    state: PullState = PullState.WAITING
    error: str = ""
    started: float = field(default_factory=time.monotonic)
    done_bytes: int = 0

    @property
    def current(self) -> int:
        return sum(c for c, _ in self.layers.values())

    @property
    def total(self) -> int:
        return sum(t for _, t in self.layers.values())


def _size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


class PullProgress:
    """Turns Compose's JSON pull events into one line per image, never silent for long."""

    def __init__(self, wanted: list[Image], say: Callable[[str], None]) -> None:
        self.say = say
        self.pulls = {svc: _Pull(img) for img in wanted for svc in img.services[:1]}
        self.by_service = {svc: img.services[0] for img in wanted for svc in img.services}
        self.last_line = time.monotonic()
        self.last_report: dict[str, float] = {}

    def event(self, line: str) -> None:
        try:
            ev = json.loads(line)
        except ValueError:
            return
        if not isinstance(ev, dict):
            return
        svc = self.by_service.get(str(ev.get("parent_id") or ev.get("id") or ""))
        pull = self.pulls.get(svc or "")
        if pull is None:
            return
        text = str(ev.get("text", ""))
        if ev.get("parent_id"):
            if "current" in ev or "total" in ev:
                pull.layers[str(ev["id"])] = (int(ev.get("current") or 0), int(ev.get("total") or 0))
            if text in ("Pull complete", "Already exists", "Download complete"):
                cur, tot = pull.layers.get(str(ev["id"]), (0, 0))
                pull.layers[str(ev["id"])] = (max(cur, tot), tot)
            pull.state = PullState.PULLING
            self._maybe_report(svc or "", pull)
        elif text == "Pulling":
            pull.state, pull.started = PullState.PULLING, time.monotonic()
        elif text == "Pulled" and pull.state != PullState.DONE:
            pull.state = PullState.DONE
            took = time.monotonic() - pull.started
            size = f"{_size(pull.total)} in " if pull.total else ""
            self._line(f"{pull.image.ref}: done ({size}{took:.0f} s)")
        elif text == "Error":
            pull.state, pull.error = PullState.FAILED, str(ev.get("status", "")).strip()
            self._line(f"{pull.image.ref}: failed: {pull.error}")

    def _maybe_report(self, svc: str, pull: _Pull) -> None:
        now = time.monotonic()
        if now - self.last_report.get(svc, 0) < 2.0 or not pull.current:
            return
        self.last_report[svc] = now
        rate = pull.current / max(now - pull.started, 0.001)
        total = f" / {_size(pull.total)}" if pull.total else ""
        self._line(f"{pull.image.ref}: {_size(pull.current)}{total}, {_size(rate)}/s")

    def tick(self) -> None:
        """Called when nothing was printed for a while: one summary line."""
        if time.monotonic() - self.last_line < HEARTBEAT_SECONDS:
            return
        done = sum(p.state == PullState.DONE for p in self.pulls.values())
        waiting = [p.image.ref for p in self.pulls.values() if p.state in (PullState.WAITING, PullState.PULLING)]
        self._line(f"{done} of {len(self.pulls)} images done; still pulling: {', '.join(waiting) or '-'}")

    def _line(self, text: str) -> None:
        self.say(text)
        self.last_line = time.monotonic()

    def failed(self) -> list[_Pull]:
        """Pulls that reported an error or never reported success."""
        return [p for p in self.pulls.values() if p.state != PullState.DONE]


def pull(model: Model, wanted: list[Image]) -> list[Image]:
    """Pull ``wanted`` with live progress and retries; raises naming every image that failed.

    Whether an image arrived is asked of the engine afterwards (the JSON events only give the
    reasons): an image is retried, up to ``PULL_ATTEMPTS`` times, only when its error looks
    transient; every other failure is final at once.
    """
    if not wanted:
        return []
    out = output.current()
    out.say("up", f"pulling {len(wanted)} image(s) the engine does not have: {', '.join(i.ref for i in wanted)}")
    from tenacity import wait_incrementing

    todo: list[Image] = list(wanted)
    final: list[tuple[Image, str]] = []
    reasons: dict[str, str] = {}

    def attempt() -> list[Image]:
        """Pull ``todo`` once; returns the images worth another attempt (a transient error)."""
        progress = PullProgress(todo, lambda text: out.say("pull", text))
        services = [img.services[0] for img in todo]
        with runner.Lines(compose.command_for(model, "--progress", "json", "pull", "--ignore-pull-failures",
                                              *services), cwd=model.project_dir) as proc:
            while True:
                finished, line = proc.next(timeout=1.0)
                if finished:
                    break
                if line is not None:
                    progress.event(line)
                progress.tick()
            res = proc.result()
        reasons.clear()
        reasons.update({p.image.ref: p.error for p in progress.pulls.values() if p.error})
        still = missing_images(todo)
        if still and not reasons and not res.ok:  # compose itself failed (engine gone, bad flags)
            raise ToolkitError(f"docker compose pull failed: {(res.stdout.strip().splitlines() or ['?'])[-1]}",
                               fix=enginelib.unreachable_hint(res.stdout) or "see the message above")
        transient = [img for img in still if _TRANSIENT.search(reasons.get(img.ref, ""))]
        final.extend((img, reasons.get(img.ref) or "not pulled") for img in still if img not in transient)
        return transient

    def again(transient: list[Image], attempt_number: int, seconds: float) -> None:
        nonlocal todo
        out.say("pull", f"transient error, retrying {len(transient)} image(s) in {seconds:.0f} s "
                        f"(attempt {attempt_number + 1} of {PULL_ATTEMPTS})")
        todo = transient

    left = poll(attempt, lambda transient: not transient, attempts=PULL_ATTEMPTS,
                wait=wait_incrementing(start=2, increment=2), before_wait=again)
    final += [(img, reasons[img.ref]) for img in left]
    if final:
        raise pull_error(final)
    return wanted


def pull_error(failed: list[tuple[Image, str]]) -> ToolkitError:
    lines = []
    for img, reason in sorted(failed, key=lambda x: x[0].ref):
        var = f", set by {img.variable}" if img.variable else ""
        lines.append(f"  {img.ref} (registry {img.registry}{var}; services {', '.join(img.services)}): {reason}")
    variables = sorted({i.variable for i, _ in failed if i.variable})
    return ToolkitError(
        f"{len(failed)} image(s) cannot be pulled, so nothing was started:\n" + "\n".join(lines),
        where=".env (" + ", ".join(variables) + ")" if variables else None,
        fix="check each image name and tag in .env (compare with .env.example); for a private registry run "
            "`docker login <registry>`; behind a firewall configure a registry mirror (`registry-mirrors` in "
            "the engine's daemon.json); then `invoke up` again")

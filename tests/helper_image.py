"""The toolkit's helper image, made available on the engine the tests use.

The toolkit chowns data directories and deletes data through short-lived containers of
``HELPER_IMAGE`` (``busybox:1.37.0`` by default). Nothing can be pulled on our machines, so
when the engine lacks that image the tests build one under the same name from Debian's
``busybox-static`` (``FROM scratch``): the same applets the real busybox image provides
(``sh``, ``chown``, ``chmod``, ``find``, ``rm``, ``cat``). An image already present -- the
real one, pulled by a contributor -- is used as it is.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from readiness.system import engine as enginelib

REPO = Path(__file__).resolve().parent.parent
BUSYBOX = Path(os.environ.get("READINESS_E2E_BUSYBOX", "/bin/busybox"))


def default_helper_image(example: Path = REPO / ".env.example") -> str:
    """HELPER_IMAGE as ``.env.example`` sets it."""
    m = re.search(r"(?m)^HELPER_IMAGE=(\S+)\s*$", example.read_text(encoding="utf-8"))
    if not m:
        raise RuntimeError(f"{example} sets no HELPER_IMAGE")
    return m.group(1)


def present(image: str, env: dict[str, str] | None = None) -> bool:
    return subprocess.run(["docker", "image", "inspect", image], capture_output=True, env=env,
                          timeout=60).returncode == 0


def ensure_helper_image(image: str | None = None, env: dict[str, str] | None = None) -> str:
    """Make ``image`` (default: .env.example's HELPER_IMAGE) exist on the engine; returns its name."""
    image = image or default_helper_image()
    if present(image, env):
        return image
    if not BUSYBOX.is_file():
        raise RuntimeError(f"{BUSYBOX} is missing: install Debian's busybox-static to build {image}")
    with tempfile.TemporaryDirectory(prefix="helper-image-") as tmp:
        shutil.copy2(BUSYBOX, Path(tmp) / "busybox")
        (Path(tmp) / "Dockerfile").write_text(
            "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n"
            "CMD [\"sh\"]\n")
        res = subprocess.run(["docker", "build", "-q", "-t", image, tmp], capture_output=True, text=True, env=env,
                             timeout=600)
    if res.returncode != 0:
        raise RuntimeError(f"cannot build the helper image {image}: {res.stderr.strip()}")
    return image


#: Capabilities the tests' helper needs, as root, on files of any container uid: give an
#: owner, write and read whatever the mode, change the mode of a file it does not own.
ENGINE_SH_CAPS = ("CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER")


def engine_sh(directory: Path, script: str, *, target: str = "/d", check: bool = True, timeout: float = 120) -> str:
    """Run ``script`` with ``sh`` as root in the helper container, ``directory`` at ``target``;
    returns its stdout.

    The toolkit gives files to container uids *as the engine maps them*; a test run by a user
    who is not root, or against a rootless engine, reaches them the way the toolkit does:
    through the engine (``readiness.system.engine.helper``), never on the host. With ``check``, a
    failure raises with the helper's message."""
    res = enginelib.helper(ensure_helper_image(), script, [(directory, target)], caps=ENGINE_SH_CAPS,
                           timeout=timeout, check=False)
    if check and not res.ok:
        raise RuntimeError(f"helper container failed ({script!r}): {res.stderr.strip()}")
    return res.stdout


def empty_through_engine(directory: Path) -> None:
    """Delete everything in ``directory`` (which stays) through the engine; best effort."""
    engine_sh(directory, "rm -rf /d/* /d/.[!.]*", check=False, timeout=300)

"""Every relative link and anchor of the repository's Markdown resolves.

Links, images and reference definitions are those markdown-it-py finds (so a link in code is
not one); an anchor into a Markdown file must be one of its headings' GitHub anchors or an
HTML ``id``. Absolute URLs (``https:``, ``mailto:``) are not followed.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path

from .markdown import Doc, anchors, links, markdown_files

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def _rel(path: Path, root: Path) -> Path:
    return path.relative_to(root) if root in path.parents else path


def problems(root: Path, files: Iterable[Path] | None = None) -> list[str]:
    """Every link that does not resolve, as ``file:line: ...``."""
    out = []
    offered: dict[Path, set[str]] = {}
    for md in files if files is not None else markdown_files(root):
        rel = _rel(md, root)
        for line, target in links(Doc.parse(md.read_text(encoding="utf-8", errors="replace"))):
            if not target or _SCHEME.match(target):
                continue
            path_part, _, anchor = target.partition("#")
            path_part = path_part.split("?", 1)[0]
            dest = md
            if path_part:
                dest = Path(os.path.normpath((root / path_part.lstrip("/")) if path_part.startswith("/")
                                             else (md.parent / path_part)))
                if not dest.exists():
                    out.append(f"{rel}:{line}: link to {target} does not resolve ({path_part} is missing)")
                    continue
            if anchor and dest.is_file() and dest.suffix.lower() == ".md":
                if dest not in offered:
                    offered[dest] = anchors(Doc.parse(dest.read_text(encoding="utf-8", errors="replace")))
                if anchor.lower() not in offered[dest]:
                    out.append(f"{rel}:{line}: link to {target}: no heading #{anchor} in {_rel(dest, root)}")
    return out

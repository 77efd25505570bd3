"""Generated blocks: the text between two marker comments, rendered from the code.

A block lives between a begin marker, which names its kind and may carry options, and an end
marker of the same kind::

    <!-- tasks:begin style=full only=up,health -->
    ...rendered text, never edited by hand...
    <!-- tasks:end -->

Only the text between the markers is rewritten. A kind is rendered by a function of the
repository's sources (:class:`tools.docs.sources.Sources`) and the options; the kinds are
listed in :data:`tools.docs.render.RENDERERS`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

BEGIN = re.compile(r"<!-- (?P<kind>[a-z][a-z-]*):begin(?P<options>[^>]*?)-->")


def end_marker(kind: str) -> str:
    return f"<!-- {kind}:end -->"


@dataclass(frozen=True)
class Block:
    kind: str
    options: dict[str, str]
    start: int  # where the rendered text starts (after the begin marker)
    end: int  # where the end marker starts


def parse_options(text: str) -> dict[str, str]:
    out = {}
    for word in text.split():
        key, sep, value = word.partition("=")
        if not sep:
            raise ValueError(f"cannot read {word!r} in a begin marker (key=value)")
        out[key] = value
    return out


def blocks(text: str) -> Iterator[Block]:
    """Every block of ``text``, in order; raises ValueError for a begin marker without its end."""
    pos = 0
    for m in BEGIN.finditer(text):
        if m.start() < pos:
            continue
        end = text.find(end_marker(m.group("kind")), m.end())
        if end < 0:
            raise ValueError(f"{m.group(0)} has no {end_marker(m.group('kind'))}")
        yield Block(m.group("kind"), parse_options(m.group("options")), m.end(), end)
        pos = end


def render(text: str, render_block: Callable[[Block], str]) -> str:
    """``text`` with every block's content replaced by ``render_block(block)``."""
    out, pos = [], 0
    for block in blocks(text):
        out += [text[pos:block.start], "\n", render_block(block).strip("\n"), "\n"]
        pos = block.end
    out.append(text[pos:])
    return "".join(out)

"""Markdown as markdown-it-py reads it: headings and their anchors, links, tables, code.

Every check of the documents reads Markdown through this module, so that what counts as a
link, a table cell or a code span is what a CommonMark parser says (GFM tables enabled), not
what a regular expression guesses. Line numbers are 1-based.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from urllib.parse import unquote

from markdown_it import MarkdownIt
from markdown_it.token import Token

#: Directories never searched for Markdown: tool caches, virtualenvs, container data.
SKIP_DIRS = frozenset({".git", ".nox", ".venv", "venv", "node_modules", ".pytest_cache", ".ruff_cache", ".hypothesis",
                       ".benchmarks", ".mypy_cache", "__pycache__", "build", "dist", "data", ".readiness"})
_HTML_ANCHOR = re.compile(r"<a\s+(?:id|name)=\"([^\"]+)\"")


@cache
def parser() -> MarkdownIt:
    return MarkdownIt("commonmark").enable("table")


@dataclass(frozen=True)
class Doc:
    """One parsed Markdown text: its block tokens and its reference definitions."""

    text: str
    tokens: tuple[Token, ...]
    references: dict[str, dict]

    @classmethod
    def parse(cls, text: str) -> Doc:
        env: dict = {}
        tokens = parser().parse(text, env)
        return cls(text, tuple(tokens), env.get("references", {}))


def markdown_files(root: Path) -> list[Path]:
    """Every Markdown file under ``root``, tracked or not, outside caches, virtualenvs and data."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root, onerror=lambda _err: None):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS and not d.endswith(".egg-info"))
        found += [Path(dirpath) / f for f in sorted(filenames) if f.lower().endswith(".md")]
    return found


def inline_text(token: Token) -> str:
    """The text an inline token shows: its text, code spans and link texts, without markup."""
    out = []
    for child in token.children or []:
        if child.type in ("text", "code_inline", "image"):  # an image shows its alt text
            out.append(child.content)
        elif child.type in ("softbreak", "hardbreak"):
            out.append(" ")
    return "".join(out)


def slug(text: str) -> str:
    """GitHub's anchor for a heading's text: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def headings(doc: Doc) -> Iterator[tuple[int, int, str]]:
    """(level, line, text) of every heading."""
    tokens = doc.tokens
    for i, tok in enumerate(tokens):
        if tok.type == "heading_open":
            yield int(tok.tag[1:]), tok.map[0] + 1 if tok.map else 0, inline_text(tokens[i + 1])


def anchors(doc: Doc) -> set[str]:
    """Every anchor a document offers: heading slugs (GitHub numbers duplicates) and HTML ids."""
    seen: dict[str, int] = {}
    out: set[str] = set()
    for _, _, text in headings(doc):
        base = slug(text)
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    for tok in doc.tokens:
        html = [tok.content] if tok.type == "html_block" else \
            [c.content for c in tok.children or [] if c.type == "html_inline"] if tok.type == "inline" else []
        for chunk in html:
            out.update(_HTML_ANCHOR.findall(chunk))
    return out


def links(doc: Doc) -> list[tuple[int, str]]:
    """(line, target) of every link, image and reference definition, each target once (at its
    first line); targets are percent-decoded as written."""
    found: dict[str, int] = {}
    for tok in doc.tokens:
        if tok.type != "inline" or not tok.map:
            continue
        line = tok.map[0] + 1
        for child in tok.children or []:
            if child.type in ("softbreak", "hardbreak"):
                line += 1
            elif child.type in ("link_open", "image"):
                target = str(child.attrs.get("href" if child.type == "link_open" else "src", ""))
                found.setdefault(unquote(target), line)
    for ref in doc.references.values():
        found.setdefault(unquote(ref["href"]), (ref.get("map") or [0])[0] + 1)
    return sorted(((line, target) for target, line in found.items()), key=lambda x: (x[0], x[1]))


def section(doc: Doc, title: str) -> Doc:
    """The part of ``doc`` under the first heading whose text contains ``title`` (any case), up
    to the next heading of the same or a higher level; an empty document when there is none."""
    lines = doc.text.splitlines(keepends=True)
    start = level = None
    for lvl, line, text in headings(doc):
        if start is None:
            if title.lower() in text.lower():
                start, level = line, lvl
        elif lvl <= level:
            return Doc.parse("".join(lines[start:line - 1]))
    return Doc.parse("".join(lines[start:]) if start is not None else "")


def tables(doc: Doc) -> list[tuple[list[str], list[list[Token]]]]:
    """Every table: its header texts and, per body row, the inline token of each cell."""
    out: list[tuple[list[str], list[list[Token]]]] = []
    header: list[str] = []
    rows: list[list[Token]] = []
    row: list[Token] = []
    part = ""
    tokens = doc.tokens
    for i, tok in enumerate(tokens):
        if tok.type == "table_open":
            header, rows = [], []
        elif tok.type in ("thead_open", "tbody_open"):
            part = tok.type[1:5]
        elif tok.type == "tr_open":
            row = []
        elif tok.type in ("th_open", "td_open"):
            cell = tokens[i + 1]
            if part == "head":
                header.append(inline_text(cell).strip())
            else:
                row.append(cell)
        elif tok.type == "tr_close" and part == "body":
            rows.append(row)
        elif tok.type == "table_close":
            out.append((header, rows))
    return out


def code_spans(token: Token) -> list[str]:
    """The inline code spans of an inline token (a table cell, a paragraph)."""
    return [c.content.strip() for c in token.children or [] if c.type == "code_inline"]


def code(doc: Doc) -> list[tuple[int, str]]:
    """(line, code) of every line of a code block and of every inline code span."""
    out: list[tuple[int, str]] = []
    for tok in doc.tokens:
        if tok.type in ("fence", "code_block") and tok.map:
            out += [(tok.map[0] + 1 + (tok.type == "fence") + n, line)
                    for n, line in enumerate(tok.content.splitlines())]
        elif tok.type == "inline" and tok.map:
            line = tok.map[0] + 1
            for child in tok.children or []:
                if child.type in ("softbreak", "hardbreak"):
                    line += 1
                elif child.type == "code_inline":
                    out.append((line, child.content))
    return out


def fences(doc: Doc, language: str) -> list[str]:
    """The content of every fenced code block whose info string starts with ``language``."""
    return [tok.content for tok in doc.tokens
            if tok.type == "fence" and tok.info.split()[:1] == [language]]

"""README.md's commands, as CI runs them: ``python -m tools.docs.readme install|test``.

README.md shows a contributor two commands in its first two ``sh`` blocks: the one that
installs the toolkit and prepares the stack, then the test command. CI runs exactly those
(``.ci/run`` reads them here), and "What CI runs" in OPERATIONS.md shows them as they read,
so neither can drift from the README.
"""

from __future__ import annotations

import sys
from pathlib import Path

from .markdown import Doc, fences

#: The README's commands by what they do, and the ``sh`` block (0-based) each one is.
COMMANDS = {"install": 0, "test": 1}
LABELS = {"install": "README command 1", "test": "the README's test command"}


def command(readme_text: str, which: str) -> str:
    """The command ``which`` (install, test) of the README, as written."""
    blocks = fences(Doc.parse(readme_text), "sh")
    index = COMMANDS[which]
    if len(blocks) <= index:
        raise ValueError(f"README.md has {len(blocks)} sh block(s); the {which} command is block {index + 1}")
    return blocks[index].strip()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0] not in COMMANDS:
        print(f"usage: python -m tools.docs.readme {{{'|'.join(COMMANDS)}}}", file=sys.stderr)
        return 2
    readme = Path(__file__).resolve().parents[2] / "README.md"
    print(command(readme.read_text(encoding="utf-8"), args[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``python -m tools.docs [--check]``: render the documents' generated blocks, then check them all.

Without ``--check`` every generated block is rewritten in place; with it nothing is written,
and a block that differs is a problem. Either way the checks of what is not generated run
too. Exit 1 when any problem remains, each printed on its own line.
"""

from __future__ import annotations

import argparse
import sys

from .render import COMMAND, checks, render_all
from .sources import Sources


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=COMMAND, description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 when a block differs")
    args = parser.parse_args(argv)
    sources = Sources()
    changed, problems = render_all(sources, write=not args.check)
    problems += checks(sources)
    if not args.check:
        for rel in changed:
            print(f"{rel}: generated blocks rendered")
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        print(f"{len(problems)} problem(s) in the documents" + (f": run `{COMMAND}`" if args.check else ""),
              file=sys.stderr)
        return 1
    if not changed:
        print("documents: every generated block is up to date, and every check passes")
    return 0


if __name__ == "__main__":
    sys.exit(main())

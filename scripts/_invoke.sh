#!/usr/bin/env bash
# Shared by the scripts in this folder: run the repository's Invoke tasks, so that each
# script is a thin entry point to the one implementation in tasks.py / readiness/.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# The activated virtualenv first (the one the caller chose), then the repository's .venv
# (README's setup, used even when not activated), then any invoke on PATH.
if [ -n "${VIRTUAL_ENV:-}" ] && [ -x "$VIRTUAL_ENV/bin/invoke" ]; then
  inv="$VIRTUAL_ENV/bin/invoke"
elif [ -x "$root/.venv/bin/invoke" ]; then
  inv="$root/.venv/bin/invoke"
elif command -v invoke >/dev/null 2>&1; then
  inv="$(command -v invoke)"
else
  echo "error: the toolkit is not installed" >&2
  echo "  fix:   python3 -m venv .venv && . .venv/bin/activate && pip install -e '.[test,dev]'" >&2
  exit 127
fi
exec "$inv" --search-root "$root" "$@"

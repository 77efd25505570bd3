#!/usr/bin/env bash
# Read-only boot prerequisites check (REQ-BOOT-005, TASK-005, VAL-PLN-003); `--json` for
# machines. Same code as `invoke preflight`.
exec "$(dirname "${BASH_SOURCE[0]}")/_invoke.sh" preflight "$@"

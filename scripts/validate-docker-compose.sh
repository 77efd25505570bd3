#!/usr/bin/env bash
# CI-style validation (REQ-BOOT-006, TASK-006, VAL-PLN-004): yamllint, then the bootstrap,
# which generates throwaway secrets and certificates in their git-ignored paths and ends with
# `docker compose config` (no warning allowed) and preflight. Same code as
# `invoke lint bootstrap` (`nox -s validate` adds promtool and amtool).
exec "$(dirname "${BASH_SOURCE[0]}")/_invoke.sh" lint bootstrap "$@"

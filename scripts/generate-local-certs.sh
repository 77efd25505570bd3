#!/usr/bin/env bash
# Local TLS with mkcert (REQ-BOOT-002, TASK-004): secrets/certs/{rootCA.pem,cert.pem,key.pem}
# covering every routed hostname. Idempotent. Same code as `invoke certs`.
exec "$(dirname "${BASH_SOURCE[0]}")/_invoke.sh" certs "$@"

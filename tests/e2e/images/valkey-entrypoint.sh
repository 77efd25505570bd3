#!/bin/sh
# docker-entrypoint.sh of the e2e Valkey image (tests/e2e only), with the contract of the
# valkey/valkey image's entrypoint that infra/07-cache relies on (written for this suite,
# not copied): flags alone run valkey-server; `valkey-server ...` started as root first gives
# the working directory (/data) to valkey (999:999), then re-runs itself as valkey through
# setpriv; the server runs with umask 0077 and $VALKEY_EXTRA_FLAGS appended.
set -e

case "$1" in
-* | *.conf) set -- valkey-server "$@" ;;
esac

if [ "$1" = valkey-server ] && [ "$(id -u)" = 0 ]; then
    find . \! -user valkey -exec chown valkey '{}' +
    exec setpriv --reuid=valkey --regid=valkey --clear-groups -- "$0" "$@"
fi

[ "$(umask)" = 0022 ] && umask 0077

# shellcheck disable=SC2086  # the extra flags are meant to be split
exec "$@" $VALKEY_EXTRA_FLAGS

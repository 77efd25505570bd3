#!/bin/sh
# docker-entrypoint.sh of the e2e HAProxy image (tests/e2e only), with the contract of the
# official haproxy image's entrypoint (written for this suite, not copied): flags alone run
# haproxy, and `haproxy ...` runs in master-worker mode (-W) in the foreground (-db).
set -e

case "$1" in
-*) set -- haproxy "$@" ;;
esac

if [ "$1" = haproxy ]; then
    shift
    set -- haproxy -W -db "$@"
fi

exec "$@"

#!/bin/sh
# Stand-in for an upstream image in the end-to-end suite (busybox ash, no bash-isms).
#
#   standin run SERVICE [--secret FILE]... [--data DIR[=UID:GID]]... [--http PORT]... [--tls PORT]
#                       [--path PATH] [--once] [--fake KIND]
#       1. reads every secret FILE (fails if it is unreadable or empty; never prints it);
#       2. appends a line to DIR/.standin-SERVICE in every writable data directory, as the
#          container user, or as UID:GID when the real image drops to a data owner (fails if
#          it cannot);
#       3. --once: exits 0 (a one-shot service); otherwise serves /www on every --http PORT
#          (busybox httpd) and, for --tls PORT, HTTPS through a Traefik TLS front to a loopback
#          httpd (OpenSearch serves HTTPS; busybox httpd cannot); with --fake, the contract fake
#          fakes/KIND.py serves every port instead (Debian's Python image: fakes/base.py);
#   standin health [http:PORT|tls:PORT]... [--path PATH]
#       the healthcheck: PID 1 passed its checks (it is in the `serve` phase) and every port
#       answers PATH. (No `wget -T`: Debian's busybox 1.35 wget segfaults with it; the
#       healthcheck's own timeout bounds the probe.)
set -u

log() { echo "standin[$SERVICE]: $*"; }
die() { echo "standin[$SERVICE]: FAIL: $*" >&2; exit 1; }
SERVICE=-
TLS_BACKEND=18999  # loopback port of the httpd behind the TLS front (see /standin-tls.yml)

case "${1:-}" in
health)
    shift
    path=/
    ports=""
    while [ $# -gt 0 ]; do
        case $1 in
        --path) path=$2; shift 2 ;;
        *) ports="$ports $1"; shift ;;
        esac
    done
    tr '\0' ' ' </proc/1/cmdline | grep -q '/standin serve ' || { echo "not serving yet"; exit 1; }
    for p in $ports; do
        case $p in
        http:*) wget -q -O /dev/null "http://127.0.0.1:${p#http:}$path" || { echo "no answer on $p"; exit 1; } ;;
        tls:*)
            if [ -f /fakes/base.py ]; then  # busybox wget's TLS cannot talk to Python's
                python3 /fakes/base.py health "https://127.0.0.1:${p#tls:}$path" || exit 1
            else
                wget -q --no-check-certificate -O /dev/null "https://127.0.0.1:${p#tls:}$path" \
                    || { echo "no answer on $p"; exit 1; }
            fi ;;
        esac
    done
    exit 0
    ;;
run)
    shift
    SERVICE=$1
    shift
    once=0
    fake=""
    serve_args=""
    nsecrets=0
    ndirs=0
    me="$(id -u):$(id -g)"
    while [ $# -gt 0 ]; do
        case $1 in
        --secret)
            f=$2
            shift 2
            [ -e "$f" ] || die "secret $f is not mounted"
            [ -r "$f" ] || die "secret $f is not readable by uid $me (mode $(stat -c %a "$f"), owner $(stat -c %u:%g "$f"))"
            value=$(cat "$f") || die "cannot read secret $f as uid $me"
            [ -n "$value" ] || die "secret $f is empty"
            unset value
            nsecrets=$((nsecrets + 1))
            ;;
        --data)
            spec=$2
            shift 2
            dir=${spec%%=*}
            as=$me
            case $spec in *=*) as=${spec#*=} ;; esac
            [ -d "$dir" ] || die "data directory $dir is not mounted"
            line="boot $(date -u +%Y-%m-%dT%H:%M:%SZ) host $(hostname) uid $as"
            marker="$dir/.standin-$SERVICE"
            if [ "$as" = "$me" ]; then
                echo "$line" >>"$marker" 2>/dev/null
            else
                # Root that drops to the data owner (Spilo, Valkey): write as that uid.
                start-stop-daemon -S -c "$as" -n standin-no-such-process -a /bin/busybox -- \
                    sh -c 'echo "$1" >>"$2"' sh "$line" "$marker" 2>/dev/null
            fi || die "cannot write into data directory $dir as uid $as (it is owned by $(stat -c %u:%g "$dir"), mode $(stat -c %a "$dir"))"
            ndirs=$((ndirs + 1))
            ;;
        --http | --tls) serve_args="$serve_args ${1#--}:$2"; shift 2 ;;
        --path) shift 2 ;;
        --once) once=1; shift ;;
        --fake) fake=$2; shift 2 ;;
        *) die "unknown argument $1" ;;
        esac
    done
    log "ok as uid $me: $nsecrets secret(s) read, $ndirs data dir(s) written"
    if [ "$once" = 1 ]; then
        log "one-shot: done"
        exit 0
    fi
    # shellcheck disable=SC2086
    exec /bin/sh /standin serve "$SERVICE" ${fake:+"fake:$fake"} $serve_args
    ;;
serve)
    shift
    SERVICE=$1
    shift
    pids=""
    served="$*"
    case "${1:-}" in
    fake:*)  # one contract fake serves every port
        kind=${1#fake:}
        shift
        served="$* (contract fake $kind)"
        python3 /fakes/base.py "$kind" "$@" &
        pids=$!
        set -- ;;
    esac
    for p in "$@"; do
        case $p in
        http:*)
            httpd -f -p "${p#http:}" -h /www &
            pids="$pids $!"
            ;;
        tls:*)
            httpd -f -p "127.0.0.1:$TLS_BACKEND" -h /www &
            pids="$pids $!"
            # GODEBUG=tlssha1=1: busybox wget's own TLS client (the healthcheck) sends no
            # signature_algorithms extension, which leaves only SHA-1 signatures, disabled by
            # default since Go 1.25. Only this front accepts it; the edge Traefik talks TLS 1.3.
            GODEBUG=tlssha1=1 traefik --global.checknewversion=false --global.sendanonymoususage=false \
                --log.level=ERROR --entrypoints.tls.address=":${p#tls:}" \
                --providers.file.filename=/standin-tls.yml &
            pids="$pids $!"
            ;;
        esac
    done
    trap 'kill $pids 2>/dev/null; exit 0' TERM INT
    log "serving: ${served:-nothing (internal service)}"
    while :; do
        for pid in $pids; do
            kill -0 "$pid" 2>/dev/null || die "server process $pid exited"
        done
        sleep 1 &
        wait $!
    done
    ;;
*)
    echo "usage: standin run|health|serve ..." >&2
    exit 2
    ;;
esac

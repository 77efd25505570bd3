#!/bin/sh
# /launch.sh of the e2e "Spilo" image (tests/e2e only): a stand-in for Spilo's configuration
# step, then the real Patroni and PostgreSQL 17 from Debian. Written for this suite, with the
# contract of zalando/spilo's launch.sh that infra/02-postgres relies on:
#
#   /bin/sh /launch.sh init      started as root by the shipped secret-to-environment wrapper;
#   1. creates $PGROOT/{data,pg_log}, $RW_DIR/{postgresql,tmp,certs}; as root it gives PGROOT
#      to postgres (101:103) and makes PGDATA 0700 (the mount point keeps its host owner);
#   2. /scripts/configure_standin.py: reads SCOPE, ETCD3_HOSTS (or another <DCS>_HOSTS),
#      PGUSER_*/PGPASSWORD_*, SPILO_CONFIGURATION (deep-merged over a Spilo-like template, user
#      values win) and writes $RW_DIR/postgres.yml only if it does not exist yet (Spilo writes
#      it when the container is created, not on a restart), plus a self-signed certificate
#      (SSL on, non-SSL connections from the network rejected, as in Spilo);
#   3. runs Patroni as postgres with an empty environment but HOME, PATH and LC_ALL (Spilo's
#      runit script unsets everything else: PATRONI_* variables have no effect there either).
#
# Spilo re-executes itself under dumb-init and supervises Patroni with runit; here Patroni is
# PID 1, a mode in which Patroni forwards signals to its worker and reaps children itself.
set -eu

[ "${1:-}" = init ] && shift

: "${PGHOME:=/home/postgres}" "${PGROOT:=$PGHOME/pgdata/pgroot}" "${PGDATA:=$PGROOT/data}"
: "${PGLOG:=$PGROOT/pg_log}" "${RW_DIR:=/run}"
export PGHOME PGROOT PGDATA PGLOG RW_DIR

mkdir -p "$PGLOG" "$PGDATA" "$RW_DIR/postgresql" "$RW_DIR/tmp" "$RW_DIR/certs"
if [ "$(id -u)" = 0 ]; then
    chown -R postgres: "$PGROOT" "$RW_DIR/certs" "$RW_DIR/postgresql"
    chmod -R go-w "$PGROOT"
    chmod 01777 "$RW_DIR/tmp"
fi
chmod 0700 "$PGDATA"

python3 /scripts/configure_standin.py

cd "$PGHOME"
if [ "$(id -u)" = 0 ]; then
    set -- setpriv --reuid=postgres --regid=postgres --init-groups --
else
    set --
fi
exec "$@" env -i HOME="$PGHOME" PATH="$PATH" LC_ALL=C.UTF-8 patroni "$RW_DIR/postgres.yml"

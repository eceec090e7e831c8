#!/bin/sh
# Entrypoint of the cluster image, also used by scripts/cluster.mjs for the native backend.
#   entrypoint.sh etcd      etcd configured by ETCD_* variables (cluster/etcd.env)
#   entrypoint.sh patroni   Patroni as the postgres user (PostgreSQL refuses root), node identity
#                           from PATRONI_* variables (cluster/pgN.env)
#   entrypoint.sh haproxy   HAProxy in the foreground
#   entrypoint.sh pgbouncer PgBouncer in the foreground as the postgres user (it refuses root),
#                           from the configuration directory (pgbouncer.ini names its auth file
#                           relative to it)
# Each role execs its program, so the process id stays the program's own (the native backend
# records it to kill the node later).
set -eu

role="${1:-}"
conf_dir="${PG_RESILIENT_CONF_DIR:-/etc/pg-resilient}"

case "$role" in
  etcd)
    : "${ETCD_DATA_DIR:?ETCD_DATA_DIR must be set}"
    mkdir -p "$ETCD_DATA_DIR"
    chmod 700 "$ETCD_DATA_DIR"
    exec etcd
    ;;
  patroni)
    : "${PATRONI_POSTGRESQL_DATA_DIR:?PATRONI_POSTGRESQL_DATA_DIR must be set}"
    parent="$(dirname "$PATRONI_POSTGRESQL_DATA_DIR")"
    mkdir -p "$parent"
    chown postgres:postgres "$parent"
    chmod 700 "$parent"
    export HOME="${PG_RESILIENT_POSTGRES_HOME:-/var/lib/postgresql}"
    # setpriv execs (no fork, unlike runuser/su), so this process becomes patroni itself.
    exec setpriv --reuid=postgres --regid=postgres --init-groups patroni "$conf_dir/patroni.yml"
    ;;
  haproxy)
    exec haproxy -db -f "$conf_dir/haproxy.cfg"
    ;;
  pgbouncer)
    cd "$conf_dir"
    exec setpriv --reuid=postgres --regid=postgres --init-groups pgbouncer "$conf_dir/pgbouncer.ini"
    ;;
  "")
    echo "usage: $0 etcd|patroni|haproxy|pgbouncer|COMMAND..." >&2
    exit 2
    ;;
  *)
    exec "$@"
    ;;
esac

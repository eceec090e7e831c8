#!/usr/bin/env bash
# Installs the system packages the test cluster needs (scripts/cluster.mjs, docker-compose.yml).
# Idempotent; run as root. Quick when everything is already installed (no apt-get at all then).
set -euo pipefail

PACKAGES=(postgresql-15 patroni etcd-server etcd-client python3-etcd python3-psycopg2 haproxy
          pgbouncer iptables docker.io docker-compose debootstrap)

log() { echo "[setup-system] $*" >&2; }

if [ "$(id -u)" -ne 0 ]; then
  log "must run as root"
  exit 1
fi

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if [ "${#missing[@]}" -eq 0 ]; then
  log "all packages present"
else
  log "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Keep the packages' own services from starting (Debian's etcd would take port 2379, its
  # PgBouncer port 6432, the postgresql package would start a cluster): the driver starts what it
  # needs itself.
  policy=/usr/sbin/policy-rc.d
  added_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy"
    chmod 755 "$policy"
    added_policy=1
  fi
  cleanup() { if [ "$added_policy" = 1 ]; then rm -f "$policy"; fi; }
  trap cleanup EXIT
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
  log "installed in ${SECONDS} s"
fi

# The blackhole scenario needs iptables on loopback. Check once that a rule can be added.
if command -v iptables >/dev/null; then
  variant="$(iptables -V 2>/dev/null || true)"
  chain=PG_RESILIENT_PROBE
  if iptables -N "$chain" 2>/dev/null && iptables -A "$chain" -p tcp --dport 9 -j DROP 2>/dev/null; then
    :
  else
    log "NOTE: adding an iptables rule failed ($variant)."
    if [[ "$variant" == *nf_tables* ]] && [ -x /usr/sbin/iptables-legacy ]; then
      log "NOTE: this is the nf_tables variant; the kernel may lack nftables support. Try:"
      log "      update-alternatives --set iptables /usr/sbin/iptables-legacy"
    fi
  fi
  iptables -F "$chain" 2>/dev/null || true
  iptables -X "$chain" 2>/dev/null || true
fi

#!/usr/bin/env bash
# The demo from a fresh machine: system packages, npm dependencies, build, then the scenario
# (examples/catalog/scenario.ts): a primary kill and a switchover on a real Patroni cluster,
# raw pg.Pool against pg-resilient under the same load. Idempotent; takes a few minutes.
#   bash scripts/demo.sh                  the catalogs connect to HAProxy (127.0.0.1:5000)
#   bash scripts/demo.sh --via pgbouncer  through PgBouncer (127.0.0.1:6432, transaction pooling),
#                                         as behind the Zalando operator's connection pooler
set -euo pipefail

cd "$(dirname "$0")/.."
log() { echo "[demo.sh] $*" >&2; }

if [ -f scripts/setup-system.sh ]; then
  if [ "$(id -u)" -eq 0 ]; then
    bash scripts/setup-system.sh
  else
    log "not root: skipping scripts/setup-system.sh (run it with sudo if the cluster cannot start)"
  fi
fi

# For the chart's PNG copy; the demo still works (SVG only) without it.
if ! command -v rsvg-convert >/dev/null 2>&1 && [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  log "installing librsvg2-bin (rsvg-convert, for the PNG chart)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends librsvg2-bin >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends librsvg2-bin >/dev/null 2>&1; } \
    || log "could not install librsvg2-bin: the chart will be SVG only"
fi

# npm ci reinstalls from scratch every time: remember which lockfile was installed and skip it
# when nothing changed.
if [ -f package-lock.json ]; then
  want="$(sha256sum package-lock.json | cut -d' ' -f1)"
  have="$(cat node_modules/.demo-installed-lock 2>/dev/null || true)"
  if [ "$want" != "$have" ]; then
    log "npm ci"
    npm ci --no-audit --no-fund
    echo "$want" > node_modules/.demo-installed-lock
  else
    log "node_modules matches package-lock.json"
  fi
else
  log "npm install (no lockfile)"
  npm install --no-audit --no-fund
fi

log "npm run build"
npm run build

exec node dist/examples/catalog/scenario.js "$@"

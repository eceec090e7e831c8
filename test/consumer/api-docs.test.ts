// The API reference (TypeDoc, configured in typedoc.json) builds from the TSDoc comments of the
// public entry points with every warning an error: every exported name documented, every
// referenced type exported, every {@link} resolved. Offline (no source links, no git remote).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = [path.resolve(here, '../..'), path.resolve(here, '../../..')]
  .find((r) => fs.existsSync(path.join(r, 'src', 'index.ts')))!;

test('TypeDoc builds the API reference with no warning (notExported, invalidLink, notDocumented)', async () => {
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'pgr-api-docs-'));
  const t0 = performance.now();
  try {
    const r = await promisify(execFile)(process.execPath, [path.join(root, 'node_modules', 'typedoc', 'bin', 'typedoc'), '--out', out], {
      cwd: root, timeout: 240_000,
    }).catch((err: { stdout?: string; stderr?: string; message: string }) => assert.fail(`typedoc failed: ${err.message}\n${err.stdout ?? ''}${err.stderr ?? ''}`));
    assert.doesNotMatch(r.stdout + r.stderr, /warning|error/i, r.stdout + r.stderr);
    assert.ok(fs.existsSync(path.join(out, 'index.html')), 'index.html written');
    console.log(`typedoc: ${Math.round(performance.now() - t0)} ms, ${fs.readdirSync(out, { recursive: true }).length} files`);
  } finally {
    fs.rmSync(out, { recursive: true, force: true });
  }
});

// Run by Node ≥ 23 (CI's Node 24): every TypeScript file of src/, test/, examples/ and scripts/
// goes through Node's own type stripping (`module.stripTypeScriptTypes`, strip-only mode), which
// refuses what it cannot erase (enums, namespaces, parameter properties, …). The Node 24 test pass
// then runs the tiers whose behaviour matters on the new line (unit, integration, ORM); the fault
// and differential tiers run once, on Node 20, and this check covers their syntax.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { stripTypeScriptTypes } from 'node:module';
import path from 'node:path';
import process from 'node:process';

process.removeAllListeners('warning'); // stripTypeScriptTypes is marked experimental

function walk(dir) {
  return readdirSync(dir).flatMap((name) => {
    if (name === 'node_modules' || name === 'dist' || name.startsWith('.')) return [];
    const full = path.join(dir, name);
    if (statSync(full).isDirectory()) return walk(full);
    return /\.(ts|mts|cts)$/.test(name) && !name.endsWith('.d.ts') ? [full] : [];
  });
}

// The consumer fixtures are other people's projects, compiled by their own tsc (the NestJS one
// uses parameter properties, as Nest services do): not ours to strip.
const files = ['src', 'test', 'examples', 'scripts'].flatMap((d) => walk(d)).filter((f) => !f.startsWith(path.join('test', 'consumer', 'fixtures')));
const failed = [];
for (const file of files) {
  try {
    stripTypeScriptTypes(readFileSync(file, 'utf8'), { mode: 'strip' });
  } catch (err) {
    failed.push(`${file}: ${err.message.split('\n')[0]}`);
  }
}
console.log(`type stripping: ${files.length - failed.length} of ${files.length} TypeScript files strip cleanly`);
if (failed.length > 0) {
  console.error(failed.join('\n'));
  process.exit(1);
}

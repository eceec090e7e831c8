// The layout is a map of the design: no module of src/ reaches itself through its imports
// (type-only imports included, so the layers stay readable in both directions).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
// From test/unit/ (sources) or dist/test/unit/ (compiled): find the repository's src/.
const root = [path.resolve(here, '../..'), path.resolve(here, '../../..')].find((r) => {
  try {
    return statSync(path.join(r, 'src', 'index.ts')).isFile();
  } catch {
    return false;
  }
})!;
const SRC = path.join(root, 'src');

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const full = path.join(dir, name);
    if (statSync(full).isDirectory()) return sources(full);
    return name.endsWith('.ts') && !name.endsWith('.d.ts') ? [full] : [];
  });
}

function imports(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  const found: string[] = [];
  for (const m of text.matchAll(/^\s*(?:import|export)\b[^'"]*?from\s+['"](\.[^'"]+)['"]/gm)) {
    found.push(path.resolve(path.dirname(file), m[1]!));
  }
  return found;
}

test('no import cycle in src/', () => {
  const files = sources(SRC);
  const graph = new Map(files.map((f) => [f, imports(f).filter((t) => files.includes(t))]));
  const cycles: string[] = [];
  const state = new Map<string, 'open' | 'done'>();
  const stack: string[] = [];
  const visit = (f: string): void => {
    state.set(f, 'open');
    stack.push(f);
    for (const t of graph.get(f) ?? []) {
      if (state.get(t) === 'open') cycles.push([...stack.slice(stack.indexOf(t)), t].map((x) => path.relative(SRC, x)).join(' → '));
      else if (state.get(t) === undefined) visit(t);
    }
    stack.pop();
    state.set(f, 'done');
  };
  for (const f of files) if (state.get(f) === undefined) visit(f);
  assert.deepEqual(cycles, [], `import cycles:\n${cycles.join('\n')}`);
  assert.ok(files.length > 20, `read ${files.length} files under ${SRC}`);
});

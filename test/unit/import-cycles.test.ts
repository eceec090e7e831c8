// The layout is a map of the design: no module of src/ reaches itself through its imports
// (type-only imports included, so the layers stay readable in both directions).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { SRC, sourceFiles } from '../helpers/src-tree.ts';

function imports(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  const found: string[] = [];
  for (const m of text.matchAll(/^\s*(?:import|export)\b[^'"]*?from\s+['"](\.[^'"]+)['"]/gm)) {
    found.push(path.resolve(path.dirname(file), m[1]!));
  }
  return found;
}

test('no import cycle in src/', () => {
  const files = sourceFiles();
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

// The layout is a map of the design: files found by name and small enough to read at once. No
// file of src/ is over 400 lines (the structure step, issue 27, brought the last ones under).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { ROOT, SRC, sourceFiles } from '../helpers/src-tree.ts';

const MAX_LINES = 400;

/** Lines as `wc -l` counts them (a final newline ends the last line). */
export function lineCount(text: string): number {
  if (text === '') return 0;
  const n = text.split('\n').length;
  return text.endsWith('\n') ? n - 1 : n;
}

test('lineCount counts as wc -l does', () => {
  assert.equal(lineCount(''), 0);
  assert.equal(lineCount('a\n'), 1);
  assert.equal(lineCount('a\nb'), 2);
  assert.equal(lineCount('a\nb\n'), 2);
});

test(`no file of src/ is over ${MAX_LINES} lines`, () => {
  const files = sourceFiles();
  const long = files
    .map((f) => ({ file: path.relative(ROOT, f), lines: lineCount(readFileSync(f, 'utf8')) }))
    .filter((f) => f.lines > MAX_LINES)
    .map((f) => `${f.file}: ${f.lines} lines`);
  assert.deepEqual(long, [], `over ${MAX_LINES} lines:\n${long.join('\n')}`);
  assert.ok(files.length > 20, `read ${files.length} files under ${SRC}`);
});

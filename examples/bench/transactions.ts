// What transaction replay and COMMIT resolution cost on a healthy server (issue #15):
// `node examples/bench/transactions.ts` (Node ≥ 23.6, or the built copy under dist/).
//
// One throwaway local PostgreSQL 15. A 3-statement transaction — BEGIN; INSERT an order with a
// client-generated key; UPDATE a stock counter; SELECT it back; COMMIT — run by `concurrency`
// callers in a closed loop through `pool.connect()`, plainly (client.query) and through Kysely's
// `db.transaction().execute`, on:
//   raw pg.Pool · pg-resilient, replay on (the default) · pg-resilient, `transactionReplay: false`.
// Both pg-resilient rows send COMMIT with the transaction's id read in the same round trip; the
// replay-off row leaves out only the recording. Rounds are interleaved (who goes first rotates);
// each row is the median over rounds of transactions/s and of the ratio to raw pg.Pool measured
// in the same round, plus CPU per transaction: the client's (this process) and the server's (all
// of its processes, from /proc). On a shared or loaded machine throughput swings with the
// neighbours; CPU per transaction does not, and on a CPU-bound host it is what throughput follows.
//
// Flags: --duration <ms per run> (2000), --rounds <n> (5), --concurrency 1,8 (1,8).
import * as fs from 'node:fs';
import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import { Pool } from '../../src/index.ts';
import { startPgServer } from '../../test/helpers/pg-server.ts';
import { table } from '../common.ts';
import { flagList, flagNumber, median, progress } from './util.ts';

type Entrant = 'pg.Pool' | 'resilient, replay on' | 'resilient, replay off';
type Style = 'client.query' | 'Kysely';
const ENTRANTS: readonly Entrant[] = ['pg.Pool', 'resilient, replay on', 'resilient, replay off'];
const STYLES: readonly Style[] = ['client.query', 'Kysely'];
const SKUS = 64;
const WARMUP_MS = 300;

interface Sample {
  round: number;
  entrant: Entrant;
  style: Style;
  concurrency: number;
  tps: number;
  cpuUsPerTx: number;
  serverCpuUsPerTx: number;
  errors: number;
}

const TICK_US = 1e6 / 100; // /proc reports CPU in clock ticks (USER_HZ, 100 on Linux)

/** CPU used so far (clock ticks) by each process of the server: the postmaster and its children. */
function serverTicks(postmaster: number | undefined): Map<number, number> {
  const ticks = new Map<number, number>();
  if (postmaster === undefined) return ticks;
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let stat: string;
    try {
      stat = fs.readFileSync(`/proc/${entry}/stat`, 'utf8');
    } catch {
      continue; // gone meanwhile
    }
    // Fields after the command (which may hold spaces): state ppid … utime(14) stime(15).
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (Number(entry) === postmaster || Number(f[1]) === postmaster) ticks.set(Number(entry), Number(f[11]) + Number(f[12]));
  }
  return ticks;
}

/** µs of server CPU between two readings (processes that ended meanwhile are left out: the previous run's). */
function serverCpuUs(before: Map<number, number>, after: Map<number, number>): number {
  let ticks = 0;
  for (const [pid, t] of after) ticks += t - (before.get(pid) ?? 0);
  return ticks * TICK_US;
}

let nextId = 1;

/** One transaction, as an application would write it with pg, and with Kysely. */
function transaction(style: Style, pool: pg.Pool | Pool, db: Kysely<any>): (sku: string) => Promise<void> {
  if (style === 'Kysely') {
    return (sku) => db.transaction().execute(async (trx) => {
      await trx.insertInto('orders').values({ id: nextId++, sku }).execute();
      await trx.updateTable('stock').set((eb) => ({ n: eb('n', '-', 1) })).where('sku', '=', sku).execute();
      await trx.selectFrom('stock').select('n').where('sku', '=', sku).executeTakeFirstOrThrow();
    });
  }
  return async (sku) => {
    const client = await pool.connect();
    try {
      await client.query('BEGIN');
      await client.query('INSERT INTO orders (id, sku) VALUES ($1, $2)', [nextId++, sku]);
      await client.query('UPDATE stock SET n = n - 1 WHERE sku = $1', [sku]);
      await client.query('SELECT n FROM stock WHERE sku = $1', [sku]);
      await client.query('COMMIT');
      client.release();
    } catch (err) {
      client.release(true);
      throw err;
    }
  };
}

async function run(conn: pg.ClientConfig, postmaster: number | undefined, entrant: Entrant, style: Style, concurrency: number, durationMs: number): Promise<Omit<Sample, 'round'>> {
  const max = Math.max(concurrency, 1);
  const pool = entrant === 'pg.Pool'
    ? new pg.Pool({ ...conn, max })
    : new Pool({ ...conn, max, transactionReplay: entrant === 'resilient, replay on' });
  (pool as pg.Pool).on('error', () => undefined);
  const db = new Kysely<any>({ dialect: new PostgresDialect({ pool }) });
  const tx = transaction(style, pool, db);
  let done = 0;
  let errors = 0;
  let counting = false;
  let stopAt = Date.now() + WARMUP_MS;
  const worker = async (w: number): Promise<void> => {
    const sku = `sku-${w % SKUS}`; // one row per caller: no lock waits between callers
    while (Date.now() < stopAt) {
      try {
        await tx(sku);
        if (counting) done += 1;
      } catch {
        errors += 1;
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, (_, w) => worker(w)));
  counting = true;
  stopAt = Date.now() + durationMs;
  const cpu0 = process.cpuUsage();
  const server0 = serverTicks(postmaster);
  const t0 = performance.now();
  await Promise.all(Array.from({ length: concurrency }, (_, w) => worker(w)));
  const elapsedMs = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  const serverUs = serverCpuUs(server0, serverTicks(postmaster));
  await db.destroy(); // ends the pool
  return {
    entrant, style, concurrency, tps: (done / elapsedMs) * 1000, errors,
    cpuUsPerTx: done > 0 ? (cpu.user + cpu.system) / done : NaN,
    serverCpuUsPerTx: done > 0 ? serverUs / done : NaN,
  };
}

async function main(): Promise<void> {
  const durationMs = flagNumber('duration', 2000);
  const rounds = flagNumber('rounds', 5);
  const concurrency = flagList('concurrency', ['1', '8', '16', '32'], ['1', '8']).map(Number);
  const server = await startPgServer();
  try {
    await server.admin(`CREATE TABLE orders (id bigint PRIMARY KEY, sku text NOT NULL);
      CREATE TABLE stock (sku text PRIMARY KEY, n int NOT NULL);
      INSERT INTO stock SELECT 'sku-' || i, 1000000000 FROM generate_series(0, ${SKUS - 1}) i`);
    const samples: Sample[] = [];
    for (let round = 0; round < rounds; round += 1) {
      for (const c of concurrency) {
        for (const style of STYLES) {
          // Who goes first rotates with the round.
          const order = ENTRANTS.map((_, i) => ENTRANTS[(i + round) % ENTRANTS.length]!);
          for (const entrant of order) {
            progress(`round ${round + 1}/${rounds} c=${c} ${style} ${entrant}`);
            samples.push({ round, ...(await run(server.config, server.pid, entrant, style, c, durationMs)) });
          }
        }
      }
      await server.admin('TRUNCATE orders');
    }
    const rows: string[][] = [['concurrency', 'style', 'entrant', 'tx/s', 'tx/s vs pg.Pool (range)', 'CPU µs/tx client + server', 'CPU vs pg.Pool', 'errors']];
    for (const c of concurrency) {
      for (const style of STYLES) {
        for (const entrant of ENTRANTS) {
          const mine = samples.filter((s) => s.concurrency === c && s.style === style && s.entrant === entrant);
          const base = (s: Sample): Sample => samples.find((b) => b.round === s.round && b.concurrency === c && b.style === style && b.entrant === 'pg.Pool')!;
          const ratios = mine.map((s) => s.tps / base(s).tps);
          const total = (s: Sample): number => s.cpuUsPerTx + s.serverCpuUsPerTx;
          const cpuRatios = mine.map((s) => total(s) / total(base(s)));
          rows.push([
            String(c), style, entrant,
            median(mine.map((s) => s.tps)).toFixed(0),
            `${median(ratios).toFixed(3)}× (${Math.min(...ratios).toFixed(2)}–${Math.max(...ratios).toFixed(2)})`,
            `${median(mine.map((s) => s.cpuUsPerTx)).toFixed(0)} + ${median(mine.map((s) => s.serverCpuUsPerTx)).toFixed(0)}`,
            `${median(cpuRatios).toFixed(3)}×`,
            String(mine.reduce((n, s) => n + s.errors, 0)),
          ]);
        }
      }
    }
    process.stdout.write(`\n3-statement transaction (BEGIN, INSERT, UPDATE, SELECT, COMMIT), ${rounds} rounds × ${durationMs} ms, medians:\n${table(rows)}\n`);
  } finally {
    await server.destroy();
  }
}

await main();

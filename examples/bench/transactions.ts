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
// in the same round, plus client CPU per transaction.
//
// Flags: --duration <ms per run> (2000), --rounds <n> (5), --concurrency 1,8 (1,8).
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
  errors: number;
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

async function run(conn: pg.ClientConfig, entrant: Entrant, style: Style, concurrency: number, durationMs: number): Promise<Omit<Sample, 'round'>> {
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
  const t0 = performance.now();
  await Promise.all(Array.from({ length: concurrency }, (_, w) => worker(w)));
  const elapsedMs = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  await db.destroy(); // ends the pool
  return { entrant, style, concurrency, tps: (done / elapsedMs) * 1000, cpuUsPerTx: done > 0 ? (cpu.user + cpu.system) / done : NaN, errors };
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
            samples.push({ round, ...(await run(server.config, entrant, style, c, durationMs)) });
          }
        }
      }
      await server.admin('TRUNCATE orders');
    }
    const rows: string[][] = [['concurrency', 'style', 'entrant', 'tx/s', 'vs pg.Pool', 'client CPU µs/tx', 'errors']];
    for (const c of concurrency) {
      for (const style of STYLES) {
        for (const entrant of ENTRANTS) {
          const mine = samples.filter((s) => s.concurrency === c && s.style === style && s.entrant === entrant);
          const ratios = mine.map((s) => s.tps / samples.find((b) => b.round === s.round && b.concurrency === c && b.style === style && b.entrant === 'pg.Pool')!.tps);
          rows.push([
            String(c), style, entrant,
            median(mine.map((s) => s.tps)).toFixed(0),
            `${median(ratios).toFixed(3)}× (${Math.min(...ratios).toFixed(2)}–${Math.max(...ratios).toFixed(2)})`,
            median(mine.map((s) => s.cpuUsPerTx)).toFixed(0),
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

import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { Pool } from '../../src/index.ts';
import { killPrimary, rwConnectionConfig, startNode, switchover, waitHealthy } from '../helpers/cluster.ts';
import { sleep } from './workload.ts';

const WORKERS = 16;
const PER_WORKER = 125; // 2,000 transactions
// Paced to spread them over the kill and the switchover, but unpaced ("hot") around each
// fault, so COMMITs are in flight when the primary dies: that is when an acknowledgement can be
// lost after the commit, the case a naive retry turns into a duplicate.
const PACE_MS = 800;
let hot = false;
const pace = (): Promise<void> => (hot ? Promise.resolve() : sleep(PACE_MS));

/**
 * Issue 5: 2,000 transactions from 16 workers, each inserting a uniquely keyed row (no unique
 * index: duplicates must be possible for the test to be able to fail) and adding 1 to a
 * counter, while the primary is killed and later switched over. Control: the same work with a
 * naive retry-everything loop over a raw pg.Pool.
 */
describe('Patroni cluster: transactions exactly once across failover', () => {
  before(async () => {
    await waitHealthy(120_000);
    const c = new pg.Client(rwConnectionConfig());
    await c.connect();
    await c.query('DROP TABLE IF EXISTS pgr_tx_ledger; DROP TABLE IF EXISTS pgr_tx_counter');
    await c.query('CREATE TABLE pgr_tx_ledger (key text NOT NULL, variant text NOT NULL, at timestamptz DEFAULT now())');
    await c.query('CREATE TABLE pgr_tx_counter (variant text PRIMARY KEY, n bigint NOT NULL)');
    await c.query("INSERT INTO pgr_tx_counter VALUES ('resilient', 0), ('naive', 0)");
    await c.end();
  });

  test('2,000 transactions, kill + switchover: each success applied exactly once', async () => {
    const pool = new Pool({ ...rwConnectionConfig(), max: WORKERS, retry: { maxElapsedMs: 40_000 } });
    const resolved: Record<string, number> = {};
    pool.on('commitResolved', (e) => { resolved[e.outcome] = (resolved[e.outcome] ?? 0) + 1; });
    const raw = new pg.Pool({ ...rwConnectionConfig(), max: WORKERS });
    // pg.Pool leaves errors of checked-out clients without a listener (node-postgres #2439):
    // the control needs both guards or a kill crashes the test process.
    raw.on('error', () => undefined);
    raw.on('connect', (client) => client.on('error', () => undefined));
    const ours = { ok: [] as string[], failed: [] as string[], errors: {} as Record<string, number> };
    const naive = { ok: [] as string[], failed: [] as string[], retries: 0 };
    const body = async (client: pg.ClientBase, key: string, variant: string): Promise<void> => {
      await client.query('INSERT INTO pgr_tx_ledger (key, variant) VALUES ($1, $2)', [key, variant]);
      await client.query('UPDATE pgr_tx_counter SET n = n + 1 WHERE variant = $1', [variant]);
    };
    const oursWorker = async (w: number): Promise<void> => {
      for (let i = 0; i < PER_WORKER; i += 1) {
        const key = `r-${w}-${i}`;
        try {
          await pool.transaction((client) => body(client, key, 'resilient'));
          ours.ok.push(key);
        } catch (err) {
          ours.failed.push(key);
          const code = (err as { code?: string }).code ?? (err as Error).message;
          ours.errors[code] = (ours.errors[code] ?? 0) + 1;
        }
        await pace();
      }
    };
    // What many applications do: on any error, run the whole transaction again.
    const naiveWorker = async (w: number): Promise<void> => {
      for (let i = 0; i < PER_WORKER; i += 1) {
        const key = `n-${w}-${i}`;
        const until = Date.now() + 40_000;
        for (;;) {
          let client: pg.PoolClient | undefined;
          try {
            client = await raw.connect();
            await client.query('BEGIN');
            await body(client, key, 'naive');
            await client.query('COMMIT');
            client.release();
            naive.ok.push(key);
            break;
          } catch {
            client?.release(true);
            naive.retries += 1;
            if (Date.now() > until) {
              naive.failed.push(key);
              break;
            }
            await sleep(100);
          }
        }
        await pace();
      }
    };
    const faults = (async () => {
      await sleep(4500);
      hot = true;
      await sleep(500);
      const k = await killPrimary();
      hot = false;
      console.log(`[tx] killed ${k.killed}`);
      await sleep(15_000);
      await startNode(k.killed);
      await waitHealthy(120_000);
      console.log('[tx] killed node rejoined');
      await sleep(3000);
      // Patroni demotes the old primary within a couple of seconds of the request.
      hot = true;
      const cool = setTimeout(() => { hot = false; }, 3000);
      const s = await switchover();
      clearTimeout(cool);
      hot = false;
      console.log(`[tx] switchover ${s.from} → ${s.to}`);
    })();
    const started = Date.now();
    await Promise.all([
      ...Array.from({ length: WORKERS }, (_, w) => oursWorker(w)),
      ...Array.from({ length: WORKERS }, (_, w) => naiveWorker(w)),
      faults,
    ]);
    const tookS = ((Date.now() - started) / 1000).toFixed(0);
    await pool.end();
    await raw.end().catch(() => undefined);
    await waitHealthy(120_000);

    const c = new pg.Client(rwConnectionConfig());
    await c.connect();
    const counts = new Map<string, number>();
    for (const row of (await c.query<{ key: string; n: string }>('SELECT key, count(*) AS n FROM pgr_tx_ledger GROUP BY key')).rows) counts.set(row.key, Number(row.n));
    const counters = new Map((await c.query<{ variant: string; n: string }>('SELECT variant, n FROM pgr_tx_counter')).rows.map((r) => [r.variant, Number(r.n)]));
    await c.end();

    const audit = (prefix: string, ok: string[]) => {
      const dupes = [...counts].filter(([k, n]) => k.startsWith(prefix) && n > 1).length;
      const missing = ok.filter((k) => counts.get(k) !== 1).length;
      const rows = [...counts].filter(([k]) => k.startsWith(prefix)).reduce((s, [, n]) => s + n, 0);
      return { dupes, missing, rows };
    };
    const a = audit('r-', ours.ok);
    const b = audit('n-', naive.ok);
    console.log(`[tx] pg-resilient: ${ours.ok.length} succeeded, ${ours.failed.length} failed ${JSON.stringify(ours.errors)}; rows=${a.rows} duplicate keys=${a.dupes} successes not exactly once=${a.missing}; counter=${counters.get('resilient')}; COMMITs resolved by txid_status: ${JSON.stringify(resolved)} (in ${tookS} s)`);
    console.log(`[tx] naive retry over raw pg: ${naive.ok.length} succeeded after ${naive.retries} retries, ${naive.failed.length} failed; rows=${b.rows} duplicate keys=${b.dupes}; counter=${counters.get('naive')} vs ${naive.ok.length} successes`);
    assert.equal(ours.ok.length + ours.failed.length, WORKERS * PER_WORKER);
    assert.equal(a.dupes, 0, 'no key may appear twice');
    assert.equal(a.missing, 0, 'every success is in the table exactly once');
    assert.equal(counters.get('resilient'), ours.ok.length, 'the counter equals the number of successes');
    assert.equal(ours.failed.length, 0, `failures seen by the application: ${JSON.stringify(ours.errors)}`);
    assert.ok(naive.retries > 0, 'the control went through the same faults');
  });
});

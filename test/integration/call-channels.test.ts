import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { AsyncLocalStorage } from 'node:async_hooks';
import diagnostics from 'node:diagnostics_channel';
import { Pool } from '../../src/index.ts';
import type { CallEndEvent, CallStartEvent } from '../../src/index.ts';
import { startPgServer, type PgServer } from '../helpers/pg-server.ts';

// A tracer built on the diagnostics channels alone: `pg-resilient:callStart` opens a span in the
// caller's async context, the `pg-resilient:callEnd` with the same callId closes it. Every kind
// of call, on the fast path and the slow one, failing or not, must pair up exactly once.

interface Span {
  readonly kind: CallStartEvent['kind'];
  /** The caller's context when the call started (what a tracer parents the span on). */
  readonly caller: string | undefined;
  end?: CallEndEvent;
}

function tracer(context: AsyncLocalStorage<string>): { spans: Map<number, Span>; problems: string[]; close(): void } {
  const spans = new Map<number, Span>();
  const problems: string[] = [];
  const onStart = (message: unknown): void => {
    const e = message as CallStartEvent;
    if (spans.has(e.callId)) problems.push(`callStart ${e.callId} twice`);
    spans.set(e.callId, { kind: e.kind, caller: context.getStore() });
  };
  const onEnd = (message: unknown): void => {
    const e = message as CallEndEvent;
    const span = spans.get(e.callId);
    if (span === undefined) problems.push(`callEnd ${e.callId} without a callStart`);
    else if (span.end !== undefined) problems.push(`callEnd ${e.callId} twice`);
    else if (span.kind !== e.kind) problems.push(`callEnd ${e.callId} is a ${e.kind}, its start a ${span.kind}`);
    else span.end = e;
  };
  diagnostics.subscribe('pg-resilient:callStart', onStart);
  diagnostics.subscribe('pg-resilient:callEnd', onEnd);
  return {
    spans,
    problems,
    close: () => {
      diagnostics.unsubscribe('pg-resilient:callStart', onStart);
      diagnostics.unsubscribe('pg-resilient:callEnd', onEnd);
    },
  };
}

describe('a tracer on the diagnostics channels alone (real PostgreSQL)', () => {
  let server: PgServer;
  before(async () => {
    server = await startPgServer();
  });
  after(async () => {
    await server.destroy();
  });

  test('callStart and callEnd pair by callId for query (fast and slow path), connect and transaction', async () => {
    const context = new AsyncLocalStorage<string>();
    const t = tracer(context);
    const pool = new Pool({ connectionString: server.connectionString, max: 2 });
    try {
      const calls: Array<[string, () => Promise<unknown>]> = [
        // The fast path: an idle connection, or a place in line (three at once on max 2).
        ['fast', () => pool.query('SELECT 1 AS n')],
        ['fast-in-line', () => Promise.all([pool.query('SELECT pg_sleep(0.05)'), pool.query('SELECT 2'), pool.query('SELECT 3')])],
        // A fast-path call whose statement fails continues in the retry loop: still one call.
        ['fast-failing', () => pool.query('SELECT 1/0').catch((e: unknown) => e)],
        // The slow path: a query config with per-call options.
        ['slow', () => pool.query({ text: 'SELECT $1::int AS n', values: [7], idempotent: true })],
        ['slow-failing', () => pool.query({ text: 'SELECT * FROM no_such_table_x', readOnly: false }).catch((e: unknown) => e)],
        ['connect', async () => {
          const client = await pool.connect();
          await client.query('SELECT 1');
          client.release();
        }],
        ['transaction', () => pool.transaction(async (tx) => (await tx.query('SELECT 1')).rows)],
        ['transaction-failing', () => pool.transaction(async (tx) => tx.query('SELECT 1/0')).catch((e: unknown) => e)],
      ];
      for (const [name, call] of calls) await context.run(name, call);

      assert.deepEqual(t.problems, []);
      const spans = [...t.spans.values()];
      const open = [...t.spans].filter(([, s]) => s.end === undefined).map(([id, s]) => `${id} ${s.kind} (${s.caller})`);
      assert.deepEqual(open, [], 'every started call ended');
      const byCaller = (caller: string): Span[] => spans.filter((s) => s.caller === caller);
      const kinds = (caller: string): string[] => byCaller(caller).map((s) => `${s.kind}:${s.end?.outcome}`);
      // Each started in its caller's async context, so a tracer parents its span right.
      assert.deepEqual(kinds('fast'), ['query:ok']);
      assert.deepEqual(kinds('fast-in-line'), ['query:ok', 'query:ok', 'query:ok']);
      assert.deepEqual(kinds('fast-failing'), ['query:error']);
      assert.deepEqual(kinds('slow'), ['query:ok']);
      assert.deepEqual(kinds('slow-failing'), ['query:error']);
      assert.deepEqual(kinds('connect'), ['connect:ok']);
      assert.deepEqual(kinds('transaction'), ['transaction:ok']);
      assert.deepEqual(kinds('transaction-failing'), ['transaction:error']);
      assert.equal(spans.length, 10, 'no call outside these');
      // Increasing ids, in the order the calls started.
      const ids = [...t.spans.keys()];
      assert.deepEqual(ids, [...ids].sort((a, b) => a - b));
    } finally {
      t.close();
      await pool.end();
    }
  });

  test('the pool events carry the same pairs', async () => {
    const pool = new Pool({ connectionString: server.connectionString, max: 1 });
    const started: number[] = [];
    const ended: number[] = [];
    pool.on('callStart', (e) => started.push(e.callId));
    pool.on('callEnd', (e) => ended.push(e.callId));
    try {
      await pool.query('SELECT 1');
      const client = await pool.connect();
      client.release();
      await pool.transaction(async (tx) => tx.query('SELECT 1'));
      assert.equal(started.length, 3);
      assert.deepEqual(ended, started);
    } finally {
      await pool.end();
    }
  });
});

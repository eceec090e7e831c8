// OpenTelemetry's standard pg instrumentation keeps working through pg-resilient's Pool, and a
// retry shows in the trace: a failed statement span and a successful one under the caller's span.
//
// @opentelemetry/instrumentation-pg patches pg's Client.prototype.query when pg/lib/client.js is
// *required*. pg is CommonJS, and even when an ES module imports it, pg's index.js requires
// lib/client.js with the CommonJS require, which require-in-the-middle hooks: no ESM loader hook
// is needed. What matters is order: the instrumentation must be registered before pg is first
// loaded, so everything that loads pg (pg-resilient, the test server helper) is imported
// dynamically below, after registerInstrumentations().
import { test, after, before, describe } from 'node:test';
import assert from 'node:assert/strict';
import diagnostics from 'node:diagnostics_channel';
import { context, trace, SpanStatusCode, type Span } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { registerInstrumentations } from '@opentelemetry/instrumentation';
import { PgInstrumentation } from '@opentelemetry/instrumentation-pg';

const exporter = new InMemorySpanExporter();
const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
trace.setGlobalTracerProvider(provider);
registerInstrumentations({ tracerProvider: provider, instrumentations: [new PgInstrumentation()] });

const { Pool } = await import('../../src/index.ts');
const { startPgServer } = await import('../helpers/pg-server.ts');
type PgServer = Awaited<ReturnType<typeof startPgServer>>;
type RetryEvent = import('../../src/index.ts').RetryEvent;

const tracer = trace.getTracer('pg-resilient-test');
const APP = 'pgr-otel-test';

/** Runs `fn` in a new active span and returns the span's trace id. */
async function inSpan<T>(name: string, fn: (span: Span) => Promise<T>): Promise<{ traceId: string; result: T }> {
  return tracer.startActiveSpan(name, async (span) => {
    try {
      return { traceId: span.spanContext().traceId, result: await fn(span) };
    } finally {
      span.end();
    }
  });
}

function spansOf(traceId: string): ReadableSpan[] {
  return exporter.getFinishedSpans().filter((s) => s.spanContext().traceId === traceId);
}

const queryText = (s: ReadableSpan): unknown => s.attributes['db.query.text'] ?? s.attributes['db.statement'];
const parentId = (s: ReadableSpan): string | undefined => s.parentSpanContext?.spanId;

describe('OpenTelemetry instrumentation-pg through pg-resilient', () => {
  let server: PgServer;
  before(async () => {
    server = await startPgServer();
  });
  after(async () => {
    await server.destroy();
  });

  test('pool.query, connect()/release and transaction() produce pg spans under the caller span', async () => {
    const pool = new Pool({ connectionString: server.connectionString, application_name: APP, max: 2 });
    try {
      const { traceId, result } = await inSpan('app.work', async () => {
        const a = await pool.query('SELECT $1::int + 1 AS n', [41]);
        const client = await pool.connect();
        try {
          await client.query('SELECT 2 AS two');
        } finally {
          client.release();
        }
        await pool.transaction(async (c) => {
          await c.query('SELECT 3 AS three');
        });
        return a.rows[0].n as number;
      });
      assert.equal(result, 42);
      const spans = spansOf(traceId);
      const app = spans.find((s) => s.name === 'app.work');
      assert.ok(app !== undefined);
      const texts = spans.map(queryText);
      console.log(`# spans: ${spans.map((s) => `${s.name}${queryText(s) === undefined ? "" : ` [${String(queryText(s))}]`}`).join("; ")}`);
      for (const t of ['SELECT $1::int + 1 AS n', 'SELECT 2 AS two', 'SELECT 3 AS three']) {
        const span = spans.find((s) => queryText(s) === t);
        assert.ok(span !== undefined, `a span for ${t} (have: ${JSON.stringify(texts)})`);
        assert.equal(span.status.code, SpanStatusCode.UNSET);
        assert.equal(span.attributes['db.system.name'] ?? span.attributes['db.system'], 'postgresql');
        assert.equal(parentId(span), app.spanContext().spanId, 'a child of the caller span');
      }
      // The transaction's BEGIN/COMMIT are statements too.
      assert.ok(texts.some((t) => typeof t === 'string' && /^BEGIN/i.test(t)), 'BEGIN is traced');
      assert.ok(texts.some((t) => typeof t === 'string' && /^COMMIT/i.test(t)), 'COMMIT is traced');
      assert.ok(spans.some((s) => s.name.startsWith('pg.connect')), 'opening a connection is traced');
    } finally {
      await pool.end();
    }
  });

  test('a retried read: a failed span (57P01), then a successful one, and a span event per retry', async () => {
    const pool = new Pool({ connectionString: server.connectionString, application_name: APP, max: 2, retry: { maxElapsedMs: 10_000 } });
    // The recipe for retry span events: the retry channel is published in the caller's async
    // context, so the active span is the caller's.
    const onRetry = (message: unknown): void => {
      const e = message as RetryEvent;
      trace.getActiveSpan()?.addEvent('pg-resilient.retry', { attempt: e.attempt, category: e.category, code: e.code ?? '', 'delay_ms': e.delayMs });
    };
    diagnostics.subscribe('pg-resilient:retry', onRetry);
    try {
      await pool.query('SELECT 1'); // warm: the statement below runs on an existing connection
      const text = 'SELECT pg_sleep(0.6), 7 AS seven';
      const { traceId, result } = await inSpan('app.read', async () => {
        const running = pool.query(text);
        // End the session while the statement runs, as a restart or failover does.
        await new Promise((r) => setTimeout(r, 250));
        const terminated = await server.terminateBackends({ applicationName: APP });
        assert.equal(terminated, 1);
        return (await running).rows[0].seven as number;
      });
      assert.equal(result, 7, 'the caller got its answer');

      const spans = spansOf(traceId);
      const app = spans.find((s) => s.name === 'app.read')!;
      const attempts = spans.filter((s) => queryText(s) === text).sort((a, b) => a.startTime[0] - b.startTime[0] || a.startTime[1] - b.startTime[1]);
      assert.equal(attempts.length, 2, 'one span per attempt');
      const [failed, succeeded] = attempts as [ReadableSpan, ReadableSpan];
      assert.equal(failed.status.code, SpanStatusCode.ERROR);
      assert.match(failed.status.message ?? '', /terminating connection due to administrator command/);
      const exception = failed.events.find((e) => e.name === 'exception');
      assert.match(String(exception?.attributes?.['exception.message']), /57P01/, 'the failure and its SQLSTATE are recorded on the span');
      assert.equal(succeeded.status.code, SpanStatusCode.UNSET);
      for (const s of attempts) assert.equal(parentId(s), app.spanContext().spanId, 'both attempts are children of the caller span');
      // Between them, the pool opened a new connection (traced as well).
      assert.ok(spans.some((s) => s.name.startsWith('pg.connect') && s.startTime[0] * 1e9 + s.startTime[1] >= failed.endTime[0] * 1e9 + failed.endTime[1]));

      const retryEvents = app.events.filter((e) => e.name === 'pg-resilient.retry');
      assert.equal(retryEvents.length, 1);
      assert.equal(retryEvents[0]!.attributes?.['category'], 'server-shutdown');
      assert.equal(retryEvents[0]!.attributes?.['code'], '57P01');
      // Nothing secret reaches the exported spans.
      assert.ok(!JSON.stringify(spans.map((s) => ({ a: s.attributes, e: s.events }))).includes(server.password));
    } finally {
      diagnostics.unsubscribe('pg-resilient:retry', onRetry);
      await pool.end();
    }
  });
});

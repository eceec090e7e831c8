// The example `frontend`: an open-loop load generator in front of the catalog service. It sends
// requests at a fixed rate whatever the catalog's latency (a slow backend does not slow the
// arrivals, as with real users), and records every request so the caller can cut the run into
// per-second series and per-scenario summaries.
//
// Mix: 70% GET /products/:id, 20% GET /products?category=…, 10% POST /orders.
import http from 'node:http';

export type RequestKind = 'product' | 'list' | 'order';

/** HTTP status as a string ('200', '500', …), or 'conn' (no HTTP answer) or 'timeout'. */
export type Outcome = string;

export interface RequestRecord {
  kind: RequestKind;
  /** Epoch ms when the request was sent. */
  start: number;
  latencyMs: number;
  outcome: Outcome;
  /** Body `code` of an error response (SQLSTATE, PGR_…), or the socket error's code. */
  errorCode?: string;
}

export interface FrontendOptions {
  /** e.g. http://127.0.0.1:8081 */
  baseUrl: string;
  /** Requests per second. Defaults to 50. */
  ratePerSec?: number;
  /** A request without an answer after this long counts as 'timeout'. Defaults to 30000. */
  timeoutMs?: number;
  /** Makes idempotency keys unique across frontends and runs. */
  keyPrefix?: string;
  /** Random source, for a reproducible mix. Defaults to Math.random. */
  random?: () => number;
}

export interface Frontend {
  /** Every request finished so far (the array grows while running). */
  readonly records: readonly RequestRecord[];
  readonly startedAt: number;
  inFlight(): number;
  /** Stops sending, waits for requests in flight, returns all records. */
  stop(): Promise<RequestRecord[]>;
}

const CATEGORIES = ['books', 'games', 'garden', 'kitchen', 'toys'];
const PRODUCTS = 500;

/** An outcome that the user of the frontend would see as a failure. */
export function isError(outcome: Outcome): boolean {
  if (outcome === 'conn' || outcome === 'timeout') return true;
  const status = Number(outcome);
  return !Number.isFinite(status) || status >= 500;
}

export function startFrontend(o: FrontendOptions): Frontend {
  const rate = o.ratePerSec ?? 50;
  const timeoutMs = o.timeoutMs ?? 30_000;
  const random = o.random ?? Math.random;
  const prefix = o.keyPrefix ?? `fe-${process.pid}-${Date.now()}`;
  const base = new URL(o.baseUrl);
  // Keep-alive like a real frontend's HTTP client; LIFO reuse leaves surplus sockets idle.
  const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity, scheduling: 'lifo' });
  const records: RequestRecord[] = [];
  const pending = new Set<Promise<void>>();
  const startedAt = Date.now();
  const intervalMs = 1000 / rate;
  let sent = 0;
  let orderSeq = 0;
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;

  const one = (): void => {
    const r = random();
    let kind: RequestKind;
    let method = 'GET';
    let path: string;
    let body: string | undefined;
    if (r < 0.7) {
      kind = 'product';
      path = `/products/${1 + Math.floor(random() * PRODUCTS)}`;
    } else if (r < 0.9) {
      kind = 'list';
      path = `/products?category=${CATEGORIES[Math.floor(random() * CATEGORIES.length)] ?? 'books'}`;
    } else {
      kind = 'order';
      method = 'POST';
      path = '/orders';
      orderSeq += 1;
      body = JSON.stringify({
        productId: 1 + Math.floor(random() * PRODUCTS),
        quantity: 1 + Math.floor(random() * 3),
        idempotencyKey: `${prefix}-${orderSeq}`,
      });
    }
    const p = send(base, agent, method, path, body, timeoutMs).then((res) => {
      records.push({ kind, ...res });
    });
    pending.add(p);
    void p.finally(() => pending.delete(p));
  };

  // Absolute schedule: request i leaves at startedAt + i·interval, so timer drift or a busy
  // event loop delays requests but never drops them (the rate stays what was asked).
  const tick = (): void => {
    if (stopped) return;
    const due = Math.floor((Date.now() - startedAt) / intervalMs) + 1;
    while (sent < due) {
      sent += 1;
      one();
    }
    const next = startedAt + sent * intervalMs;
    timer = setTimeout(tick, Math.max(0, next - Date.now()));
  };
  tick();

  return {
    records,
    startedAt,
    inFlight: () => pending.size,
    async stop() {
      stopped = true;
      if (timer !== undefined) clearTimeout(timer);
      await Promise.all([...pending]);
      agent.destroy();
      return records;
    },
  };
}

interface Sent {
  start: number;
  latencyMs: number;
  outcome: Outcome;
  errorCode?: string;
}

function send(base: URL, agent: http.Agent, method: string, path: string, body: string | undefined, timeoutMs: number): Promise<Sent> {
  const start = Date.now();
  const t0 = performance.now();
  return new Promise<Sent>((resolve) => {
    let done = false;
    const finish = (outcome: Outcome, errorCode?: string): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      resolve({ start, latencyMs: performance.now() - t0, outcome, ...(errorCode !== undefined ? { errorCode } : {}) });
    };
    const headers: http.OutgoingHttpHeaders = {};
    if (body !== undefined) {
      headers['content-type'] = 'application/json';
      headers['content-length'] = Buffer.byteLength(body);
    }
    const req = http.request({ host: base.hostname, port: base.port, method, path, headers, agent }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const status = res.statusCode ?? 0;
        let code: string | undefined;
        if (status >= 400) {
          try {
            const parsed = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { code?: unknown };
            if (typeof parsed.code === 'string') code = parsed.code;
          } catch {
            // not JSON: the status says enough
          }
        }
        finish(String(status), code);
      });
      res.on('error', (err: NodeJS.ErrnoException) => finish('conn', err.code ?? 'ERR'));
    });
    const timer = setTimeout(() => {
      finish('timeout');
      req.destroy();
    }, timeoutMs);
    req.on('error', (err: NodeJS.ErrnoException) => finish('conn', err.code ?? 'ERR'));
    req.end(body);
  });
}

// ---- analysis -------------------------------------------------------------------------------

export interface SecondPoint {
  /** Seconds since the series' origin (start of the bucket). */
  t: number;
  requests: number;
  errors: number;
  byOutcome: Record<string, number>;
  p50: number;
  p95: number;
  p99: number;
  max: number;
}

export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return 0;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i] ?? 0;
}

/**
 * One point per second from `fromMs` to `toMs`, requests bucketed by the second they were
 * sent: a request that waited 10 s through a failover shows up where the user clicked.
 */
export function perSecond(records: readonly RequestRecord[], fromMs: number, toMs: number): SecondPoint[] {
  const n = Math.max(0, Math.ceil((toMs - fromMs) / 1000));
  const buckets: RequestRecord[][] = Array.from({ length: n }, () => []);
  for (const r of records) {
    const i = Math.floor((r.start - fromMs) / 1000);
    if (i >= 0 && i < n) buckets[i]!.push(r);
  }
  return buckets.map((b, t) => {
    const lat = b.map((r) => r.latencyMs).sort((x, y) => x - y);
    const byOutcome: Record<string, number> = {};
    for (const r of b) byOutcome[r.outcome] = (byOutcome[r.outcome] ?? 0) + 1;
    return {
      t,
      requests: b.length,
      errors: b.filter((r) => isError(r.outcome)).length,
      byOutcome,
      p50: percentile(lat, 50),
      p95: percentile(lat, 95),
      p99: percentile(lat, 99),
      max: lat.at(-1) ?? 0,
    };
  });
}

export interface Summary {
  requests: number;
  errors: number;
  errorRate: number;
  /** Error outcomes with their body codes, e.g. {"500 57P01": 3, "conn ECONNRESET": 1}. */
  errorsByOutcome: Record<string, number>;
  /** Every outcome's count, successes included. */
  byOutcome: Record<string, number>;
  p50: number;
  p95: number;
  p99: number;
  max: number;
  /** Largest number of errors among the requests sent within one second. */
  peakErrorsPerSec: number;
  /**
   * From the fault until the end of the last request that failed or took longer than
   * `slowMs`; 0 when no request was affected.
   */
  timeToRecoverMs: number;
  /** Requests that failed or took longer than `slowMs`. */
  affected: number;
}

export function summarize(records: readonly RequestRecord[], fromMs: number, toMs: number, faultAtMs: number, slowMs = 1000): Summary {
  const rs = records.filter((r) => r.start >= fromMs && r.start < toMs);
  const lat = rs.map((r) => r.latencyMs).sort((x, y) => x - y);
  const errorsByOutcome: Record<string, number> = {};
  const byOutcome: Record<string, number> = {};
  let errors = 0;
  let lastAffectedEnd = faultAtMs;
  let affected = 0;
  for (const r of rs) {
    byOutcome[r.outcome] = (byOutcome[r.outcome] ?? 0) + 1;
    const failed = isError(r.outcome);
    if (failed) {
      errors += 1;
      const key = r.errorCode !== undefined ? `${r.outcome} ${r.errorCode}` : r.outcome;
      errorsByOutcome[key] = (errorsByOutcome[key] ?? 0) + 1;
    }
    if (failed || r.latencyMs > slowMs) {
      const end = r.start + r.latencyMs;
      if (end >= faultAtMs) {
        affected += 1;
        lastAffectedEnd = Math.max(lastAffectedEnd, end);
      }
    }
  }
  const series = perSecond(rs, fromMs, toMs);
  return {
    requests: rs.length,
    errors,
    errorRate: rs.length === 0 ? 0 : errors / rs.length,
    errorsByOutcome,
    byOutcome,
    p50: percentile(lat, 50),
    p95: percentile(lat, 95),
    p99: percentile(lat, 99),
    max: lat.at(-1) ?? 0,
    peakErrorsPerSec: Math.max(0, ...series.map((s) => s.errors)),
    timeToRecoverMs: Math.round(lastAffectedEnd - faultAtMs),
    affected,
  };
}

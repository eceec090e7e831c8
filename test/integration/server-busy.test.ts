import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { startFleet, totals, type Fleet, type FleetTotals } from '../helpers/fleet.ts';
import { startPgServer, type PgServer } from '../helpers/pg-server.ts';

// Issue #18: a dozen pods (child processes), each with its own pool, compete for a real
// PostgreSQL whose max_connections is below the fleet's sum of `max`: at their load they need
// fewer connections than the server allows, but their bursts ask for more, and the server
// answers 53300 "sorry, too many clients already". pg-resilient retries it (with its own
// backoff, never counting it as an outage: the breaker stays closed) and no error reaches the
// application; the same fleet of raw pg.Pools is the control.

const MAX_CONNECTIONS = 20;
const RESERVED = 3; // superuser_reserved_connections: the pods' role gets 17
const PODS = 12;
const POOL_MAX = 4;
const RUN_MS = 8000;
const ROLE = 'fleet_app';
const ROLE_PASSWORD = 'fleet-app-pw-53300';

interface Phase {
  readonly totals: FleetTotals;
  /** Most sessions of the pods' role seen at once (polled). */
  readonly peakSessions: number;
  /** 53300 lines the server logged during the phase. */
  readonly serverLogged: number;
}

describe('server busy (53300): a fleet of pools against a small max_connections', () => {
  let server: PgServer;
  const fleets: Fleet[] = [];

  before(async () => {
    server = await startPgServer({ settings: { max_connections: MAX_CONNECTIONS, superuser_reserved_connections: RESERVED } });
    await server.admin(`CREATE ROLE ${ROLE} LOGIN PASSWORD '${ROLE_PASSWORD}'`);
  });

  after(async () => {
    for (const f of fleets) f.kill();
    await server?.destroy();
  });

  async function runPhase(kind: 'resilient' | 'raw'): Promise<Phase> {
    const logBefore = (await server.readLog()).length;
    const fleet = await startFleet({
      kind,
      pods: PODS,
      pool: (pod) => ({
        host: server.host, port: server.port, database: server.database, user: ROLE, password: ROLE_PASSWORD,
        max: POOL_MAX,
        // Connections a burst opened go back after a second unused (the same for both fleets).
        idleTimeoutMillis: 1000,
        application_name: `busy-${kind}-${pod}`,
      }),
      // Three loops of a 5 ms statement and ~60 ms of think time: about a quarter of a connection
      // busy per pod on average (12 pods: ~3 of the 17 allowed), bursts of up to 3.
      workers: 3,
      query: 'SELECT pg_sleep(0.005)',
      thinkMs: 60,
    });
    fleets.push(fleet);
    let peakSessions = 0;
    // One superuser session opened beforehand: during a storm of logins every process slot can
    // be taken by backends not yet authenticated, and a new superuser login is refused too.
    const watcher = new pg.Client(server.config);
    watcher.on('error', () => undefined);
    await watcher.connect();
    fleet.start();
    const until = Date.now() + RUN_MS;
    try {
      while (Date.now() < until) {
        const { rows } = await watcher.query<{ n: string }>('SELECT count(*) AS n FROM pg_stat_activity WHERE usename = $1', [ROLE]);
        peakSessions = Math.max(peakSessions, Number(rows[0]!.n));
        await sleep(250);
      }
    } finally {
      await watcher.end().catch(() => undefined);
    }
    const stats = await fleet.stop();
    assert.equal(stats.length, PODS, 'every pod reported');
    const log = (await server.readLog()).slice(logBefore);
    // 53300 comes as "too many clients already" (every process slot taken) or as "remaining
    // connection slots are reserved" (only the superusers' slots left).
    const serverLogged = log.split('\n').filter((l) => /too many clients already|remaining connection slots are reserved/.test(l)).length;
    return { totals: totals(stats), peakSessions, serverLogged };
  }

  test(`${PODS} pods × max ${POOL_MAX} against ${MAX_CONNECTIONS - RESERVED} slots: 53300 retried, no error reaches the application, the breaker stays closed; raw pg.Pool fleet fails calls`, async () => {
    const ours = await runPhase('resilient');
    const raw = await runPhase('raw');
    const row = (name: string, p: Phase): string => {
      const t = p.totals;
      return `# ${name.padEnd(12)} calls ok ${String(t.ok).padStart(6)} | app errors ${String(t.errors).padStart(4)} (pods ${t.podsWithErrors}) | 53300 at connect (client) ${String(t.busyConnects).padStart(4)} | server logged ${String(p.serverLogged).padStart(4)} | retried after 53300 ${String(t.busyRetries).padStart(4)} | breaker opened ${t.breakerOpened} | connections opened ${t.connectionsOpened} | peak sessions ${p.peakSessions}/${MAX_CONNECTIONS - RESERVED} | longest call ${t.longestMs} ms`;
    };
    console.log(`# server busy: ${PODS} pods, max ${POOL_MAX} each (sum ${PODS * POOL_MAX}), max_connections ${MAX_CONNECTIONS} (${RESERVED} reserved), ${RUN_MS / 1000} s each`);
    console.log(row('pg-resilient', ours));
    console.log(row('raw pg.Pool', raw));
    if (raw.totals.errors > 0) console.log(`# raw pg.Pool errors: ${JSON.stringify(raw.totals.errorsByCode)}; e.g. ${raw.totals.firstErrors[0]}`);
    if (ours.totals.errors > 0) console.log(`# pg-resilient errors: ${JSON.stringify(ours.totals.errorsByCode)}; e.g. ${ours.totals.firstErrors.join(' | ')}`);

    // The scenario happened: the server refused logins with 53300 while our fleet ran.
    assert.ok(ours.totals.busyConnects > 0, 'pg-resilient pods saw 53300 at connect');
    assert.ok(ours.serverLogged > 0, 'the server logged "too many clients" during our run');
    assert.ok(ours.totals.ok > 1000, `the pods kept serving (${ours.totals.ok} calls)`);
    assert.equal(ours.totals.errors, 0, 'no error reached the application');
    assert.equal(ours.totals.breakerOpened, 0, '53300 never opened the breaker');
    // The control: the same fleet of raw pg.Pools hands 53300 to the application.
    assert.ok(raw.totals.errors > 0, 'the raw pg.Pool fleet failed calls');
    assert.ok((raw.totals.errorsByCode['53300'] ?? 0) > 0, 'with 53300');
  });
});

// A child process for the differential cases that are about the process itself: whether it exits
// when the pool is idle (allowExitOnIdle), and whether an exception thrown inside a user callback
// reaches 'uncaughtException' (as with any callback API) or 'unhandledRejection'.
//
// Usage: child.(ts|js) <pg|ours> <scenario>, with the server's client config as JSON in
// PGR_DIFF_CONFIG. Reports one JSON object per line on stdout. Not a test file: run by
// test/differential/process.test.ts through runChild().
import pg from 'pg';
import { Pool } from '../../src/index.ts';

const [kind, scenario] = process.argv.slice(2);

function report(line: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify(line)}\n`);
}

function makePool(config: pg.PoolConfig): pg.Pool {
  return kind === 'pg' ? new pg.Pool(config) : (new Pool(config) as unknown as pg.Pool);
}

const BOOM = 'boom from a user callback';

/** Reports which process-level handler saw the user's exception, then exits (0: seen). */
function watchForTheThrow(): void {
  process.on('uncaughtException', (err) => {
    report({ handler: 'uncaughtException', message: err.message });
    process.exit(0);
  });
  process.on('unhandledRejection', (reason) => {
    report({ handler: 'unhandledRejection', message: reason instanceof Error ? reason.message : String(reason) });
    process.exit(0);
  });
  // Neither within a second: the exception was swallowed.
  setTimeout(() => {
    report({ handler: 'none' });
    process.exit(0);
  }, 1000).unref();
}

async function main(): Promise<void> {
  const config = JSON.parse(process.env['PGR_DIFF_CONFIG'] ?? '{}') as pg.PoolConfig;
  switch (scenario) {
    case 'exit-on-idle':
    case 'stay-without-allow-exit': {
      // A long idle timeout: only allowExitOnIdle may let the process go before it.
      const pool = makePool({ ...config, idleTimeoutMillis: 30_000, allowExitOnIdle: scenario === 'exit-on-idle' });
      const { rows } = await pool.query<{ n: number }>('SELECT 1 AS n');
      report({ queried: rows[0]?.n });
      // No pool.end(): the process exits by itself only if nothing of the pool keeps it alive.
      return;
    }
    case 'throw-in-query-callback': {
      watchForTheThrow();
      const pool = makePool(config);
      pool.query('SELECT 1', () => {
        throw new Error(BOOM);
      });
      return;
    }
    case 'throw-in-query-error-callback': {
      watchForTheThrow();
      const pool = makePool(config);
      pool.query('SELEC 1', () => {
        throw new Error(BOOM);
      });
      return;
    }
    case 'throw-in-connect-callback': {
      watchForTheThrow();
      const pool = makePool(config);
      pool.connect((_err, _client, done) => {
        done();
        throw new Error(BOOM);
      });
      return;
    }
    case 'throw-in-end-callback': {
      watchForTheThrow();
      const pool = makePool(config);
      await pool.query('SELECT 1');
      // From a plain callback context (pg.Pool may call the end callback synchronously, and
      // inside this async function a synchronous throw would become main()'s rejection).
      setImmediate(() => {
        pool.end(() => {
          throw new Error(BOOM);
        });
      });
      return;
    }
    default:
      // Run without arguments (e.g. picked up by a test glob): nothing to do.
      return;
  }
}

main().catch((err: unknown) => {
  report({ failed: err instanceof Error ? err.message : String(err) });
  process.exitCode = 2;
});

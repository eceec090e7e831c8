import type { Client, QueryConfig } from 'pg';
import type { Clock } from '../policy/clock.ts';
import { brokenClientError } from '../errors.ts';
import { describeConnection } from './call-errors.ts';
import type { ConnectionHooks, ConnectionMeta } from './entry.ts';

/**
 * Every statement on this client goes through here: it is timed (for the liveness watchdog)
 * and, on a client lent to application code whose connection broke, refused with a typed error.
 */
export function wrapQuery(client: Client, meta: ConnectionMeta, hooks: ConnectionHooks, clock: Clock): void {
  if (typeof client.query !== 'function') return;
  const original = client.query.bind(client) as (...args: unknown[]) => unknown;
  const done = (): void => {
    meta.inFlight -= 1;
    meta.busySince = meta.inFlight > 0 ? clock.now() : undefined;
  };
  const prepared = hooks.prepared;
  (client as unknown as { query: (...args: unknown[]) => unknown }).query = (...args: unknown[]) => {
    const first = args[0];
    const submittable = typeof first === 'object' && first !== null && typeof (first as { submit?: unknown }).submit === 'function';
    if (meta.checkedOut && meta.broken !== undefined && !submittable) {
      const error = brokenClientError(describeConnection(meta), meta.broken);
      const callback = args.find((a) => typeof a === 'function') as ((e: Error) => void) | undefined;
      if (callback !== undefined) return void queueMicrotask(() => callback(error));
      return Promise.reject(error);
    }
    // Statements with values run prepared (named) when the connection has a cache; those the
    // application named itself may have to run unnamed (behind a transaction pooler).
    let named: QueryConfig | undefined;
    let appNamed: QueryConfig | undefined;
    if (!submittable && typeof first === 'object' && first !== null && typeof (first as QueryConfig).name === 'string') {
      appNamed = prepared.applicationNamed(first as QueryConfig);
      args[0] = appNamed;
    } else if (meta.prepared !== undefined && !submittable && prepared.enabled) {
      if (typeof first === 'string' && Array.isArray(args[1])) named = prepared.config(meta.prepared, first, args[1] as unknown[]);
      else if (typeof first === 'object' && first !== null && typeof args[1] !== 'object') {
        const cfg = prepared.configFrom(meta.prepared, first as QueryConfig);
        if (cfg !== first) named = cfg;
      }
      if (named !== undefined) args.splice(0, typeof first === 'string' ? 2 : 1, named);
    }
    const rerunnable = named !== undefined || appNamed?.name !== undefined;
    // Read before sending: right after an error pg's status may still say 'T' (its ReadyForQuery
    // comes later), and only a statement sent outside a transaction may run again.
    const status = rerunnable ? (client as unknown as { getTransactionStatus?: () => string | null }).getTransactionStatus?.() : undefined;
    const inTransaction = status !== 'I' && status !== null && status !== undefined;
    // An invalidated prepared statement ran nothing: the config to run next (named again, then
    // unnamed), or undefined when the error is the caller's.
    const again = (cfg: QueryConfig, err: unknown): QueryConfig | undefined => prepared.repair(meta.prepared, cfg, err, inTransaction);
    meta.inFlight += 1;
    meta.busySince ??= clock.now();
    const last = args.length - 1;
    const callback = args[last];
    if (typeof callback === 'function') {
      const finish = (...cbArgs: unknown[]): unknown => {
        done();
        return (callback as (...a: unknown[]) => unknown)(...cbArgs);
      };
      const repairing = (cfg: QueryConfig) => (...cbArgs: unknown[]): unknown => {
        const next = cbArgs[0] ? again(cfg, cbArgs[0]) : undefined;
        if (next === undefined) return finish(...cbArgs);
        return original(next, repairing(next));
      };
      args[last] = rerunnable ? repairing(args[0] as QueryConfig) : finish;
      return original(...args);
    }
    let result = original(...args);
    if (rerunnable && result instanceof Promise) {
      const repairing = (cfg: QueryConfig, pending: Promise<unknown>): Promise<unknown> => pending.catch((err: unknown) => {
        const next = again(cfg, err);
        if (next === undefined) throw err;
        return repairing(next, original(next) as Promise<unknown>);
      });
      result = repairing(args[0] as QueryConfig, result);
    }
    if (result instanceof Promise) {
      result.then(done, (err: unknown) => {
        done();
        // Seen first here, before the socket's close event: retire the old connections now, so
        // the application's next checkout doesn't get another one that is already dead.
        if (meta.checkedOut) hooks.onStatementFailure(client, meta, err);
      });
    } else if (submittable) {
      const q = first as { once?: (event: string, fn: () => void) => void };
      let finished = false;
      const finish = (): void => {
        if (!finished) {
          finished = true;
          done();
        }
      };
      q.once?.('end', finish);
      q.once?.('error', finish);
    } else {
      done();
    }
    return result;
  };
}


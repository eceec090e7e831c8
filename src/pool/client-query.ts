import type { Client, QueryConfig } from 'pg';
import type { Clock } from '../policy/clock.ts';
import { brokenClientError } from './call-errors.ts';
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
      const error = brokenClientError(meta);
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
    // An invalidated prepared statement ran nothing: the config to run once more, if any.
    const again = (err: unknown): QueryConfig | undefined => {
      if (named !== undefined) return prepared.rerun(meta.prepared, named, err);
      if (appNamed?.name === undefined) return undefined;
      const status = (client as unknown as { getTransactionStatus?: () => string | null }).getTransactionStatus?.();
      return prepared.rerunApplicationNamed(appNamed, err, status !== 'I' && status !== null && status !== undefined);
    };
    const rerunnable = named !== undefined || appNamed?.name !== undefined;
    meta.inFlight += 1;
    meta.busySince ??= clock.now();
    const last = args.length - 1;
    const callback = args[last];
    if (typeof callback === 'function') {
      const finish = (...cbArgs: unknown[]): unknown => {
        done();
        return (callback as (...a: unknown[]) => unknown)(...cbArgs);
      };
      args[last] = !rerunnable ? finish : (...cbArgs: unknown[]): unknown => {
        const config = cbArgs[0] ? again(cbArgs[0]) : undefined;
        if (config === undefined) return finish(...cbArgs);
        return original(config, finish);
      };
      return original(...args);
    }
    let result = original(...args);
    if (rerunnable && result instanceof Promise) {
      result = result.catch((err: unknown) => {
        const config = again(err);
        if (config === undefined) throw err;
        return original(config);
      });
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


import type { Client, QueryConfig } from 'pg';
import type { Clock } from '../policy/clock.ts';
import { brokenClientError } from '../errors.ts';
import { describeConnection } from './call-errors.ts';
import type { PoolEntry } from './pool-entry.ts';

/** The connection factory's hook (ConnectionHooks) a failed statement on a lent client is reported to. */
interface StatementFailureHook {
  onStatementFailure(client: Client, entry: PoolEntry, err: unknown): void;
}

/**
 * Every statement on this client goes through here: a statement with a promise takes the
 * entry's one statement path (`entry.send`: naming, repair, in-flight accounting, as the pool's
 * fast path); the callback form and submittables get the same naming, repair and accounting
 * from the entry. On a client lent to application code whose connection broke, a statement is
 * refused with a typed error.
 */
export function wrapQuery(client: Client, entry: PoolEntry, hooks: StatementFailureHook, clock: Clock): void {
  if (typeof client.query !== 'function') return;
  const original = client.query.bind(client) as (...args: unknown[]) => unknown;
  const done = (): void => entry.settled(clock.now());
  const failed = (err: unknown): void => {
    done();
    // Seen first here, before the socket's close event: retire the old connections now, so
    // the application's next checkout doesn't get another one that is already dead.
    if (entry.state === 'lent') hooks.onStatementFailure(client, entry, err);
  };
  (client as unknown as { query: (...args: unknown[]) => unknown }).query = (...args: unknown[]) => {
    const first = args[0];
    const submittable = typeof first === 'object' && first !== null && typeof (first as { submit?: unknown }).submit === 'function';
    if (entry.state === 'lent' && entry.brokenBy !== undefined && !submittable) {
      const error = brokenClientError(describeConnection(entry), entry.brokenBy);
      const callback = args.find((a) => typeof a === 'function') as ((e: Error) => void) | undefined;
      if (callback !== undefined) return void queueMicrotask(() => callback(error));
      return Promise.reject(error);
    }
    const last = args.length - 1;
    const callback = args[last];
    if (typeof callback !== 'function') {
      const result = submittable ? sendSubmittable(entry, original, args, clock) : entry.send(first, args[1], clock.now(), false);
      if (result instanceof Promise) result.then(done, failed);
      else if (!submittable) done();
      return result;
    }
    // The callback form: named and repaired by the entry's rules, through callbacks.
    const named = submittable ? undefined : entry.name(first, args[1]);
    if (named !== undefined) args.splice(0, typeof first === 'string' ? 2 : 1, named);
    const inTransaction = named?.name !== undefined && entry.inTransaction();
    entry.began(clock.now());
    const finish = (...cbArgs: unknown[]): unknown => {
      done();
      return (callback as (...a: unknown[]) => unknown)(...cbArgs);
    };
    const repairing = (cfg: QueryConfig) => (...cbArgs: unknown[]): unknown => {
      const next = cbArgs[0] ? entry.repair(cfg, cbArgs[0], inTransaction) : undefined;
      if (next === undefined) return finish(...cbArgs);
      return original(next, repairing(next));
    };
    args[args.length - 1] = named?.name !== undefined ? repairing(named) : finish;
    return original(...args);
  };
}

/** A submittable (a cursor, a stream): sent as it is, counted in flight until it ends. */
function sendSubmittable(entry: PoolEntry, original: (...args: unknown[]) => unknown, args: unknown[], clock: Clock): unknown {
  entry.began(clock.now());
  const result = original(...args);
  if (result instanceof Promise) return result;
  const q = args[0] as { once?: (event: string, fn: () => void) => void };
  let finished = false;
  const finish = (): void => {
    if (!finished) {
      finished = true;
      entry.settled(clock.now());
    }
  };
  q.once?.('end', finish);
  q.once?.('error', finish);
  return result;
}

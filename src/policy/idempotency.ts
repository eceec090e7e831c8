import { AsyncLocalStorage } from 'node:async_hooks';
import type { FunctionName } from '../classify/function-calls.ts';
import { readFunctions } from '../classify/read-rule.ts';

/**
 * Idempotency declared by scope: every statement issued inside `idempotent(fn)`'s async context
 * may be run again after a lost connection. ORMs build the query config themselves, so a caller
 * cannot put `idempotent: true` on it; the scope reaches through the ORM instead.
 */
const scope = new AsyncLocalStorage<boolean>();

/**
 * Runs `fn` with every statement it issues (through any pg-resilient pool or client, directly
 * or through an ORM) marked idempotent: retried even when the connection was lost with it in
 * flight. Only for work that is harmless to run twice, such as an upsert with a unique key.
 * Trap: `INSERT … ON CONFLICT DO NOTHING RETURNING …` run again returns no row.
 *
 * @example
 * await idempotent(() => prisma.product.upsert({ where: { sku }, create, update }));
 */
export function idempotent<T>(fn: () => T): T {
  if (typeof fn !== 'function') throw new TypeError('pg-resilient: idempotent(fn) expects a function');
  return scope.run(true, fn);
}

/**
 * Whether a statement may run again after it was lost in flight: yes, no, or yes if every
 * function it calls is read-only on the server (a read the rule recognises that calls
 * functions; the pool looks them up in pg_proc before it runs the statement again).
 */
export type Repeatable = boolean | { readonly functions: readonly FunctionName[] };

/**
 * May `text` run again after its connection was lost with it in flight? In order: the call's
 * own `idempotent` option; an `idempotent(fn)` scope; the pool's `isIdempotent(text)` hook;
 * the documented read rule, with the functions it calls still to be checked.
 */
export function mayRepeat(text: string, explicit: boolean | undefined, hook: ((text: string) => boolean) | undefined): Repeatable {
  if (explicit !== undefined) return explicit;
  if (scope.getStore() === true) return true;
  if (hook !== undefined && hook(text) === true) return true;
  const functions = readFunctions(text);
  return functions === undefined ? false : functions.length === 0 ? true : { functions };
}

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
 * ORMs' queries are often lazy: Prisma's `PrismaPromise` and Knex's query builders run only once
 * `then` is called, which `await` does after `fn` has returned, outside the scope (issue 28).
 * So a thenable that is not a native Promise is started here, inside the scope, and a native
 * Promise of its result is returned: the query runs even if the caller never awaits it.
 *
 * @example
 * await idempotent(() => prisma.product.upsert({ where: { sku }, create, update }));
 * await idempotent(() => knex('kv').insert({ k, v }).onConflict('k').merge());
 */
export function idempotent<T>(fn: () => PromiseLike<T>): Promise<T>;
export function idempotent<T>(fn: () => T): T;
export function idempotent<T>(fn: () => T): T | Promise<unknown> {
  if (typeof fn !== 'function') throw new TypeError('pg-resilient: idempotent(fn) expects a function');
  return scope.run(true, () => {
    const result = fn();
    if (result instanceof Promise || !isThenable(result)) return result;
    // Started now, in the scope: the lazy query's statements inherit it.
    return new Promise((resolve, reject) => {
      result.then(resolve, reject);
    });
  });
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return (typeof value === 'object' || typeof value === 'function') && value !== null && typeof (value as { then?: unknown }).then === 'function';
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

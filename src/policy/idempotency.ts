import { AsyncLocalStorage } from 'node:async_hooks';
import { isRecognisedRead } from '../classify/retry-safety.ts';

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
 * May `text` run again after its connection was lost with it in flight? In order: the call's
 * own `idempotent` option; an `idempotent(fn)` scope; the pool's `isIdempotent(text)` hook;
 * the documented read rule.
 */
export function mayRepeat(text: string, explicit: boolean | undefined, hook: ((text: string) => boolean) | undefined): boolean {
  if (explicit !== undefined) return explicit;
  if (scope.getStore() === true) return true;
  if (hook !== undefined && hook(text) === true) return true;
  return isRecognisedRead(text);
}

import type { Bags } from './bags.ts';
import type { Housekeeping } from './housekeeping.ts';
import type { PoolShared } from './shared.ts';

/**
 * `end()`: background work stops, waiting callers are refused, idle connections closed; it
 * resolves once every lent connection has come back and been closed.
 */
export async function shutdown(shared: PoolShared, bags: Bags, housekeeping: Housekeeping, endController: AbortController): Promise<void> {
  shared.ending = true;
  endController.abort();
  housekeeping.stop();
  shared.topology.close();
  shared.breaker.shutdown();
  await Promise.all([...bags.all()].map((bag) => bag.close()));
}

import type { ConnectGate } from '../policy/connect-gate.ts';
import type { Bags } from './bags.ts';
import type { Housekeeping } from './housekeeping.ts';
import type { PoolShared } from './shared.ts';

/**
 * A graceful `end()` (a pod's SIGTERM): calls made after it are refused at once; calls
 * accepted before it finish (waiting, retrying and running as usual, within their deadlines);
 * then waiting stops, idle connections are closed, and it resolves once every lent connection
 * has come back and been closed.
 */
export async function shutdown(shared: PoolShared, bags: Bags, housekeeping: Housekeeping, endController: AbortController, connectGate: ConnectGate): Promise<void> {
  shared.ending = true;
  housekeeping.stop();
  connectGate.drain();
  if (shared.inProgress > 0) {
    await new Promise<void>((resolve) => {
      shared.onSettled = resolve;
    });
  }
  // Callers waiting for a connect slot or a host's backoff hear PGR_POOL_ENDED at once.
  connectGate.end();
  endController.abort();
  shared.topology.close();
  shared.breaker.shutdown();
  await Promise.all([...bags.all()].map((bag) => bag.close()));
}

import { AsyncLocalStorage } from 'node:async_hooks';

/**
 * The label of the writes made in a scope (`pool.withLabel(label, fn)`), for lostCommits events:
 * ORMs build their own query configs, so a scope is the one way to label their writes.
 */
const scope = new AsyncLocalStorage<string>();

export function withLabel<T>(label: string, fn: () => T): T {
  return scope.run(label, fn);
}

/** The call's own label, else the scope's. */
export function currentLabel(own?: string): string | undefined {
  return own ?? scope.getStore();
}

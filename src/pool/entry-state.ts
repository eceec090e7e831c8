import type { Purpose, ServerRole } from '../topology/topology.ts';

// The rules of a connection's life (PoolEntry, src/pool/pool-entry.ts): which state follows
// which, and whether a connection may be used again. Pure, so they are tested row by row.

/**
 * Where a connection is in its life; one field, moved only by PoolEntry's methods.
 * - `busy`: out of the idle stack in the pool's own hands (being opened, running the pool's
 *   statements, pipelined, handed to a caller in line, or being retired by the bag).
 * - `idle`: on its bag's idle stack, ready for the next caller.
 * - `lent`: checked out by application code (`pool.connect()`, a transaction).
 * - `closing`: closed by the pool before it ever joined a bag (a failed or unwanted connect).
 * - `removed`: destroyed by its bag (closed, no longer counted).
 */
export type EntryState = 'busy' | 'idle' | 'lent' | 'closing' | 'removed';

/**
 * What moves an entry: `take` (off the idle stack), `park` (onto it), `lend` (to the
 * application), `giveBack` (from the application), `close` (before it joined a bag), `remove`
 * (destroyed by its bag).
 */
export type EntryEvent = 'take' | 'park' | 'lend' | 'giveBack' | 'close' | 'remove';

/** The state after `event`, or undefined when the event does not apply in `state` (nothing moves). */
export function nextState(state: EntryState, event: EntryEvent): EntryState | undefined {
  switch (event) {
    case 'take': return state === 'idle' ? 'busy' : undefined;
    case 'park': return state === 'busy' || state === 'lent' ? 'idle' : undefined;
    case 'lend': return state === 'busy' ? 'lent' : undefined;
    case 'giveBack': return state === 'lent' ? 'busy' : undefined;
    case 'close': return state === 'removed' || state === 'closing' ? undefined : 'closing';
    case 'remove': return state === 'removed' ? undefined : 'removed';
  }
}

/** Why a connection is not used again (ConnectionRetiredEvent's reasons, less the idle timer's own). */
export type RetireReason = 'broken' | 'failover' | 'wrong-role' | 'lifetime' | 'max-uses';

/** What the retire rule reads of a connection. */
export interface RetireFacts {
  readonly brokenBy: Error | undefined;
  readonly generation: number;
  readonly role: ServerRole | undefined;
  readonly purpose: Purpose;
  readonly expiresAt: number;
  readonly uses: number;
}

/**
 * Which parts of the rule a site applies (each site keeps its own: the idle timer looks at age
 * only, pipelining ignores uses and role, ...). Made once per site: the hot path allocates nothing.
 */
export interface RetireRules {
  /** Broken, or from before the current generation (a failover). */
  readonly failed: boolean;
  /** The server's role still fits the connection's purpose (the topology); not asked when undefined. */
  readonly roles: { fits(role: ServerRole, purpose: Purpose): 'yes' | 'fallback' | 'no' } | undefined;
  /** Past its lifetime (`expiresAt`). */
  readonly lifetime: boolean;
  /** Retired after this many uses (`maxUses`); Infinity: never. */
  readonly maxUses: number;
}

/**
 * Why a connection must not be used again at `now`, with `generation` the topology's current
 * one; undefined when it may. The order is the order the reasons are reported in.
 */
export function retireReason(facts: RetireFacts, now: number, generation: number, rules: RetireRules): RetireReason | undefined {
  if (rules.failed) {
    if (facts.brokenBy !== undefined) return 'broken';
    if (facts.generation < generation) return 'failover';
  }
  const roles = rules.roles;
  if (roles !== undefined && facts.role !== undefined && roles.fits(facts.role, facts.purpose) === 'no') return 'wrong-role';
  if (rules.lifetime && facts.expiresAt <= now) return 'lifetime';
  if (facts.uses >= rules.maxUses) return 'max-uses';
  return undefined;
}

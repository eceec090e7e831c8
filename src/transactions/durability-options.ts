import { invalidOption } from '../errors.ts';
import { describe, duration, integer, objectOption } from '../option-checks.ts';

/** Bounds of what the pool remembers of its acknowledged commits (`lostCommits`). */
export interface ResolvedLostCommits {
  /** A commit older than this is forgotten (a failover found later cannot name it). */
  readonly windowMs: number;
  /** At most this many commits are remembered; the oldest go first. */
  readonly maxTracked: number;
}

/** `lostCommits`: remember acknowledged commits so that a failover that lost some says so. */
export interface LostCommitsOptions {
  /** A commit older than this is forgotten. Defaults to 300000 (5 min): longer than a failover takes. */
  windowMs?: number;
  /** At most this many commits are remembered (about 200 B each); the oldest go first. Defaults to 100000. */
  maxTracked?: number;
}

/** Resolves `lostCommits` (off unless `true` or an object). Part of resolveOptions (options.ts). */
export function resolveLostCommits(value: unknown): ResolvedLostCommits | undefined {
  if (value === undefined || value === false) return undefined;
  if (value !== true) objectOption('lostCommits', value);
  const o = (value === true ? {} : value) as LostCommitsOptions;
  return Object.freeze({
    windowMs: duration('lostCommits.windowMs', o.windowMs, 300_000, 1000),
    maxTracked: integer('lostCommits.maxTracked', o.maxTracked, 100_000, 1, 10_000_000),
  });
}

/** A write's label (`label` on a call, `pool.withLabel`): a short string, named in lostCommits events. */
export function checkLabel(value: unknown, where: string): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || value.length === 0 || value.length > 200) {
    throw invalidOption(where, 'expected a non-empty string of at most 200 characters');
  }
  return value;
}

/** When a write resolves: once the primary committed it ('local'), or once a standby has received it too ('replicated'). */
export type Durability = 'local' | 'replicated';

/** `durability` (pool, call or transaction): 'local' or 'replicated'. */
export function checkDurability(value: unknown, where: string, fallback: Durability): Durability {
  if (value === undefined) return fallback;
  if (value !== 'local' && value !== 'replicated') throw invalidOption(where, `expected 'local' or 'replicated', got ${describe(value)}`);
  return value;
}

/** `replicationTimeoutMs`: how long `durability: 'replicated'` waits for a standby. Defaults to 5000. */
export function resolveReplicationTimeout(value: unknown): number {
  return duration('replicationTimeoutMs', value, 5000, 1);
}

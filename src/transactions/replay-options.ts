import { invalidOption } from '../errors.ts';
import { describe, integer } from '../option-checks.ts';

/** Bounds of what one transaction's verified replay may record (see `transactionReplay`). */
export interface TransactionReplayOptions {
  /** Statements recorded per transaction, the one that began it included. Defaults to 1000. */
  maxStatements?: number;
  /** Bytes of statement text and values recorded per transaction. Defaults to 1048576 (1 MiB). */
  maxBytes?: number;
}

export interface ResolvedReplay {
  readonly maxStatements: number;
  readonly maxBytes: number;
}

/** Resolves `transactionReplay` (on by default). Part of resolveOptions (src/options.ts). */
export function resolveReplay(value: boolean | TransactionReplayOptions | undefined): ResolvedReplay | undefined {
  if (value === false) return undefined;
  if (value !== undefined && value !== true && (typeof value !== 'object' || value === null || Array.isArray(value))) {
    throw invalidOption('transactionReplay', `expected true, false or { maxStatements, maxBytes }, got ${describe(value)}`);
  }
  const r = typeof value === 'object' ? value : {};
  return Object.freeze({
    maxStatements: integer('transactionReplay.maxStatements', r.maxStatements, 1000, 1),
    maxBytes: integer('transactionReplay.maxBytes', r.maxBytes, 1048576, 0),
  });
}

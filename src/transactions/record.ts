import type { QueryConfig } from 'pg';
import type { ResolvedReplay } from '../options.ts';
import { digestError, digestResult } from './digest.ts';

/** One statement of a transaction as sent, and what it returned (a digest). */
export interface RecordedStatement {
  readonly config: QueryConfig;
  readonly digest: string;
}

/**
 * What a transaction on a checked-out client did so far, to run it again on another
 * connection: its statements from the one that began it, each with the digest of its result
 * (or of its error: a statement that failed inside a savepoint must fail the same way again).
 * Bounded by statements and bytes; beyond them, or after a statement that cannot be replayed,
 * it keeps nothing and says why.
 */
export class TransactionRecord {
  readonly #limits: ResolvedReplay;
  #entries: RecordedStatement[] = [];
  #bytes = 0;
  #stopped: string | undefined;

  constructor(limits: ResolvedReplay) {
    this.#limits = limits;
  }

  /** Every statement so far is recorded: the transaction can be replayed. */
  get replayable(): boolean {
    return this.#stopped === undefined;
  }

  /** Why it cannot be replayed, if it cannot. */
  get reason(): string | undefined {
    return this.#stopped;
  }

  get entries(): readonly RecordedStatement[] {
    return this.#entries;
  }

  /** A statement that succeeded. */
  addResult(config: QueryConfig, result: unknown): void {
    if (this.#stopped !== undefined) return;
    const digest = digestResult(result);
    if (digest === undefined) this.stop('a result could not be compared (a value JSON cannot represent)');
    else this.#add(config, digest);
  }

  /** A statement the server refused (the connection lives; the transaction is failed or back at a savepoint). */
  addError(config: QueryConfig, err: unknown): void {
    if (this.#stopped === undefined) this.#add(config, digestError(err));
  }

  /** No replay for this transaction any more; the record is dropped. */
  stop(reason: string): void {
    if (this.#stopped !== undefined) return;
    this.#stopped = reason;
    this.#entries = [];
  }

  #add(config: QueryConfig, digest: string): void {
    const values = config.values;
    this.#bytes += (config.text?.length ?? 0) + sizeOfValues(values);
    if (this.#entries.length >= this.#limits.maxStatements) return this.stop(`more than ${this.#limits.maxStatements} statements (transactionReplay.maxStatements)`);
    if (this.#bytes > this.#limits.maxBytes) return this.stop(`more than ${this.#limits.maxBytes} bytes of statements (transactionReplay.maxBytes)`);
    // A copy of the values array: the caller may reuse its own. The values themselves are kept
    // by reference (pg serialises them when it sends; ORMs do not change them afterwards).
    this.#entries.push({ config: values === undefined ? { ...config } : { ...config, values: [...values] }, digest });
  }
}

function sizeOfValues(values: unknown[] | undefined): number {
  if (values === undefined) return 0;
  let n = 0;
  for (const v of values) {
    if (typeof v === 'string') n += v.length;
    else if (v instanceof Uint8Array) n += v.byteLength;
    else if (typeof v === 'object' && v !== null && !(v instanceof Date)) n += approximateJson(v);
    else n += 8;
  }
  return n;
}

function approximateJson(v: object): number {
  try {
    return JSON.stringify(v)?.length ?? 8;
  } catch {
    return 8;
  }
}

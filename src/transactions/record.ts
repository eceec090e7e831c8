import type { QueryConfig } from 'pg';
import type { ResolvedReplay } from './replay-options.ts';
import { digestError, digestResult } from './digest.ts';
import { isBeginOnly, mayChangeCharacteristics } from './transaction-control.ts';

/** One statement of a transaction as sent, and what it returned (a digest). */
export interface RecordedStatement {
  readonly config: QueryConfig;
  readonly digest: string;
}

/**
 * What a transaction on a checked-out client did so far, to run it again on another
 * connection: its statements from the one that began it, each with the digest of its result
 * (or of its error: a statement that failed inside a savepoint must fail the same way again).
 * Bounded by statements and by bytes kept (statement texts, values and digests); beyond them,
 * or after a statement that cannot be replayed, it keeps nothing and says why.
 *
 * It also keeps what begins the transaction again after `COMMIT AND CHAIN` / `ROLLBACK AND
 * CHAIN` (`chained()`): the BEGIN that opened it, as long as nothing may have changed the
 * characteristics a chained transaction inherits.
 */
export class TransactionRecord {
  readonly #limits: ResolvedReplay;
  #entries: RecordedStatement[] = [];
  #bytes = 0;
  #stopped: string | undefined;
  /** The lone BEGIN that opened the first transaction of the chain, if it was one. */
  #begin: RecordedStatement | undefined;
  /** Why a chained transaction could not be begun again by `#begin` alone, if so. */
  #noChain: string | undefined;

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

  /** Bytes kept now: statement texts, values and digests (what `maxBytes` bounds). */
  get bytes(): number {
    return this.#bytes;
  }

  /** A statement that succeeded. */
  addResult(config: QueryConfig, result: unknown): void {
    this.#note(config);
    if (this.#stopped !== undefined) return;
    const digest = digestResult(result);
    if (digest === undefined) this.stop('a result could not be compared (a value JSON cannot represent)');
    else this.#add(config, digest);
  }

  /** A statement the server refused (the connection lives; the transaction is failed or back at a savepoint). */
  addError(config: QueryConfig, err: unknown): void {
    this.#note(config);
    if (this.#stopped === undefined) this.#add(config, digestError(err));
  }

  /** No replay for this transaction any more; the record is dropped. */
  stop(reason: string): void {
    if (this.#stopped !== undefined) return;
    this.#stopped = reason;
    this.#entries = [];
    this.#bytes = 0;
  }

  /**
   * Also no chained transaction can be begun again from this one (a text with transaction
   * control ran: what is open now was not begun by the recorded BEGIN).
   */
  stopChain(reason: string): void {
    this.stop(reason);
    this.#noChain ??= reason;
  }

  /**
   * The record of the transaction `COMMIT AND CHAIN` / `ROLLBACK AND CHAIN` just opened: its
   * BEGIN again (the chained transaction has the first one's characteristics), or not
   * replayable when they are not known.
   */
  chained(): TransactionRecord {
    const next = new TransactionRecord(this.#limits);
    next.#noChain = this.#noChain ?? (this.#begin === undefined ? 'the transaction before it was not begun by a lone BEGIN' : undefined);
    next.#begin = this.#begin;
    if (next.#noChain !== undefined) next.stop(`it was chained to a transaction whose characteristics are not known (${next.#noChain})`);
    else next.#add(this.#begin!.config, this.#begin!.digest);
    return next;
  }

  #note(config: QueryConfig): void {
    const text = config.text ?? '';
    if (this.#noChain === undefined && mayChangeCharacteristics(text)) this.#noChain = 'a statement may have changed its characteristics';
  }

  #add(config: QueryConfig, digest: string): void {
    const values = config.values;
    this.#bytes += (config.text?.length ?? 0) + sizeOfValues(values) + digest.length;
    if (this.#entries.length >= this.#limits.maxStatements) return this.stop(`more than ${this.#limits.maxStatements} statements (transactionReplay.maxStatements)`);
    if (this.#bytes > this.#limits.maxBytes) return this.stop(`more than ${this.#limits.maxBytes} bytes of statements and digests (transactionReplay.maxBytes)`);
    // A copy of the values array: the caller may reuse its own. The values themselves are kept
    // by reference (pg serialises them when it sends; ORMs do not change them afterwards).
    const entry = { config: values === undefined ? { ...config } : { ...config, values: [...values] }, digest };
    if (this.#entries.length === 0 && this.#begin === undefined && isBeginOnly(config.text ?? '') && values === undefined) this.#begin = entry;
    this.#entries.push(entry);
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

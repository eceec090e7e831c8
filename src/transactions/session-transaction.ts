import type { Client, QueryConfig, QueryResult } from 'pg';
import { isRollback } from '../classify/session-state.ts';
import { Deadline } from '../policy/deadline.ts';
import { AttemptFailure } from '../policy/retry.ts';
import { ErrorCodes, PgResilientError, TransactionOutcomeUnknownError, rolledBackError, transactionOutcomeUnknownError } from '../errors.ts';
import { TransactionRecord } from './record.ts';
import { divergedError, replayOn, type Divergence } from './replay.ts';
import { commitKind, firstWords, mayWrite, transactionControl, type CommitKind, type TransactionControl } from './transaction-control.ts';
import { sendWithXid } from './xid-reading.ts';
import type { WalPosition } from './timeline.ts';
import { entryOf } from '../pool/pool-entry.ts';
import type { ResilientQueryConfig } from '../pool/query-args.ts';
import { commitAndResolve, completed, dropLost, isLost, runReplayed, type TxPort } from './session-commit.ts';

/** What the transaction side uses of its session. */
export interface SessionPort extends TxPort {
  /** A statement succeeded: the session records what it did (settings, bound state, transaction). */
  after(config: QueryConfig, result: unknown, before: string | null): void;
  /**
   * The transaction ended without the connection telling its status (lost, or a COMMIT refused
   * before its ReadyForQuery arrived): the session is clean again; `settings` outlive it.
   */
  ended(settings: string[]): void;
  /** Settings made inside a transaction that committed while another goes on (COMMIT AND CHAIN). */
  kept(settings: string[]): void;
}

/**
 * The transaction side of a checked-out client (`Session`), for statements sent while a
 * transaction is open ('T' in progress, 'E' failed):
 * - each statement is recorded with a digest of its result (`transactionReplay`); when the
 *   connection is lost before COMMIT, a fresh connection replays the transaction and, if every
 *   result is the same, the session continues there and runs the statement (else
 *   PGR_REPLAY_DIVERGED); not recorded (off, too large, a cursor or COPY ran, state bound to the
 *   connection): PGR_TRANSACTION_ROLLED_BACK;
 * - COMMIT goes out with the transaction's id read in the same round trip, and a COMMIT whose
 *   answer was lost is resolved with `txid_status` (session-commit.ts);
 * - ROLLBACK, or COMMIT of a failed transaction, on a lost connection completes (the server
 *   rolled the transaction back when the connection died).
 * Savepoints need nothing special: SAVEPOINT, ROLLBACK TO and RELEASE are recorded and
 * replayed in order, like a statement that failed inside a savepoint (it must fail the same way).
 */
export class SessionTransaction {
  readonly #port: SessionPort;
  /** The open transaction's statements, for a replay; undefined outside one or with replay off. */
  #record: TransactionRecord | undefined;
  /** Session settings run inside the open transaction: kept if it commits. */
  #pendingSettings: string[] = [];
  /** The open transaction's id on its current connection, once it wrote (read with that write). */
  #xid: string | undefined;
  /** Where the primary's WAL stood when the id was read (timeline.ts). */
  #xidAt: WalPosition | undefined;
  /**
   * Why part of what the application sent since its BEGIN may have committed already
   * (COMMIT AND CHAIN, a CALL or DO, a text with COMMIT and more): a loss that cannot be replayed
   * is then PGR_TRANSACTION_OUTCOME_UNKNOWN, never "rolled back, safe to run again".
   */
  #partly: string | undefined;

  constructor(port: SessionPort) {
    this.#port = port;
  }

  /** The open transaction can be continued on another connection. */
  get replayable(): boolean {
    return this.#record?.replayable === true;
  }

  /** Nothing open any more (released, or ended with a lost connection). */
  reset(): void {
    this.#record = undefined;
    this.#pendingSettings = [];
    this.#xid = undefined;
    this.#xidAt = undefined;
    this.#partly = undefined;
  }

  /** No replay for the open transaction (a cursor ran, state was bound to the connection, …). */
  stopReplay(reason: string): void {
    this.#record?.stop(reason);
  }

  /** A statement began a transaction: recording starts with it (unless off). */
  began(config: QueryConfig, result: unknown, record: boolean): void {
    const limits = this.#port.shared.o.transactionReplay;
    this.#pendingSettings = [];
    this.#xid = undefined;
    this.#xidAt = undefined;
    this.#partly = undefined;
    this.#record = limits === undefined || !record ? undefined : new TransactionRecord(limits);
    this.#record?.addResult(config, result);
    // `BEGIN; …; COMMIT; BEGIN; …`: what is open now is not what the recorded text began.
    const control = transactionControl(config.text ?? '');
    if (control === 'routine') this.#record?.stop(ROUTINE_REASON);
    else if (control !== 'none') this.#uncertain(config.text ?? '');
  }

  /**
   * A statement inside the transaction succeeded (the transaction is still open after it);
   * `setting`: it was a session SET. Returns the settings that now outlive the transaction
   * (a COMMIT AND CHAIN committed them).
   */
  continued(config: QueryConfig, result: unknown, setting: boolean): string[] {
    const text = config.text ?? '';
    const control = transactionControl(text);
    if (control === 'chain-commit' || control === 'chain-rollback') {
      // COMMIT AND CHAIN of a failed transaction rolls back (the server answers ROLLBACK).
      return this.#chain((result as { command?: unknown } | undefined)?.command === 'COMMIT');
    }
    if (setting) this.#pendingSettings.push(text);
    if (control === 'uncertain') this.#uncertain(text);
    else if (control === 'routine') this.#record?.stop(ROUTINE_REASON);
    else this.#record?.addResult(config, result);
    return [];
  }

  /** The transaction ended; returns the settings that outlive it (it committed). */
  finished(committed: boolean): string[] {
    const kept = committed ? this.#pendingSettings : [];
    this.reset();
    return kept;
  }

  async run(config: QueryConfig, input: ResilientQueryConfig, status: 'T' | 'E'): Promise<QueryResult> {
    const port = this.#port;
    const text = config.text ?? '';
    const client = port.current();
    const meta = entryOf(client);
    const broken = meta === undefined || meta.brokenBy !== undefined;
    const kind = commitKind(text);
    const control = transactionControl(text);
    if (control === 'chain-rollback' || (control === 'chain-commit' && status === 'E')) return this.#rollbackAndChain(config, status);
    if (control === 'chain-commit') return this.#commit(config, input, 'plain', true);
    if (isRollback(text) || (kind !== 'none' && status === 'E')) {
      // Ends the transaction without committing (COMMIT of a failed one is answered ROLLBACK).
      if (broken) return this.#endLost('ROLLBACK');
      try {
        return this.#after(config, await (client.query(config) as Promise<QueryResult>), status);
      } catch (err) {
        // Lost with it in flight: rolled back all the same.
        if (!isLost(client, err)) throw err;
        dropLost(client, err);
        return this.#endLost('ROLLBACK');
      }
    }
    if (kind !== 'none') return this.#commit(config, input, kind, false);
    let first: unknown;
    if (!broken) {
      try {
        // Until the transaction's id is known, a statement that may write carries its reading.
        const call = status === 'T' && this.#xid === undefined && mayWrite(text) ? sendWithXid(client, config, false) : null;
        const result = await (call?.done ?? (client.query(config) as Promise<QueryResult>));
        const xid = call?.xid();
        if (typeof xid === 'string') {
          this.#xid = xid;
          this.#xidAt = call?.at();
        }
        return this.#after(config, result, status);
      } catch (err) {
        if (!isLost(client, err)) {
          this.#refused(config, err, control);
          throw err;
        }
        dropLost(client, err);
        // A text that may have committed part of the transaction, lost in flight: not repeated.
        if (control === 'uncertain') throw this.#lostUncertain(text, err);
        first = err;
      }
    }
    // The connection is gone, and the transaction with it (COMMIT was never sent).
    this.#requireReplay(first ?? meta?.brokenBy);
    if (control === 'uncertain') {
      // Never sent: the transaction goes on on a new connection, where the text runs once.
      const deadline = this.#deadline(input);
      const fresh = await port.runner.policy.run({ deadline, repeat: true }, () => port.replayed(deadline));
      try {
        return this.#after(config, await (fresh.query(config) as Promise<QueryResult>), status);
      } catch (err) {
        if (!isLost(fresh, err)) {
          this.#refused(config, err, control);
          throw err;
        }
        dropLost(fresh, err);
        throw this.#lostUncertain(text, err);
      }
    }
    const outcome = await runReplayed(port, config, this.#deadline(input));
    if ('rejected' in outcome) {
      this.#record?.addError(config, outcome.rejected);
      throw outcome.rejected;
    }
    return this.#after(config, outcome.result, status);
  }

  /**
   * COMMIT (or a text with one) of a transaction in progress. However it ends, the transaction
   * is over afterwards, as in PostgreSQL (a refused COMMIT rolls back): the session says so at
   * once, since pg reports a refusal before the ReadyForQuery that would update its status.
   */
  async #commit(config: QueryConfig, input: ResilientQueryConfig, kind: CommitKind, chain: boolean): Promise<QueryResult> {
    const port = this.#port;
    let client = port.current();
    const deadline = this.#deadline(input);
    let result: QueryResult;
    try {
      const meta = entryOf(client);
      if (meta === undefined || meta.brokenBy !== undefined) {
        // Lost before COMMIT was sent: nothing committed. Commit a replay of it instead.
        this.#requireReplay(meta?.brokenBy);
        client = await port.runner.policy.run({ deadline, repeat: true }, () => port.replayed(deadline));
      }
      const known = client === port.current();
      result = await commitAndResolve(port, client, config, kind, deadline, known ? this.#xid : undefined, known ? this.#xidAt : undefined);
    } catch (err) {
      // A text that goes on after its COMMIT (`…; COMMIT; BEGIN; …`), lost: the application
      // meant to be in a transaction afterwards, so the session stays in the one it lost.
      if (entryOf(client)?.brokenBy !== undefined && transactionControl(config.text ?? '') === 'uncertain') {
        throw this.#lostUncertain(config.text ?? '', err instanceof PgResilientError ? err.cause ?? err : err);
      }
      const partly = this.#partly;
      this.#endLost(undefined);
      // "Did not commit" is about this transaction: an earlier part of the application's may have.
      if (partly !== undefined && err instanceof PgResilientError && err.code === ErrorCodes.TRANSACTION_ROLLED_BACK) throw partlyUnknown(partly, this.#xid, err);
      throw err;
    }
    if (entryOf(client)?.brokenBy === undefined) return this.#after(config, result, 'T');
    // Resolved as committed after its connection was lost. A text that went on after its COMMIT
    // (`…; COMMIT; BEGIN; …`) lost what it opened: the application cannot be told it is in it.
    if (transactionControl(config.text ?? '') === 'uncertain') throw this.#lostUncertain(config.text ?? '', entryOf(client)?.brokenBy);
    if (chain) {
      // COMMIT AND CHAIN: the new transaction died with the connection before anything ran in it;
      // its BEGIN (the recorded one) is replayed with its next statement.
      port.kept(this.#chain(true));
      return result;
    }
    port.ended(this.finished(true));
    return result;
  }

  /**
   * ROLLBACK AND CHAIN (or COMMIT AND CHAIN of a failed transaction): lost before or with it, the
   * server rolled the transaction back all the same, and the new one had nothing in it yet:
   * done, the chained transaction is begun again with the next statement.
   */
  async #rollbackAndChain(config: QueryConfig, status: 'T' | 'E'): Promise<QueryResult> {
    const client = this.#port.current();
    const meta = entryOf(client);
    if (meta !== undefined && meta.brokenBy === undefined) {
      try {
        return this.#after(config, await (client.query(config) as Promise<QueryResult>), status);
      } catch (err) {
        if (!isLost(client, err)) {
          this.#record?.addError(config, err);
          throw err;
        }
        dropLost(client, err);
      }
    }
    this.#chain(false);
    return completed('ROLLBACK');
  }

  /** A chain boundary: a new transaction, with the same BEGIN, on the same connection. */
  #chain(committed: boolean): string[] {
    const kept = committed ? this.#pendingSettings : [];
    this.#pendingSettings = [];
    // The new transaction's id is not the old one's: read again with its first write.
    this.#xid = undefined;
    this.#xidAt = undefined;
    if (committed) this.#partly ??= 'COMMIT AND CHAIN committed the transaction before it';
    this.#record = this.#record?.chained();
    return kept;
  }

  /**
   * The server refused a statement (the connection lives). A text with transaction control may
   * have committed its first part before the statement that failed (`UPDATE …; COMMIT AND
   * CHAIN; <fails>`): no replay past it either.
   */
  #refused(config: QueryConfig, err: unknown, control: TransactionControl): void {
    if (control === 'uncertain') this.#uncertain(config.text ?? '');
    else if (control === 'routine') this.#record?.stop(ROUTINE_REASON);
    else this.#record?.addError(config, err);
  }

  /** A text that may have ended the transaction and gone on ran: no replay past it. */
  #uncertain(text: string): void {
    const why = `${firstWords(text)} may have committed part of the transaction`;
    this.#partly ??= why;
    this.#xid = undefined;
    this.#xidAt = undefined;
    this.#record?.stopChain(why);
  }

  /**
   * Such a text lost in flight: what of the transaction committed is unknown. Like any
   * transaction lost for good, the client's statements fail so until the application ends it
   * (ROLLBACK completes): nothing it sends next may run outside the transaction it meant.
   */
  #lostUncertain(text: string, cause: unknown): TransactionOutcomeUnknownError {
    const why = `${firstWords(text)} was in flight`;
    this.#partly = why;
    this.#record?.stopChain(why);
    return partlyUnknown(why, this.#xid, cause);
  }

  /**
   * The open transaction, again on `fresh` (settings applied, nothing else run): every result
   * as before, or PGR_REPLAY_DIVERGED (rolled back). A lost connection: AttemptFailure.
   */
  async replayOn(fresh: Client, lostWith: unknown): Promise<void> {
    const { bags, shared } = this.#port;
    const record = this.#record;
    if (record === undefined || !record.replayable) {
      bags.release(fresh, undefined);
      throw rolledBackError('the connection was lost before COMMIT, and the transaction cannot be replayed', lostWith);
    }
    const startedAt = shared.o.clock.now();
    let diverged: Divergence | undefined;
    try {
      diverged = await replayOn(fresh, record.entries);
    } catch (err) {
      bags.release(fresh, err);
      throw new AttemptFailure(err, 'query');
    }
    const statements = record.entries.length;
    const durationMs = Math.round(shared.o.clock.now() - startedAt);
    shared.publish('transactionReplay', diverged === undefined
      ? { outcome: 'replayed', statements, durationMs }
      : { outcome: 'diverged', statements, durationMs, statementIndex: diverged.index, ...(diverged.sqlstate === undefined ? {} : { sqlstate: diverged.sqlstate }) });
    if (diverged === undefined) {
      // A new transaction on a new connection: its id is read again with its next write.
      this.#xid = undefined;
      this.#xidAt = undefined;
      shared.o.logger.warn({ statements, durationMs }, 'pg-resilient: a transaction whose connection was lost was replayed on a new connection, every result the same');
      return;
    }
    shared.o.logger.warn({ statements, statementIndex: diverged.index, sqlstate: diverged.sqlstate, durationMs }, 'pg-resilient: a replayed transaction returned other results; rolled back');
    await fresh.query('ROLLBACK').then(() => bags.release(fresh, undefined), (err: unknown) => bags.release(fresh, err));
    const text = record.entries[diverged.index]?.config.text;
    record.stop('its replay diverged');
    throw divergedError(diverged.index, text, lostWith);
  }

  #after(config: QueryConfig, result: QueryResult, before: 'T' | 'E'): QueryResult {
    this.#port.after(config, result, before);
    return result;
  }

  /**
   * The transaction's connection is gone: go on only if it can be replayed. Else every statement
   * fails so until the application ends the transaction (ROLLBACK completes): like pg's client
   * after a lost connection, nothing it sends next may run outside the transaction it meant.
   */
  #requireReplay(cause: unknown): void {
    const record = this.#record;
    if (record?.replayable === true) return;
    if (this.#partly !== undefined) throw partlyUnknown(this.#partly, undefined, cause);
    const why = record === undefined ? 'transactionReplay is off' : `it cannot be replayed: ${record.reason}`;
    throw rolledBackError(`the connection was lost before COMMIT, and ${why}`, cause);
  }

  #endLost(answer: 'COMMIT' | 'ROLLBACK' | undefined): QueryResult {
    this.reset();
    this.#port.ended([]);
    return answer === undefined ? (undefined as unknown as QueryResult) : completed(answer);
  }

  #deadline(input: ResilientQueryConfig): Deadline {
    const s = this.#port.shared;
    return new Deadline(s.o.clock, input.deadlineMs ?? s.o.retry.maxElapsedMs, input.signal);
  }
}

/**
 * A CALL or DO: what its body did is not in its result, so its replay could not be verified. It
 * cannot have committed (PostgreSQL refuses transaction control in one run inside a transaction
 * block), so a loss stays PGR_TRANSACTION_ROLLED_BACK.
 */
const ROUTINE_REASON = 'a CALL or DO ran in it (what its body did cannot be compared)';

/**
 * PGR_TRANSACTION_OUTCOME_UNKNOWN for a transaction part of which may have committed before its
 * connection was lost: it is not replayed, and running it again may apply that part twice.
 */
function partlyUnknown(why: string, xid: string | undefined, cause: unknown): TransactionOutcomeUnknownError {
  return transactionOutcomeUnknownError('inside a transaction', `it was not replayed because ${why}, and part of it may have committed`, 'check what of it was applied before running it again', xid, cause);
}

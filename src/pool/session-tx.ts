import type { Client, QueryConfig, QueryResult } from 'pg';
import { isRecognisedRead } from '../classify/read-rule.ts';
import { isRollback } from '../classify/session-state.ts';
import { Deadline } from '../policy/deadline.ts';
import { AttemptFailure, runWithRetry } from '../policy/retry.ts';
import { rolledBackError } from '../transactions/commit-outcome.ts';
import { TransactionRecord } from '../transactions/record.ts';
import { divergedError, replayOn, type Divergence } from '../transactions/replay.ts';
import { commitKind, isBeginOnly, type CommitKind } from '../transactions/statements.ts';
import { sendWithXid } from '../transactions/xid-pipeline.ts';
import { metaOf } from './connection.ts';
import type { ResilientQueryConfig } from './query-args.ts';
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
    this.#record = limits === undefined || !record ? undefined : new TransactionRecord(limits);
    this.#record?.addResult(config, result);
  }

  /** A statement inside the transaction succeeded; `setting`: it was a session SET. */
  continued(config: QueryConfig, result: unknown, setting: boolean): void {
    if (setting) this.#pendingSettings.push(config.text ?? '');
    this.#record?.addResult(config, result);
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
    const meta = metaOf(client);
    const broken = meta === undefined || meta.broken !== undefined;
    const kind = commitKind(text);
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
    if (kind !== 'none') return this.#commit(config, input, kind);
    let first: unknown;
    if (!broken) {
      try {
        // Until the transaction's id is known, a statement that may write carries its reading.
        const call = status === 'T' && this.#xid === undefined && mayWrite(text) ? sendWithXid(client, config, false) : null;
        const result = await (call?.done ?? (client.query(config) as Promise<QueryResult>));
        const xid = call?.xid();
        if (typeof xid === 'string') this.#xid = xid;
        return this.#after(config, result, status);
      } catch (err) {
        if (!isLost(client, err)) {
          this.#record?.addError(config, err);
          throw err;
        }
        dropLost(client, err);
        first = err;
      }
    }
    // The connection is gone, and the transaction with it (COMMIT was never sent).
    this.#requireReplay(first ?? meta?.broken);
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
  async #commit(config: QueryConfig, input: ResilientQueryConfig, kind: CommitKind): Promise<QueryResult> {
    const port = this.#port;
    let client = port.current();
    const deadline = this.#deadline(input);
    let result: QueryResult;
    try {
      const meta = metaOf(client);
      if (meta === undefined || meta.broken !== undefined) {
        // Lost before COMMIT was sent: nothing committed. Commit a replay of it instead.
        this.#requireReplay(meta?.broken);
        client = await runWithRetry(() => port.replayed(deadline), port.runner.retryRun(deadline, true));
      }
      result = await commitAndResolve(port, client, config, kind, deadline, client === port.current() ? this.#xid : undefined);
    } catch (err) {
      this.#endLost(undefined);
      throw err;
    }
    if (metaOf(client)?.broken === undefined) return this.#after(config, result, 'T');
    // Resolved as committed after its connection was lost.
    port.ended(this.finished(true));
    return result;
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
    shared.emitSafe('transactionReplay', diverged === undefined
      ? { outcome: 'replayed', statements, durationMs }
      : { outcome: 'diverged', statements, durationMs, statementIndex: diverged.index, ...(diverged.sqlstate === undefined ? {} : { sqlstate: diverged.sqlstate }) });
    if (diverged === undefined) {
      // A new transaction on a new connection: its id is read again with its next write.
      this.#xid = undefined;
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
 * May this statement write (and so give the transaction its id)? Not for the texts the read rule
 * recognises, nor BEGIN, savepoints, SET and SHOW. A read that writes after all (a function
 * with side effects) leaves the id unknown; COMMIT then reads it in its own round trip.
 */
function mayWrite(text: string): boolean {
  if (/^\s*(savepoint|release|rollback\s+to|set|show|reset)\b/i.test(text) || isBeginOnly(text)) return false;
  return !isRecognisedRead(text);
}

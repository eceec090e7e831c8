import type { Client } from 'pg';
import { FATAL_EVIDENCE, type FatalEvidence } from '../classify/fatal-proof.ts';

/** What this module reads of pg's Client and Query (pg@8 internals, pinned by test/integration/fatal-proof.test.ts). */
interface PgQueryInternals {
  text?: unknown;
  /** Our own submittables (xid-reading, commit-position) carry two statements and count both. */
  completedStatements?: unknown;
  _result?: { command?: unknown } | null;
  _results?: unknown;
}
interface PgClientInternals {
  connection?: { on?(event: string, fn: (msg: unknown) => void): unknown };
  _activeQuery?: PgQueryInternals | null;
  _txStatus?: string | null;
}

/**
 * Stamps every ErrorResponse that reaches a statement on `client` with what the rule in
 * src/classify/fatal-proof.ts needs: the statement's text, the transaction status it started
 * from, how many CommandCompletes it had received, and whether a notice on this connection
 * said a commit already happened locally.
 *
 * Nothing runs per statement: the listeners fire only on ErrorResponse and NoticeResponse
 * messages. They are added before pg attaches its own (pg does that at connect), so on an
 * ErrorResponse the statement it belongs to is still pg's active query, and its results so
 * far are the messages that came before the error on the socket.
 */
export function watchForFatalEvidence(client: Client): void {
  const c = client as unknown as PgClientInternals;
  const connection = c.connection;
  if (typeof connection?.on !== 'function') return;
  let committedLocally = false;
  connection.on('notice', (msg) => {
    if (!committedLocally && saysCommittedLocally(msg)) committedLocally = true;
  });
  connection.on('errorMessage', (msg) => {
    const query = c._activeQuery;
    if (query === undefined || query === null || typeof msg !== 'object' || msg === null) return;
    const evidence: FatalEvidence = {
      text: typeof query.text === 'string' ? query.text : '',
      statusBefore: c._txStatus ?? null,
      completions: completionsOf(query),
      committedLocally,
    };
    Object.defineProperty(msg, FATAL_EVIDENCE, { value: Object.freeze(evidence), enumerable: false, configurable: true });
  });
}

/** CommandCompletes received so far: pg keeps one Result per completed statement (and one open). */
function completionsOf(query: PgQueryInternals): number {
  if (typeof query.completedStatements === 'number') return query.completedStatements;
  const results = Array.isArray(query._results) ? query._results as Array<{ command?: unknown }> : [query._result ?? {}];
  let n = 0;
  for (const r of results) if (r !== null && typeof r === 'object' && r.command !== null && r.command !== undefined) n += 1;
  return n;
}

/**
 * syncrep.c's warnings when a wait for a synchronous standby is cut short (terminated: 57P01,
 * cancelled: 57014) say the transaction "has already committed locally". The code is checked
 * as well as the text, so a server with translated messages is still recognised; a false alarm
 * only costs a retry that is not made.
 */
function saysCommittedLocally(msg: unknown): boolean {
  if (typeof msg !== 'object' || msg === null) return false;
  const m = msg as { code?: unknown; detail?: unknown; message?: unknown };
  if (m.code === '57P01' || m.code === '57014' || m.code === '57P02') return true;
  return [m.detail, m.message].some((s) => typeof s === 'string' && s.includes('committed locally'));
}

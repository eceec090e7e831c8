import {
  ERRNO_TABLE,
  PG_MESSAGE_TABLE,
  PGR_CODE_TABLE,
  SATURATED_TRAITS,
  SHUTDOWN_BEFORE_COMMIT,
  SQLSTATE_CLASS_TABLE,
  SQLSTATE_TABLE,
  UNKNOWN_FATAL,
  UNKNOWN_SERVER_ERROR,
  UNKNOWN_TRAITS,
  type FailureTraits,
} from './tables.ts';
import { classifyPoolerMessage } from './pooler.ts';
import { provenNoEffect } from './fatal-proof.ts';

/** The answer of `classify()`: the failure's traits, plus what identified it. */
export interface Classification extends FailureTraits {
  /** SQLSTATE, errno code or PGR_ code that identified the failure, if any. */
  readonly code: string | undefined;
  /** Where the answer came from, for tests and debugging. */
  readonly source: 'sqlstate' | 'pooler-message' | 'errno' | 'pg-message' | 'pgr' | 'none';
}

interface ErrorLike {
  code?: unknown;
  severity?: unknown;
  message?: unknown;
  errors?: unknown;
  cause?: unknown;
}

/**
 * Says what a failure means for a client, for any value pg, a socket, the server or this
 * library can throw. Pure: it reads only the error, so it is tested row by row with errors
 * captured from a real server.
 *
 * @example
 * classify(err).transient      // worth waiting for?
 * classify(err).effect         // 'none' → the statement certainly did not run
 */
export function classify(err: unknown): Classification {
  return classifyAt(err, 0);
}

function classifyAt(err: unknown, depth: number): Classification {
  if (typeof err !== 'object' || err === null) return result(UNKNOWN_TRAITS, undefined, 'none');
  const e = err as ErrorLike;
  const code = typeof e.code === 'string' ? e.code : undefined;

  if (code !== undefined && code.startsWith('PGR_')) {
    if (code === 'PGR_ACQUIRE_TIMEOUT' && (e as { saturated?: unknown }).saturated === true) return result(SATURATED_TRAITS, code, 'pgr');
    return result(PGR_CODE_TABLE.get(code) ?? UNKNOWN_TRAITS, code, 'pgr');
  }

  // A server error (pg's DatabaseError) always carries a severity; socket errors never do.
  if (typeof e.severity === 'string' && code !== undefined) {
    const fatal = e.severity === 'FATAL' || e.severity === 'PANIC';
    // PgBouncer raises all of its own errors as FATAL 08P01 (and relays a server's refusal of
    // its first login the same way): the message is what tells them apart.
    if (fatal && code === '08P01' && typeof e.message === 'string') {
      const pooler = classifyPoolerMessage(e.message);
      if (pooler !== undefined) return result(pooler, code, 'pooler-message');
    }
    const known = SQLSTATE_TABLE.get(code) ?? SQLSTATE_CLASS_TABLE.get(code.slice(0, 2));
    // A FATAL that came before any commit point of its statement: the session is gone, but the
    // statement certainly had no effect (fatal-proof.ts; docs/what-a-fatal-proves.md).
    if (fatal && provenNoEffect(err)) return result(SHUTDOWN_BEFORE_COMMIT, code, 'sqlstate');
    // A FATAL ends the session whatever its code says about the statement.
    if (known !== undefined && fatal && known.connectionUsable) return result(UNKNOWN_FATAL, code, 'sqlstate');
    if (known !== undefined) return result(known, code, 'sqlstate');
    return result(fatal ? UNKNOWN_FATAL : UNKNOWN_SERVER_ERROR, code, 'sqlstate');
  }

  if (code !== undefined) {
    const known = ERRNO_TABLE.get(code);
    if (known !== undefined) return result(known, code, 'errno');
  }

  if (typeof e.message === 'string') {
    for (const [prefix, known] of PG_MESSAGE_TABLE) {
      if (e.message.startsWith(prefix)) return result(known, code, 'pg-message');
    }
  }

  // Wrapped failures: Node's happy-eyeballs AggregateError, pg-pool's `cause` chains.
  if (depth < 4) {
    if (Array.isArray(e.errors) && e.errors.length > 0) return classifyAt(e.errors[0], depth + 1);
    if (e.cause !== undefined) return classifyAt(e.cause, depth + 1);
  }
  return result(UNKNOWN_TRAITS, code, 'none');
}

function result(traits: FailureTraits, code: string | undefined, source: Classification['source']): Classification {
  return { ...traits, code, source };
}

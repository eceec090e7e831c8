import { createHash } from 'node:crypto';

/**
 * What a statement returned, reduced to a short string that is equal exactly when the
 * application was given the same thing: the command tag, the row count, the fields (name and
 * type) and every row's values as pg parsed them. A replayed statement whose digest differs
 * returned something the application did not see the first time.
 *
 * Values are serialised with JSON, which is stable here because pg builds rows in field order;
 * Dates become ISO strings, Buffers their bytes, BigInts their decimal text. A value JSON cannot
 * serialise (a cyclic object from a custom type parser) gives `undefined`: not digestible, so the
 * transaction is not replayable.
 */
export function digestResult(result: unknown): string | undefined {
  // Most statements of a write transaction return no rows (BEGIN, INSERT, UPDATE): their tag
  // and count say everything, without serialising anything.
  const r = result as ResultLike | null;
  if (r !== null && typeof r === 'object' && !Array.isArray(r) && (r.rows?.length ?? 0) === 0 && (r.fields?.length ?? 0) === 0) {
    return `${String(r.command)} ${String(r.rowCount)}`;
  }
  try {
    const parts = Array.isArray(result) ? result.map(describeOne) : [describeOne(result)];
    return hash(JSON.stringify(parts, replacer));
  } catch {
    return undefined;
  }
}

/**
 * A server error, as the application saw it: SQLSTATE and message (a replayed statement must fail
 * the same way, e.g. the unique violation a savepoint was rolled back for).
 */
export function digestError(err: unknown): string {
  const e = err as { code?: unknown; message?: unknown };
  return `E:${String(e.code)}:${String(e.message)}`;
}

interface ResultLike {
  command?: unknown;
  rowCount?: unknown;
  fields?: { name?: unknown; dataTypeID?: unknown }[];
  rows?: unknown[];
}

function describeOne(r: unknown): unknown[] {
  const res = (r ?? {}) as ResultLike;
  const fields = Array.isArray(res.fields) ? res.fields.map((f) => [f.name, f.dataTypeID]) : [];
  return [res.command ?? null, res.rowCount ?? null, fields, res.rows ?? []];
}

function replacer(_key: string, value: unknown): unknown {
  if (typeof value === 'bigint') return `${value}n`;
  // Buffer's toJSON already ran ({ type: 'Buffer', data }); numbers that JSON would turn into
  // null (NaN, Infinity) keep their identity.
  if (typeof value === 'number' && !Number.isFinite(value)) return String(value);
  if (value === undefined) return '\u0000undefined';
  return value;
}

function hash(text: string): string {
  // Short texts are kept as they are (cheaper than hashing); longer ones become 20 bytes.
  if (text.length <= 40) return text;
  return createHash('sha1').update(text).digest('base64');
}

import { createHash } from 'node:crypto';

/**
 * What a statement returned, reduced to a short string that is equal exactly when the
 * application was given the same thing: the command tag, the row count, the fields (name and
 * type) and every row's values as pg parsed them. A replayed statement whose digest differs
 * returned something the application did not see the first time.
 *
 * Values are serialised by type, in field order (pg builds rows in field order): strings quoted,
 * numbers (NaN and ±Infinity included), booleans, BigInts, Dates by their time, Buffers by their
 * bytes, arrays item by item, anything else (json columns, a custom type parser's objects) as
 * JSON. A value JSON cannot serialise (a cyclic object) gives `undefined`: not digestible, so the
 * transaction is not replayable. Cost: about 0.1 µs a value, plus a SHA-1 of long results.
 */
export function digestResult(result: unknown): string | undefined {
  // Most statements of a write transaction return no rows (BEGIN, INSERT, UPDATE): their tag
  // and count say everything.
  const r = result as ResultLike | null;
  if (r !== null && typeof r === 'object' && !Array.isArray(r) && (r.rows?.length ?? 0) === 0 && (r.fields?.length ?? 0) === 0) {
    return `${String(r.command)} ${String(r.rowCount)}`;
  }
  try {
    let text = '';
    for (const one of Array.isArray(result) ? result : [result]) text += describe(one as ResultLike | null);
    return hash(text);
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

function describe(r: ResultLike | null): string {
  const res = r ?? {};
  let text = `{${String(res.command)} ${String(res.rowCount)}|`;
  for (const f of res.fields ?? []) text += `${JSON.stringify(f.name)}:${String(f.dataTypeID)},`;
  text += '|';
  for (const row of res.rows ?? []) {
    text += '(';
    // Object rows hold their values in field order, as array rows do.
    for (const v of Array.isArray(row) ? row : Object.values(row as object)) text += `${value(v)},`;
    text += ')';
  }
  return `${text}}`;
}

function value(v: unknown): string {
  switch (typeof v) {
    case 'string':
      return JSON.stringify(v);
    case 'number':
      return `#${v}`;
    case 'boolean':
      return v ? 'T' : 'F';
    case 'bigint':
      return `${v}n`;
    case 'undefined':
      return 'U';
    case 'object': {
      if (v === null) return 'N';
      if (v instanceof Date) return `D${v.getTime()}`;
      if (v instanceof Uint8Array) return `B${Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('base64')}`;
      if (Array.isArray(v)) {
        let text = '[';
        for (const item of v) text += `${value(item)},`;
        return `${text}]`;
      }
      return `J${JSON.stringify(v)}`;
    }
    default:
      throw new TypeError(`pg-resilient: a ${typeof v} in a row cannot be compared`);
  }
}

function hash(text: string): string {
  // Short texts are kept as they are (cheaper than hashing); longer ones become 20 bytes.
  if (text.length <= 40) return text;
  return createHash('sha1').update(text).digest('base64');
}

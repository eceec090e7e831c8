import { createHash, type Hash } from 'node:crypto';

/**
 * What a statement returned, reduced to a short string of bounded size that is equal exactly
 * when the application was given the same thing: the command tag, the row count, the fields
 * (name and type) and every row's values as pg parsed them. A replayed statement whose digest
 * differs returned something the application did not see the first time.
 *
 * Values are serialised by type, in field order (pg builds rows in field order): strings quoted,
 * numbers (NaN and ±Infinity included), booleans, BigInts, Dates by their time, Buffers by their
 * bytes, arrays item by item, anything else (json columns, a custom type parser's objects) as
 * JSON. The serialisation is streamed into a SHA-256 in chunks, so a large result is never held
 * twice: the digest is at most 44 characters (a result with no rows: its tag and count; a tiny
 * one: its serialisation; anything else: the base64 hash). A value JSON cannot serialise (a
 * cyclic object) gives `undefined`: not digestible, so the transaction is not replayable.
 */
export function digestResult(result: unknown): string | undefined {
  // Most statements of a write transaction return no rows (BEGIN, INSERT, UPDATE): their tag
  // and count say everything (a command tag is one or two words).
  const r = result as ResultLike | null;
  if (r !== null && typeof r === 'object' && !Array.isArray(r) && (r.rows?.length ?? 0) === 0 && (r.fields?.length ?? 0) === 0) {
    return `${String(r.command)} ${String(r.rowCount)}`.slice(0, MAX_PLAIN);
  }
  try {
    const out = new Digester();
    for (const one of Array.isArray(result) ? result : [result]) describe(out, one as ResultLike | null);
    return out.end();
  } catch {
    return undefined;
  }
}

/**
 * A server error, as the application saw it: SQLSTATE and message (a replayed statement must fail
 * the same way, e.g. the unique violation a savepoint was rolled back for). A long message (it
 * may quote a value) is hashed.
 */
export function digestError(err: unknown): string {
  const e = err as { code?: unknown; message?: unknown };
  const text = `E:${String(e.code)}:${String(e.message)}`;
  return text.length <= MAX_PLAIN ? text : `E:${createHash('sha256').update(text).digest('base64')}`;
}

/** Digests up to this length are kept as they are (cheaper than hashing, and as short as a hash). */
const MAX_PLAIN = 44;
/** Serialised text is hashed in chunks of about this many characters. */
const CHUNK = 16384;

/** The serialisation, hashed as it is written: memory stays one chunk (plus one value). */
class Digester {
  #text = '';
  #hash: Hash | undefined;

  write(s: string): void {
    this.#text += s;
    if (this.#text.length >= CHUNK) this.#flush();
  }

  bytes(b: Uint8Array): void {
    this.write(`B${b.byteLength}:`);
    this.#flush();
    this.#hash!.update(b);
  }

  end(): string {
    if (this.#hash === undefined && this.#text.length <= MAX_PLAIN) return this.#text;
    this.#flush();
    return this.#hash!.digest('base64');
  }

  #flush(): void {
    this.#hash ??= createHash('sha256');
    this.#hash.update(this.#text);
    this.#text = '';
  }
}

interface ResultLike {
  command?: unknown;
  rowCount?: unknown;
  fields?: { name?: unknown; dataTypeID?: unknown }[];
  rows?: unknown[];
}

function describe(out: Digester, r: ResultLike | null): void {
  const res = r ?? {};
  out.write(`{${String(res.command)} ${String(res.rowCount)}|`);
  for (const f of res.fields ?? []) out.write(`${JSON.stringify(f.name)}:${String(f.dataTypeID)},`);
  out.write('|');
  for (const row of res.rows ?? []) {
    out.write('(');
    // Object rows hold their values in field order, as array rows do.
    for (const v of Array.isArray(row) ? row : Object.values(row as object)) {
      value(out, v);
      out.write(',');
    }
    out.write(')');
  }
  out.write('}');
}

function value(out: Digester, v: unknown): void {
  switch (typeof v) {
    case 'string':
      return out.write(JSON.stringify(v));
    case 'number':
      return out.write(`#${v}`);
    case 'boolean':
      return out.write(v ? 'T' : 'F');
    case 'bigint':
      return out.write(`${v}n`);
    case 'undefined':
      return out.write('U');
    case 'object': {
      if (v === null) return out.write('N');
      if (v instanceof Date) return out.write(`D${v.getTime()}`);
      if (v instanceof Uint8Array) return out.bytes(v);
      if (Array.isArray(v)) {
        out.write('[');
        for (const item of v) {
          value(out, item);
          out.write(',');
        }
        return out.write(']');
      }
      const json = String(JSON.stringify(v));
      return out.write(`J${json.length}:${json}`);
    }
    default:
      throw new TypeError(`pg-resilient: a ${typeof v} in a row cannot be compared`);
  }
}

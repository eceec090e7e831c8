/**
 * A lexer for PostgreSQL's SQL that cuts a text where the server's own lexer (scan.l) does, so
 * the rules built on it (what is a read, what may be pipelined, what a statement does to its
 * session, where a COMMIT is) never take the inside of a literal or a comment for code, nor code
 * for the inside of a literal. It only finds token boundaries; it does not build a parse tree.
 *
 * What it follows from scan.l:
 * - whitespace is ASCII space, \t, \n, \r, \f, \v; `--` comments run to the end of the line;
 *   `/* … *\/` comments nest;
 * - identifiers start with a letter, `_` or any non-ASCII character and go on with those, digits
 *   and `$` (so `a$$b` is one identifier, not the start of a dollar quote); unquoted ones are
 *   folded to lower case (ASCII only, as keywords are ASCII);
 * - `"…"` quoted identifiers, `""` inside standing for one quote; `U&"…"` the same;
 * - `'…'` strings with `''` doubling, and no backslash escapes while standard_conforming_strings
 *   is on (the default since PostgreSQL 9.1): `'\'` is a whole literal;
 * - `E'…'` strings, where a backslash takes the character after it (`E'\''` is one quote);
 * - `B'…'`, `X'…'` (no escapes, no doubling), `N'…'` and `U&'…'` (doubling, no backslash escapes;
 *   `UESCAPE 'c'` after one is a word and a string, as the server's grammar reads it);
 * - a string goes on after a closing quote when only whitespace with a newline (and `--`
 *   comments) stands between it and the next quote (`'a'\n'b'` is one literal, in the same mode:
 *   an E string stays an E string);
 * - `$tag$ … $tag$` and `$$ … $$` dollar quotes (a tag is an identifier without `$`), ended by the
 *   first `$tag$`; `$1` is a parameter;
 * - an operator is cut before any `--` or `/*` in it (they start a comment).
 *
 * standard_conforming_strings off (a server configured so, or a session that SET it): every
 * `'…'` string then takes backslash escapes like an E string. `lex` reports whether a plain
 * string contained a backslash (`plainBackslash`); only then can the two settings cut a text
 * differently, and the rules judge such a text under both readings and keep the more cautious
 * answer. That is sound for either setting without knowing which connection the text will meet
 * (a pipelining or retry decision is made before that is known), and costs nothing for the texts
 * without a backslash in a string, nearly all of them.
 *
 * Text the server would reject (an unterminated literal, quoted identifier or comment, a
 * zero-length quoted identifier) is reported as `complete: false`; the rules then answer "no".
 */

export type TokenKind =
  /** An unquoted identifier or keyword; `value` is lower-cased. */
  | 'word'
  /** A quoted identifier (`"…"`, `U&"…"`); `value` is its name (doubled quotes undone). */
  | 'quoted'
  /** Any string literal ('…', E'…', B'…', X'…', N'…', U&'…', $tag$…$tag$). */
  | 'string'
  | 'number'
  /** `$1`, `$2`, … */
  | 'param'
  /** One character of punctuation or of an operator: ( ) [ ] , ; . : and + - * / < > = ~ ! @ # % ^ & | ` ? and any other. */
  | 'punct';

export interface Token {
  readonly kind: TokenKind;
  /** For words: lower-cased; quoted identifiers: the name; punctuation: the character; else the source text. */
  readonly value: string;
  readonly start: number;
  readonly end: number;
}

export interface LexResult {
  readonly tokens: readonly Token[];
  /** False when the server would reject the text's lexing (unterminated literal, identifier or comment). */
  readonly complete: boolean;
  /**
   * A plain `'…'` string held a backslash (set even when lexing stopped there): the other
   * setting of standard_conforming_strings may cut the text differently.
   */
  readonly plainBackslash: boolean;
}

export interface LexOptions {
  /** The server's standard_conforming_strings. Defaults to true (on), PostgreSQL's default. */
  readonly standardConformingStrings?: boolean;
}

const SPACE = new Set([0x20, 0x09, 0x0a, 0x0d, 0x0c, 0x0b]);
const isSpace = (c: number): boolean => SPACE.has(c);
const isIdentStart = (c: number): boolean => (c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a) || c === 0x5f || c >= 0x80;
const isDigit = (c: number): boolean => c >= 0x30 && c <= 0x39;
const isIdentCont = (c: number): boolean => isIdentStart(c) || isDigit(c) || c === 0x24;
const isDolqCont = (c: number): boolean => isIdentStart(c) || isDigit(c);

const QUOTE = 0x27;
const DQUOTE = 0x22;
const DOLLAR = 0x24;
const BACKSLASH = 0x5c;

/** How a quoted string is read: escapes (E''), doubling (most), or neither (B'', X''). */
type StringMode = 'plain' | 'escape' | 'bits';

/** Splits `text` into tokens as PostgreSQL's lexer would (see the module comment). */
export function lex(text: string, options: LexOptions = {}): LexResult {
  const scs = options.standardConformingStrings ?? true;
  const tokens: Token[] = [];
  const n = text.length;
  let i = 0;
  let plainBackslash = false;
  const push = (kind: TokenKind, value: string, start: number, end: number): void => {
    tokens.push({ kind, value, start, end });
  };
  const incomplete = (): LexResult => ({ tokens, complete: false, plainBackslash });

  while (i < n) {
    const c = text.charCodeAt(i);
    const next = i + 1 < n ? text.charCodeAt(i + 1) : -1;
    if (isSpace(c)) {
      i += 1;
      continue;
    }
    if (c === 0x2d && next === 0x2d) {
      i = lineEnd(text, i);
      continue;
    }
    if (c === 0x2f && next === 0x2a) {
      const end = blockCommentEnd(text, i);
      if (end < 0) return incomplete();
      i = end;
      continue;
    }
    if (isIdentStart(c)) {
      // A one-letter prefix glued to a quote starts a string (or U&"…" an identifier).
      const lower = c | 0x20;
      if (next === QUOTE && (lower === 0x65 || lower === 0x62 || lower === 0x78 || lower === 0x6e)) {
        // N'…' is the keyword NATIONAL CHARACTER (the word `n`) and then a plain string, as in scan.l.
        const national = lower === 0x6e;
        if (national) push('word', 'n', i, i + 1);
        const from = national ? i + 1 : i;
        const mode: StringMode = lower === 0x65 ? 'escape' : national ? (scs ? 'plain' : 'escape') : 'bits';
        const r = scanString(text, i + 1, mode);
        if (national && r.backslash) plainBackslash = true;
        if (r.end < 0) return incomplete();
        push('string', text.slice(from, r.end), from, r.end);
        i = r.end;
        continue;
      }
      if (lower === 0x75 && next === 0x26 && i + 2 < n) {
        const q = text.charCodeAt(i + 2);
        if (q === QUOTE) {
          const r = scanString(text, i + 2, 'plain');
          if (r.end < 0) return incomplete();
          push('string', text.slice(i, r.end), i, r.end);
          i = r.end;
          continue;
        }
        if (q === DQUOTE) {
          const r = scanQuoted(text, i + 2);
          if (r === undefined) return incomplete();
          push('quoted', r.name, i, r.end);
          i = r.end;
          continue;
        }
      }
      let j = i + 1;
      while (j < n && isIdentCont(text.charCodeAt(j))) j += 1;
      push('word', asciiLower(text.slice(i, j)), i, j);
      i = j;
      continue;
    }
    if (c === QUOTE) {
      const r = scanString(text, i, scs ? 'plain' : 'escape');
      if (r.backslash) plainBackslash = true;
      if (r.end < 0) return incomplete();
      push('string', text.slice(i, r.end), i, r.end);
      i = r.end;
      continue;
    }
    if (c === DQUOTE) {
      const r = scanQuoted(text, i);
      if (r === undefined) return incomplete();
      push('quoted', r.name, i, r.end);
      i = r.end;
      continue;
    }
    if (c === DOLLAR) {
      if (isDigit(next)) {
        let j = i + 1;
        while (j < n && isDigit(text.charCodeAt(j))) j += 1;
        push('param', text.slice(i, j), i, j);
        i = j;
        continue;
      }
      // $$ or $tag$ opens a dollar quote; `$tag` without the closing `$` is a lone `$`.
      let j = i + 1;
      if (j < n && isIdentStart(text.charCodeAt(j))) {
        j += 1;
        while (j < n && isDolqCont(text.charCodeAt(j))) j += 1;
      }
      if (j < n && text.charCodeAt(j) === DOLLAR) {
        const tag = text.slice(i, j + 1);
        const close = text.indexOf(tag, j + 1);
        if (close < 0) return incomplete();
        const end = close + tag.length;
        push('string', text.slice(i, end), i, end);
        i = end;
        continue;
      }
      push('punct', '$', i, i + 1);
      i += 1;
      continue;
    }
    if (isDigit(c) || (c === 0x2e && isDigit(next))) {
      const end = numberEnd(text, i);
      push('number', text.slice(i, end), i, end);
      i = end;
      continue;
    }
    // Everything else is one character: punctuation, or one character of an operator (an
    // operator's `--` or `/*` is caught above as a comment, which is where scan.l cuts it).
    push('punct', text[i]!, i, i + 1);
    i += 1;
  }
  return { tokens, complete: true, plainBackslash };
}

function asciiLower(s: string): string {
  // Keywords are ASCII; the server folds ASCII letters only (in multibyte encodings).
  return /[A-Z]/.test(s) ? s.replace(/[A-Z]+/g, (m) => m.toLowerCase()) : s;
}

function lineEnd(text: string, from: number): number {
  let i = from;
  while (i < text.length) {
    const c = text.charCodeAt(i);
    if (c === 0x0a || c === 0x0d) return i;
    i += 1;
  }
  return i;
}

/** The index after a nested block comment starting at `from`, or -1 if it never ends. */
function blockCommentEnd(text: string, from: number): number {
  let depth = 0;
  let i = from;
  while (i < text.length) {
    const c = text.charCodeAt(i);
    const next = i + 1 < text.length ? text.charCodeAt(i + 1) : -1;
    if (c === 0x2f && next === 0x2a) {
      depth += 1;
      i += 2;
    } else if (c === 0x2a && next === 0x2f) {
      depth -= 1;
      i += 2;
      if (depth === 0) return i;
    } else {
      i += 1;
    }
  }
  return -1;
}

/**
 * A string whose opening quote is at `quote`: the index after it (-1 if unterminated), and
 * whether a backslash stood in it. Goes on through `'…'\n'…'` continuations, in the same mode.
 */
function scanString(text: string, quote: number, mode: StringMode): { end: number; backslash: boolean } {
  const n = text.length;
  let i = quote + 1;
  let backslash = false;
  for (;;) {
    if (i >= n) return { end: -1, backslash };
    const c = text.charCodeAt(i);
    if (c === QUOTE) {
      if (mode !== 'bits' && i + 1 < n && text.charCodeAt(i + 1) === QUOTE) {
        i += 2;
        continue;
      }
      const after = continuation(text, i + 1);
      if (after < 0) return { end: i + 1, backslash };
      i = after + 1;
      continue;
    }
    if (c === BACKSLASH) {
      backslash = true;
      if (mode === 'escape') {
        if (i + 1 >= n) return { end: -1, backslash };
        i += 2;
        continue;
      }
    }
    i += 1;
  }
}

/**
 * scan.l's `quotecontinue`: from `from` (just after a closing quote), horizontal space or `--`
 * comments, a newline, then any whitespace or `--` comments ended by a newline, then a quote.
 * Returns that quote's index, or -1.
 */
function continuation(text: string, from: number): number {
  const n = text.length;
  let i = from;
  let newline = false;
  while (i < n) {
    const c = text.charCodeAt(i);
    if (c === 0x0a || c === 0x0d) {
      newline = true;
      i += 1;
    } else if (c === 0x20 || c === 0x09 || c === 0x0c || (newline && c === 0x0b)) {
      i += 1;
    } else if (c === 0x2d && i + 1 < n && text.charCodeAt(i + 1) === 0x2d) {
      const end = lineEnd(text, i);
      // After the newline, a comment only counts when a newline ends it.
      if (end >= n) return -1;
      i = end;
    } else {
      break;
    }
  }
  return newline && i < n && text.charCodeAt(i) === QUOTE ? i : -1;
}

/** A quoted identifier whose opening `"` is at `quote`: its name and end, or undefined (unterminated or empty). */
function scanQuoted(text: string, quote: number): { name: string; end: number } | undefined {
  let i = quote + 1;
  let name = '';
  for (;;) {
    const close = text.indexOf('"', i);
    if (close < 0) return undefined;
    name += text.slice(i, close);
    if (text.charCodeAt(close + 1) === DQUOTE) {
      name += '"';
      i = close + 2;
      continue;
    }
    return name === '' ? undefined : { name, end: close + 1 };
  }
}

/** A numeric literal (decimal, with fraction and exponent, or 0x/0o/0b, with `_` separators). */
const NUMBER = /0[xX][0-9A-Fa-f_]+|0[oO][0-7_]+|0[bB][01_]+|(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9][0-9_]*)(?:[eE][+-]?[0-9]+)?/y;

function numberEnd(text: string, from: number): number {
  // What follows a number (`1from`, an error since PostgreSQL 15, a number then a word before)
  // is lexed on its own: a word glued to a number is still seen.
  NUMBER.lastIndex = from;
  const m = NUMBER.exec(text);
  return m === null || m[0].length === 0 ? from + 1 : from + m[0].length;
}

/** The statements of a lexed text: its tokens cut at each `;` (empty statements left out). */
export function splitStatements(tokens: readonly Token[]): Token[][] {
  const out: Token[][] = [];
  let current: Token[] = [];
  for (const t of tokens) {
    if (t.kind === 'punct' && t.value === ';') {
      if (current.length > 0) out.push(current);
      current = [];
    } else {
      current.push(t);
    }
  }
  if (current.length > 0) out.push(current);
  return out;
}

/**
 * A statement's tokens written out for pattern rules: words lower-cased, every string as `''`,
 * every quoted identifier as `""`, tokens separated by one space. No comment or literal content
 * survives, so a pattern can only match code.
 */
export function skeleton(tokens: readonly Token[]): string {
  let out = '';
  for (const t of tokens) {
    const piece = t.kind === 'string' ? "''" : t.kind === 'quoted' ? '""' : t.value;
    out = out === '' ? piece : `${out} ${piece}`;
  }
  return out;
}

/**
 * The statements of `text` as skeletons, under both readings of plain strings when a backslash
 * makes them differ (standard_conforming_strings on, then off), or undefined when the server
 * would reject the text's lexing under either setting. For rules that look for a statement
 * anywhere in a text.
 */
export function statementSkeletons(text: string): string[] | undefined {
  const readings = underBothSettings(text, (tokens) => splitStatements(tokens).map(skeleton));
  return readings.length === 0 ? undefined : readings.flat();
}

/**
 * Judges `text` under each setting of standard_conforming_strings that could cut it differently
 * (only when a plain string holds a backslash; else once): `judge` gets the complete lexings,
 * and the verdicts are returned (none when the server rejects the text under both settings,
 * which then runs nothing).
 */
export function underBothSettings<T>(text: string, judge: (tokens: readonly Token[]) => T): T[] {
  const on = lex(text);
  const out: T[] = on.complete ? [judge(on.tokens)] : [];
  if (on.plainBackslash) {
    const off = lex(text, { standardConformingStrings: false });
    if (off.complete) out.push(judge(off.tokens));
  }
  return out;
}

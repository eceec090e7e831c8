import { test } from 'node:test';
import assert from 'node:assert/strict';
import { lex, skeleton, splitStatements, statementSkeletons, type Token } from '../../src/classify/sql-lexer.ts';

// Each row: a text and its tokens as the server's lexer (scan.l) cuts them, written
// w:word (lower-cased), q:quoted identifier (its name), s:string (its source), n:number,
// $:parameter, p:punctuation. `null`: the server rejects the text's lexing.
const show = (t: Token): string => {
  switch (t.kind) {
    case 'word': return `w:${t.value}`;
    case 'quoted': return `q:${t.value}`;
    case 'string': return `s:${t.value}`;
    case 'number': return `n:${t.value}`;
    case 'param': return `$:${t.value}`;
    default: return `p:${t.value}`;
  }
};

const ROWS: Array<[string, string[] | null]> = [
  ['SELECT 1', ['w:select', 'n:1']],
  ['select a,b FROM "T"', ['w:select', 'w:a', 'p:,', 'w:b', 'w:from', 'q:T']],
  // standard_conforming_strings on: no backslash escapes in plain strings.
  [String.raw`SELECT '\'`, ['w:select', String.raw`s:'\'`]],
  [String.raw`SELECT '\' AS a, '\'`, ['w:select', String.raw`s:'\'`, 'w:as', 'w:a', 'p:,', String.raw`s:'\'`]],
  [String.raw`WITH x AS (SELECT '\' AS a), y AS (INSERT INTO t VALUES (1) RETURNING '\') SELECT * FROM y`,
    ['w:with', 'w:x', 'w:as', 'p:(', 'w:select', String.raw`s:'\'`, 'w:as', 'w:a', 'p:)', 'p:,', 'w:y', 'w:as', 'p:(', 'w:insert', 'w:into', 'w:t', 'w:values', 'p:(', 'n:1', 'p:)', 'w:returning', String.raw`s:'\'`, 'p:)', 'w:select', 'p:*', 'w:from', 'w:y']],
  ["SELECT 'it''s'", ['w:select', "s:'it''s'"]],
  ["SELECT ''''", ['w:select', "s:''''"]],
  // E strings: a backslash takes the next character, doubling still works.
  [String.raw`SELECT E'\'' , e'a\\' x`, ['w:select', String.raw`s:E'\''`, 'p:,', String.raw`s:e'a\\'`, 'w:x']],
  [String.raw`SELECT E'\' ; DELETE FROM t; '`, ['w:select', String.raw`s:E'\' ; DELETE FROM t; '`]],
  [String.raw`SELECT E'\'`, null],
  // The prefix must be the whole word: `some'x'` is a word then a string.
  [String.raw`SELECT some'\'`, ['w:select', 'w:some', String.raw`s:'\'`]],
  ["SELECT B'0101', X'FF', N'ab''c'", ['w:select', "s:B'0101'", 'p:,', "s:X'FF'", 'p:,', 'w:n', "s:'ab''c'"]],
  // Bit strings take no doubling: B'0''1' is B'0' then '1'.
  ["SELECT B'0''1'", ['w:select', "s:B'0'", "s:'1'"]],
  // U& strings and identifiers, with UESCAPE as a word and a string.
  [String.raw`SELECT U&'d\0061t\+000061' , u&'x!0061' UESCAPE '!'`, ['w:select', String.raw`s:U&'d\0061t\+000061'`, 'p:,', "s:u&'x!0061'", 'w:uescape', "s:'!'"]],
  [String.raw`SELECT U&"d\0061t" FROM t`, ['w:select', String.raw`q:d\0061t`, 'w:from', 'w:t']],
  ['SELECT U & 1', ['w:select', 'w:u', 'p:&', 'n:1']],
  // Quoted identifiers: "" is a quote, keywords inside are names.
  ['SELECT "a""b", "delete" FROM "insert into"', ['w:select', 'q:a"b', 'p:,', 'q:delete', 'w:from', 'q:insert into']],
  ['SELECT ""', null],
  ['SELECT "abc', null],
  // Dollar quotes: $$, $tag$, the first matching close; $1 is a parameter; $ inside a word is the word's.
  ['SELECT $$a$b$$, $x$ $$ ; $y$ $x$, $1', ['w:select', 's:$$a$b$$', 'p:,', 's:$x$ $$ ; $y$ $x$', 'p:,', '$:$1']],
  ['SELECT a$$; DELETE FROM t; $$', null],
  ['SELECT a$$; DELETE FROM t; $$$$', ['w:select', 'w:a$$', 'p:;', 'w:delete', 'w:from', 'w:t', 'p:;', 's:$$$$']],
  ['SELECT $ab$x$ab', null],
  ['SELECT $1a', ['w:select', '$:$1', 'w:a']],
  ['SELECT $a', ['w:select', 'p:$', 'w:a']],
  ['SELECT $_1$x$_1$', ['w:select', 's:$_1$x$_1$']],
  // Comments: line, nested block, unterminated; an operator is cut before `--`.
  ['SELECT 1 -- ; DELETE\n, 2', ['w:select', 'n:1', 'p:,', 'n:2']],
  ['SELECT /* a /* b */ ; DELETE */ 1', ['w:select', 'n:1']],
  ['SELECT /* a /* b */ 1', null],
  ['SELECT 1 +-- x\n2', ['w:select', 'n:1', 'p:+', 'n:2']],
  ["SELECT '--' || '/*'", ['w:select', "s:'--'", 'p:|', 'p:|', "s:'/*'"]],
  ['SELECT 1 */ 2', ['w:select', 'n:1', 'p:*', 'p:/', 'n:2']],
  // A string goes on across whitespace with a newline, in its own mode.
  ["SELECT 'a'\n  'b'", ['w:select', "s:'a'\n  'b'"]],
  ["SELECT 'a' 'b'", ['w:select', "s:'a'", "s:'b'"]],
  ["SELECT 'a' -- c\n 'b'", ['w:select', "s:'a' -- c\n 'b'"]],
  [String.raw`SELECT E'a'` + "\n" + String.raw`'\' ; DELETE FROM t; '`, ['w:select', String.raw`s:E'a'` + '\n' + String.raw`'\' ; DELETE FROM t; '`]],
  ["SELECT 'a' /* c */\n'b'", ['w:select', "s:'a'", "s:'b'"]],
  // Numbers, and a word glued to one is still a word.
  ['SELECT 1.5e3, .5, 0x1F, 1_000, 1from', ['w:select', 'n:1.5e3', 'p:,', 'n:.5', 'p:,', 'n:0x1F', 'p:,', 'n:1_000', 'p:,', 'n:1', 'w:from']],
  // Non-ASCII characters are identifier characters (a no-break space does not separate words).
  ['SELECT\u00a0x, ünïcode', ['w:select\u00a0x', 'p:,', 'w:ünïcode']],
  ['SELECT x::varchar(2)', ['w:select', 'w:x', 'p::', 'p::', 'w:varchar', 'p:(', 'n:2', 'p:)']],
  ["SELECT 'unterminated", null],
  ['', []],
];

test('lex cuts texts where PostgreSQL does', () => {
  for (const [text, expected] of ROWS) {
    const r = lex(text);
    if (expected === null) assert.equal(r.complete, false, JSON.stringify(text));
    else {
      assert.equal(r.complete, true, JSON.stringify(text));
      assert.deepEqual(r.tokens.map(show), expected, JSON.stringify(text));
    }
  }
});

test('standard_conforming_strings off: plain strings take backslash escapes, and lex says when that matters', () => {
  const text = String.raw`SELECT '\' AS a, '\'`;
  assert.equal(lex(text).plainBackslash, true);
  assert.equal(lex('SELECT 1').plainBackslash, false);
  assert.equal(lex(String.raw`SELECT E'\n'`).plainBackslash, false);
  const off = lex(text, { standardConformingStrings: false });
  assert.deepEqual(off.tokens.map(show), ['w:select', String.raw`s:'\' AS a, '`, 'p:\\']);
  assert.equal(off.complete, false, 'the last quote opens a string that never ends');
  assert.deepEqual(lex(String.raw`SELECT 'a\'b'`, { standardConformingStrings: false }).tokens.map(show), ['w:select', String.raw`s:'a\'b'`]);
});

test('statements and skeletons: literals and comments never reach a pattern', () => {
  const tokens = lex("SET a = 'x;y'; /* ; */ SELECT set_config('a', $$)$$, false);;").tokens;
  const statements = splitStatements(tokens);
  assert.equal(statements.length, 2);
  assert.deepEqual(statements.map(skeleton), ["set a = ''", "select set_config ( '' , '' , false )"]);
  // Under both readings when a backslash makes them differ (off, `x'…'` is a hex string).
  assert.deepEqual(statementSkeletons(String.raw`SELECT '\' || 'x'; COMMIT; --'`), ["select '' | | ''", 'commit', "select '' ''"]);
  assert.equal(statementSkeletons("SELECT 'x"), undefined);
});

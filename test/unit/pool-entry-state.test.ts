// A connection's lifecycle has one owner: PoolEntry (src/pool/pool-entry.ts) holds its state and
// the reason it broke, and only its methods change them. These tests pin that (no other module
// of src/ assigns either) and the pure rules behind them (src/pool/entry-state.ts), row by row.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { nextState, retireReason, type EntryEvent, type EntryState, type RetireFacts, type RetireRules } from '../../src/pool/entry-state.ts';
import { ROOT, SRC, sourceFiles } from '../helpers/src-tree.ts';

const OWNER = path.join('src', 'pool', 'pool-entry.ts');

/**
 * An assignment to an entry's lifecycle (its state, why it broke, who ended it), or to the
 * fields they replaced (`broken`, `checkedOut`, `released`, `idle`, `closing`, `removed`):
 * `x.state = …`, `x.brokenBy ??= …`, `x.idle = …`, and so on (comparisons are not assignments).
 * A `#private` field is another matter: only its own class can write it (the breaker's
 * `#state`, a Session's `#released`), so it can never be an entry's.
 */
const LIFECYCLE_WRITE = /\.(?:state|brokenBy|endedBy|broken|checkedOut|released|idle|closing|removed)\s*(?:\?\?|\|\||&&)?=(?!=)/;
/** PoolEntry's own writes, to its private fields. */
const OWN_WRITE = /\.#(?:state|brokenBy|endedBy)\s*(?:\?\?)?=(?!=)/;

function writesIn(text: string, pattern = LIFECYCLE_WRITE): string[] {
  return text.split('\n').filter((line) => !/^\s*(\/\/|\*)/.test(line) && pattern.test(line)).map((l) => l.trim());
}

test('the pattern catches each way of writing the lifecycle, and nothing else', () => {
  const rows: Array<[string, boolean]> = [
    ['entry.state = \'idle\';', true],
    ['meta.broken ??= err;', true],
    ['if (meta.broken === undefined) meta.broken = err;', true],
    ['entry.brokenBy = new Error(\'x\');', true],
    ['e.endedBy ||= \'application-end\';', true],
    ['meta.checkedOut = true;', true],
    ['meta.idle=false;', true],
    ['this.#state = next;', false],
    ['meta.removed=true', true],
    ['if (entry.state === \'lent\') return;', false],
    ['const broken = meta.brokenBy !== undefined;', false],
    ['entry.move(\'take\');', false],
    ['const idle = entry.state !== \'lent\';', false],
    ['// meta.broken = err (a comment)', false],
  ];
  for (const [line, caught] of rows) assert.equal(writesIn(line).length > 0, caught, line);
});

test('only src/pool/pool-entry.ts writes an entry\'s state or why it broke', () => {
  const offenders: string[] = [];
  for (const file of sourceFiles()) {
    const rel = path.relative(ROOT, file);
    if (rel === OWNER) continue;
    for (const line of writesIn(readFileSync(file, 'utf8'))) offenders.push(`${rel}: ${line}`);
  }
  assert.deepEqual(offenders, []);
  // The owner writes them, through its private fields (else the scan would prove nothing).
  assert.ok(writesIn(readFileSync(path.join(ROOT, OWNER), 'utf8'), OWN_WRITE).length >= 3);
});

/** Calls of the entry's state-changing methods (`abandon`, the failure path's own, may come from anywhere). */
const MOVE_CALL = /\.(?:move|markBroken|markEndedByApplication|returned)\(/;
/** The bag (with its validation) and the failure path (the factory's listeners, failures.ts). */
const MOVERS = ['bag.ts', 'bags.ts', 'health.ts', 'failures.ts', 'connection-factory.ts', 'pool-entry.ts'].map((f) => path.join('src', 'pool', f));

test('only the bag and the failure path move an entry', () => {
  assert.equal(writesIn('entry.move(\'take\');', MOVE_CALL).length, 1);
  assert.equal(writesIn('meta.markBroken(err);', MOVE_CALL).length, 1);
  assert.equal(writesIn('meta.abandon(err);', MOVE_CALL).length, 0);
  const offenders: string[] = [];
  for (const file of sourceFiles()) {
    const rel = path.relative(ROOT, file);
    if (MOVERS.includes(rel)) continue;
    for (const line of writesIn(readFileSync(file, 'utf8'), MOVE_CALL)) offenders.push(`${rel}: ${line}`);
  }
  assert.deepEqual(offenders, []);
});

test('transitions: which event moves which state', () => {
  const rows: Array<[EntryState, EntryEvent, EntryState | undefined]> = [
    ['idle', 'take', 'busy'],
    ['busy', 'take', undefined],
    ['lent', 'take', undefined],
    ['busy', 'park', 'idle'],
    ['lent', 'park', 'idle'],
    ['idle', 'park', undefined],
    ['removed', 'park', undefined],
    ['busy', 'lend', 'lent'],
    ['idle', 'lend', undefined],
    ['lent', 'lend', undefined],
    ['lent', 'giveBack', 'busy'],
    ['busy', 'giveBack', undefined],
    ['busy', 'close', 'closing'],
    ['closing', 'close', undefined],
    ['removed', 'close', undefined],
    ['busy', 'remove', 'removed'],
    ['idle', 'remove', 'removed'],
    ['closing', 'remove', 'removed'],
    ['removed', 'remove', undefined],
  ];
  for (const [state, event, next] of rows) assert.equal(nextState(state, event), next, `${state} --${event}-->`);
});

const healthy: RetireFacts = { brokenBy: undefined, generation: 3, role: 'primary', purpose: 'default', expiresAt: 1000, uses: 0 };
const fits = { fits: (role: string, purpose: string) => (purpose === 'default' && role !== 'primary' ? 'no' as const : 'yes' as const) };
// The parts of the rule each site applies (as src/pool/health.ts, bags.ts, pipeline.ts and bag.ts make them).
const VALIDATE: RetireRules = { failed: true, roles: fits, lifetime: true, maxUses: 10 };
const RELEASE: RetireRules = { failed: true, roles: undefined, lifetime: true, maxUses: 10 };
const PIPELINE: RetireRules = { failed: true, roles: undefined, lifetime: true, maxUses: Infinity };
const AGE_ONLY: RetireRules = { failed: false, roles: undefined, lifetime: true, maxUses: Infinity };
const FAILED_ONLY: RetireRules = { failed: true, roles: undefined, lifetime: false, maxUses: Infinity };

test('retire rule: each site\'s part of it, in the order reasons are reported', () => {
  const broken = new Error('gone');
  const rows: Array<[string, Partial<RetireFacts>, number, RetireRules, string | undefined]> = [
    ['healthy', {}, 10, VALIDATE, undefined],
    ['broken', { brokenBy: broken }, 10, VALIDATE, 'broken'],
    ['broken and old: broken first', { brokenBy: broken, generation: 1 }, 10, VALIDATE, 'broken'],
    ['older generation', { generation: 2 }, 10, VALIDATE, 'failover'],
    ['standby for the default purpose', { role: 'standby' }, 10, VALIDATE, 'wrong-role'],
    ['role unknown: not asked', { role: undefined }, 10, VALIDATE, undefined],
    ['past its lifetime', { expiresAt: 10 }, 10, VALIDATE, 'lifetime'],
    ['just before its lifetime', { expiresAt: 11 }, 10, VALIDATE, undefined],
    ['used up', { uses: 10 }, 10, VALIDATE, 'max-uses'],
    ['old and used up: failover first', { generation: 2, uses: 10 }, 10, VALIDATE, 'failover'],
    ['release: no role check', { role: 'standby' }, 10, RELEASE, undefined],
    ['release: used up', { uses: 10 }, 10, RELEASE, 'max-uses'],
    ['pipelining: uses not counted', { uses: 10 }, 10, PIPELINE, undefined],
    ['pipelining: past its lifetime', { expiresAt: 5 }, 10, PIPELINE, 'lifetime'],
    ['idle timer: broken is left to validation', { brokenBy: broken }, 10, AGE_ONLY, undefined],
    ['idle timer: older generation left too', { generation: 1 }, 10, AGE_ONLY, undefined],
    ['idle timer: past its lifetime', { brokenBy: broken, expiresAt: 10 }, 10, AGE_ONLY, 'lifetime'],
    ['eviction: broken', { brokenBy: broken }, 10, FAILED_ONLY, 'broken'],
    ['eviction: older generation', { generation: 2 }, 10, FAILED_ONLY, 'failover'],
    ['eviction: age is not its business', { expiresAt: 0 }, 10, FAILED_ONLY, undefined],
  ];
  for (const [name, facts, now, rules, reason] of rows) {
    assert.equal(retireReason({ ...healthy, ...facts }, now, 3, rules), reason, name);
  }
});

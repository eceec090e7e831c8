import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  forkPointOf, forkVerdict, formatLsn, historyFileName, parseHistoryFile, parsePatroniHistory, parseTimelineHex,
  type ForkVerdict, type WalPosition,
} from '../../src/transactions/timeline.ts';
import { parseLsn } from '../../src/topology/standby-evidence.ts';

test('positions, timelines and history file names read as PostgreSQL writes them', () => {
  assert.equal(parseLsn('0/3000078'), 0x3000078n);
  assert.equal(parseLsn('16/B374D848'), (0x16n << 32n) | 0xb374d848n);
  for (const bad of ['', '0/', '/1', '0/3000078x', 'G/1', '123456789/0', null, undefined]) assert.equal(parseLsn(bad), undefined, String(bad));
  assert.equal(formatLsn(parseLsn('16/B374D848')!), '16/B374D848');
  assert.equal(parseTimelineHex('0000000A'), 10);
  for (const bad of ['00000000', '0000000', 'zzzzzzzz', null]) assert.equal(parseTimelineHex(bad), undefined, String(bad));
  assert.equal(historyFileName(10), '0000000A.history');
});

test('a history file and Patroni /history give the same switches; malformed entries are skipped', () => {
  const file = '1\t0/3000148\tno recovery target specified\n\n# comment\n2\t0/5000000\tbefore 2026-12-06\ngarbage\n';
  assert.deepEqual(parseHistoryFile(file), [{ timeline: 1, switchLsn: 0x3000148n }, { timeline: 2, switchLsn: 0x5000000n }]);
  const patroni = [[1, 50331976, 'no recovery target specified'], [2, 83886080, 'no recovery target specified', '2026-12-06T19:00:00+00:00', 'pg2'], ['x', 1], [3], 'nope'];
  assert.deepEqual(parsePatroniHistory(patroni), [{ timeline: 1, switchLsn: 50331976n }, { timeline: 2, switchLsn: 83886080n }]);
  assert.deepEqual(parsePatroniHistory({ not: 'an array' }), []);
  assert.equal(forkPointOf(parseHistoryFile(file), 2), 0x5000000n);
  assert.equal(forkPointOf(parseHistoryFile(file), 3), undefined);
});

test('the fork rule: ask only where the history holds the transaction, absent only where the fork precedes it', () => {
  const at: WalPosition = { lsn: '0/3000100', timeline: 1 };
  const rows: Array<[string, WalPosition | undefined, number | undefined, bigint | undefined, ForkVerdict]> = [
    ['same timeline: no fork since', at, 1, undefined, 'ask'],
    ['fork before the position: the commit record is after it', at, 2, 0x3000000n, 'absent'],
    ['fork exactly at the position', at, 2, 0x3000100n, 'absent'],
    ['fork after the position: the writes are on the new timeline', at, 2, 0x3000101n, 'ask'],
    ['fork point unknown', at, 2, undefined, 'unknown'],
    ['position never read', undefined, 2, 0x3000000n, 'unknown'],
    ['server timeline unknown', at, undefined, 0x3000000n, 'unknown'],
    ['a server behind the transaction', { lsn: '0/1', timeline: 3 }, 2, 0n, 'unknown'],
    ['malformed position', { lsn: 'nope', timeline: 1 }, 2, 0n, 'unknown'],
  ];
  for (const [name, position, current, fork, expected] of rows) assert.equal(forkVerdict(position, current, fork), expected, name);
});

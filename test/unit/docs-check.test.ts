// README.md and docs/ name exactly the options, events, channels, error codes and metrics the code
// has (test/helpers/docs-check.ts makes the lists from the code). The second half proves the check
// can fail: each kind of wrong or missing name, planted in a copy of the docs, is reported.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ErrorCodes, diagnosticsChannels } from '../../src/index.ts';
import { checkDocs, codeNames, readDocs, type CodeNames } from '../helpers/docs-check.ts';

const code = await codeNames();
const docs = readDocs();

/** The docs with one page changed by `edit`. */
function withPage(page: string, edit: (text: string) => string): Map<string, string> {
  const copy = new Map(docs);
  const text = copy.get(page);
  assert.ok(text !== undefined, `${page} exists`);
  const changed = edit(text);
  assert.notEqual(changed, text, `the edit of ${page} changed something`);
  copy.set(page, changed);
  return copy;
}

/** Replaces the one line that starts with `start`. */
function dropLine(start: string): (text: string) => string {
  return (text) => {
    const lines = text.split('\n');
    const i = lines.findIndex((l) => l.startsWith(start));
    assert.ok(i >= 0, `a line starting with ${start}`);
    lines.splice(i, 1);
    return lines.join('\n');
  };
}

function problemsMatching(problems: string[], pattern: RegExp): string[] {
  return problems.filter((p) => pattern.test(p));
}

describe('docs check', () => {
  test('the lists made from the code are the real ones, not empty', () => {
    for (const name of ['max', 'retry', 'retry.maxElapsedMs', 'patroni.urls', 'transactionReplay.maxBytes', 'pipelining.depth', 'failoverReads.maxStalenessMs']) {
      assert.ok(code.options.has(name), `option ${name}`);
    }
    assert.deepEqual([...code.errorCodes].sort(), Object.values(ErrorCodes).sort());
    for (const e of ['connect', 'error', 'retry', 'failover', 'standbyRead', 'connectionCreated', 'transactionReplay']) assert.ok(code.events.has(e), `event ${e}`);
    assert.ok(code.channels.has('pg-resilient:standbyRead'));
    assert.ok(code.promMetrics.has('pg_resilient_standby_reads_total'));
    assert.ok(code.otelMetrics.has('db.client.operation.duration'));
    assert.ok(code.otelMetrics.has('pg_resilient.standby_reads'));
    assert.deepEqual([...code.typedOptions.get('Per call')!].sort(), ['deadlineMs', 'durability', 'failoverReads', 'idempotent', 'label', 'readOnly', 'signal']);
    assert.ok(code.srcFiles.has('src/pool/pool.ts'));
    process.stdout.write(
      `# from the code: ${code.options.size} pool options, ${code.events.size} events, ${code.channels.size} channels, ` +
        `${code.errorCodes.size} error codes, ${code.promMetrics.size} Prometheus series, ${code.otelMetrics.size} OpenTelemetry instruments, ${code.srcFiles.size} source files\n`,
    );
  });

  test("PoolEventMap (but pg.Pool's five), the channels and the events emitted are the same list", () => {
    const pgPools = ['connect', 'acquire', 'release', 'remove', 'error'];
    for (const e of pgPools) assert.ok(code.typedEvents.has(e), `PoolEventMap has pg.Pool's ${e}`);
    const ours = [...code.typedEvents].filter((e) => !pgPools.includes(e)).sort();
    assert.deepEqual(ours, Object.keys(diagnosticsChannels).sort(), 'each of our events has a channel, each channel an event');
    for (const [event, channel] of Object.entries(diagnosticsChannels)) assert.equal(String(channel.name), `pg-resilient:${event}`);
    assert.deepEqual([...code.untypedEvents], [], 'every event published is declared in PoolEventMap');
    for (const e of ['callStart', 'transactionReplay']) assert.ok(ours.includes(e), e);
  });

  test('README.md and docs/ agree with the code', () => {
    assert.deepEqual(checkDocs(docs, code), []);
  });

  const planted: Array<[what: string, docs: () => Map<string, string>, expected: RegExp, codeOverride?: (c: CodeNames) => CodeNames]> = [
    ['an error code that does not exist, anywhere', () => withPage('docs/pgbouncer.md', (t) => `${t}\nSee \`PGR_NOT_A_CODE\`.\n`), /`PGR_NOT_A_CODE` is not an error code/],
    ['an error code missing from the README', () => withPage('README.md', dropLine('| `PGR_ABORTED`')), /error code `PGR_ABORTED` is missing/],
    ['an event the code does not emit', () => withPage('docs/observability.md', (t) => t.replace('| `connect` |', '| `fakeEvent` | x | x |\n| `connect` |')), /`fakeEvent` is not an event/],
    ['an event missing', () => withPage('docs/observability.md', dropLine('| `standbyRead`')), /an event `standbyRead` is missing/],
    ['a channel that does not exist', () => withPage('README.md', (t) => `${t}\n\`pg-resilient:fakeChannel\`\n`), /`pg-resilient:fakeChannel` is not a diagnostics channel/],
    ['a channel missing', () => withPage('docs/observability.md', (t) => t.replace('`pg-resilient:callEnd`,', '')), /a diagnostics channel `pg-resilient:callEnd` is missing/],
    ['a Prometheus series that does not exist', () => withPage('docs/failover-reads.md', (t) => `${t}\n\`pg_resilient_fake_total{x}\`\n`), /`pg_resilient_fake_total` is not a Prometheus series/],
    ['a Prometheus series missing', () => withPage('docs/observability.md', dropLine('| `pg_resilient_standby_reads_total`')), /a Prometheus series `pg_resilient_standby_reads_total` is missing/],
    ['an OpenTelemetry instrument that does not exist', () => withPage('docs/observability.md', (t) => t.replace('| `pg_resilient.retries` |', '| `pg_resilient.fake` | x | x | x | x |\n| `pg_resilient.retries` |')), /`pg_resilient.fake` is not an OpenTelemetry instrument/],
    ['an OpenTelemetry instrument missing', () => withPage('docs/observability.md', dropLine('| `db.client.connection.timeouts`')), /an OpenTelemetry instrument `db.client.connection.timeouts` is missing/],
    ['an option that does not exist', () => withPage('docs/options.md', (t) => t.replace('| `retry.maxAttempts` |', '| `retry.fakeOption` | 1 | x |\n| `retry.maxAttempts` |')), /`retry.fakeOption` is not a pool option/],
    ['an option missing', () => withPage('docs/options.md', dropLine('| `breaker.volumeThreshold`')), /pool option `breaker.volumeThreshold` is missing/],
    ['an option the code gained and the docs lack', () => docs, /pool option `newOption` is missing/, (c) => ({ ...c, options: new Set([...c.options, 'newOption']) })],
    ['a per-call option that does not exist', () => withPage('docs/options.md', (t) => t.replace('| `deadlineMs` |', '| `fakeCallOption` | x | x |\n| `deadlineMs` |')), /`fakeCallOption` is not an option of this call/],
    ['an option in the README table that does not exist', () => withPage('README.md', (t) => t.replace('| `maxWaitingClients` |', '| `fakeReadmeOption` | 1 | x |\n| `maxWaitingClients` |')), /README.md § Options: `fakeReadmeOption` is not an option/],
    ['a source file missing from the architecture page', () => withPage('docs/architecture.md', dropLine('| `src/pool/bag.ts`')), /source file `src\/pool\/bag.ts` is missing/],
    ['a path that does not exist', () => withPage('docs/testing.md', (t) => `${t}\n\`src/pool/no-such-file.ts\`\n`), /`src\/pool\/no-such-file.ts` does not exist/],
    ['a path into a folder of ours that does not exist, next to PostgreSQL\'s own paths', () => withPage('docs/what-a-fatal-proves.md', (t) => `${t}\n\`src/backend/tcop/postgres.c\`, \`src/include/access/xact.h\`, \`src/transactions/no-such-file.ts\`\n`), /`src\/transactions\/no-such-file.ts` does not exist/],
    ['a link to a page that does not exist', () => withPage('README.md', (t) => `${t}\n[gone](docs/gone.md)\n`), /link to docs\/gone.md: no such file/],
    ['a link to a heading that does not exist', () => withPage('docs/orms.md', (t) => `${t}\n[x](transactions.md#no-such-heading)\n`), /link to transactions.md#no-such-heading: no such heading/],
    ['a prepared-statement name that the cache cannot make', () => withPage('docs/pgbouncer.md', (t) => `${t}\n\`pgr_a\`\n`), /`pgr_a` is neither the prepared-statement prefix/],
  ];
  for (const [what, plant, expected, override] of planted) {
    test(`fails on ${what}`, () => {
      const problems = checkDocs(plant(), override === undefined ? code : override(code));
      assert.equal(problemsMatching(problems, expected).length, 1, `expected one problem matching ${expected}, got:\n${problems.join('\n')}`);
      assert.equal(problems.length, 1, `only that problem:\n${problems.join('\n')}`);
    });
  }
});

import assert from 'node:assert/strict';
import { describe } from 'node:test';
import { childScript, differential, runChild } from '../helpers/differential.ts';

// Behaviour only a whole process shows: does it exit when the pool is idle (allowExitOnIdle),
// and where does an exception thrown inside a user's callback go (issue #13, point 5).
const child = childScript(import.meta.url);

export function processCases(): void {
  describe('differential: the process around the pool', () => {
    differential('allowExitOnIdle: the process exits by itself once the pool is idle; without it, it stays', async (s) => {
      const exits = await runChild(s.kind, 'exit-on-idle', s.server, 3000, child);
      const stays = await runChild(s.kind, 'stay-without-allow-exit', s.server, 1500, child);
      console.log(`${s.label}: with allowExitOnIdle the process exited ${exits.msAfterFirstLine} ms after its query (code ${exits.code}); without, killed=${stays.killed} ${stays.msAfterFirstLine} ms after it`);
      return {
        withFlag: { queried: exits.lines[0]?.['queried'], exitedBySelf: !exits.killed && exits.code === 0, within2sOfItsQuery: (exits.msAfterFirstLine ?? Infinity) < 2000 },
        withoutFlag: { queried: stays.lines[0]?.['queried'], stillAlive1500msAfterItsQuery: stays.killed },
      };
    }, {
      concurrent: true,
      expectPg: (o) => {
        assert.deepEqual(o.withFlag, { queried: 1, exitedBySelf: true, within2sOfItsQuery: true });
        assert.deepEqual(o.withoutFlag, { queried: 1, stillAlive1500msAfterItsQuery: true });
      },
    });

    for (const scenario of ['throw-in-query-callback', 'throw-in-query-error-callback', 'throw-in-connect-callback', 'throw-in-end-callback']) {
      differential(`an exception thrown in a user callback is an uncaught exception (${scenario})`, async (s) => {
        const r = await runChild(s.kind, scenario, s.server, 3000, child);
        if (r.lines.length === 0) console.log(`${s.label} ${scenario}: no report; stderr: ${r.stderr.slice(0, 500)}`);
        return r.lines;
      }, {
      concurrent: true,
        expectPg: (lines) => assert.deepEqual(lines, [{ handler: 'uncaughtException', message: 'boom from a user callback' }]),
      });
    }
  });
}

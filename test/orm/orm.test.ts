// The ORM tier (issue #14): every popular ORM, wired the way its documentation wires a pg pool or
// driver module, reads by primary key and upserts from 8 concurrent loops through (1) every
// session terminated and (2) a fast restart, against a real PostgreSQL. Once on pg-resilient, once
// on raw pg as the control, each in a process of its own so a crash is seen as a crash.
//
// The claim: with pg-resilient no error reaches the application (outside ORM transactions; upserts
// run inside `pool.idempotent(fn)` where that API exists) and the process never crashes; the raw
// control fails in every ORM (errors or a crash), or this test proves nothing.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { startPgServer, type PgServer } from '../helpers/pg-server.ts';
import { FAULTS, formatLine, nodeAtLeast, prepareTables, runFault, type OrmCase, type PoolLine } from './harness.ts';

const ORMS: readonly OrmCase[] = [
  // Prisma through @prisma/adapter-pg's driver-adapter interface: see adapters/prisma.ts for why
  // there is no generated PrismaClient here.
  { name: 'prisma' },
  { name: 'typeorm' },
  { name: 'kysely' },
  { name: 'drizzle' },
  { name: 'sequelize' },
  { name: 'knex-driver' },
  { name: 'knex-pool' },
  { name: 'mikro-orm', minNode: [22, 17] },
];

describe('ORM tier: terminate-all and fast restart under 8 loops, pg-resilient vs raw pg', () => {
  let server: PgServer;
  const all: PoolLine[] = [];

  before(async () => {
    server = await startPgServer({ settings: { max_connections: 60 } });
    await prepareTables(server, ORMS.filter((o) => o.minNode === undefined || nodeAtLeast(o.minNode)));
  });

  after(async () => {
    console.log('# ORM tier summary (orm, pool, fault, requests, errors by kind, crashed)');
    for (const l of all) console.log(`# ${formatLine(l)}`);
    await server?.destroy();
  });

  for (const orm of ORMS) {
    const skip = orm.minNode !== undefined && !nodeAtLeast(orm.minNode)
      ? `${orm.name} needs Node >= ${orm.minNode.join('.')} (this is Node ${process.versions.node}); it runs in the Node 24 pass`
      : false;
    test(orm.name, { skip }, async () => {
      const lines: PoolLine[] = [];
      for (const fault of FAULTS) {
        const got = await runFault(server, orm.name, fault);
        for (const l of got) console.log(`# ${formatLine(l)}`);
        lines.push(...got);
      }
      all.push(...lines);

      const problems: string[] = [];
      for (const l of lines) {
        if (l.kind === 'resilient') {
          if (l.setupFailed !== undefined) problems.push(`${l.fault}: pg-resilient not in use: ${l.setupFailed}`);
          else if (l.crashed) problems.push(`${l.fault}: pg-resilient run crashed (${l.crash ?? '?'})`);
          else if (l.errorCount > 0) problems.push(`${l.fault}: ${l.errorCount} errors reached the application on pg-resilient`);
          else if (l.requests < 200 || l.okAfterLastError < 50) problems.push(`${l.fault}: pg-resilient run barely ran (${l.requests} requests)`);
        } else {
          if (l.setupFailed !== undefined) problems.push(`${l.fault}: raw control did not run: ${l.setupFailed}`);
          // The control must feel the fault, or the fault proved nothing.
          else if (!l.crashed && l.errorCount === 0) problems.push(`${l.fault}: the raw control saw no error: the fault did not hit`);
        }
      }
      assert.deepEqual(problems, [], problems.join('\n'));
    });
  }
});

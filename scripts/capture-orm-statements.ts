// Captures every statement text the ORMs of the ORM tier send (test/orm/adapters/*: set-up,
// a read by primary key, a missing row, an upsert that updates, one that inserts) through the
// protocol proxy, and writes them, deduplicated, to test/fixtures/orm-statements.jsonl (one JSON
// string per line) for the read rule's differential suite (test/unit/read-rule-differential.test.ts).
//
// Run with Node ≥ 22.17 (MikroORM 7) and type stripping, from the repository root:
//   node scripts/capture-orm-statements.ts
// It starts a throwaway PostgreSQL (test/helpers/pg-server.ts) on 127.0.0.1.
import { writeFileSync } from 'node:fs';
import { startPgServer } from '../test/helpers/pg-server.ts';
import { startProtocolProxy } from '../test/helpers/protocol-proxy.ts';
import { prepareTables, tableFor } from '../test/orm/harness.ts';
import type { OrmAdapter } from '../test/orm/adapter.ts';

const ORMS = ['prisma', 'typeorm', 'kysely', 'drizzle', 'sequelize', 'knex-driver', 'knex-pool', 'mikro-orm'];
const OUT = new URL('../test/fixtures/orm-statements.jsonl', import.meta.url).pathname;

const server = await startPgServer();
const proxy = await startProtocolProxy({ host: server.host, port: server.port });
const seen = new Set<string>();
const perOrm: string[] = [];
try {
  await prepareTables(server, ORMS.map((name) => ({ name })));
  for (const orm of ORMS) {
    const from = proxy.statements.length;
    const { adapter } = (await import(`../test/orm/adapters/${orm}.ts`)) as { adapter: OrmAdapter };
    const conn = { host: '127.0.0.1', port: proxy.port, user: server.user, password: server.password, database: server.database };
    const db = await adapter.setup({ kind: 'resilient', conn, table: tableFor(orm, 'resilient'), max: 2 });
    await db.read(1);
    await db.read(100_000);
    await db.upsert(1, 'one');
    await db.upsert(100_001, 'new');
    await db.close();
    const texts = proxy.statements.slice(from);
    let fresh = 0;
    for (const t of texts) {
      if (!seen.has(t)) {
        seen.add(t);
        fresh += 1;
      }
    }
    perOrm.push(`${orm}: ${texts.length} statements, ${fresh} new`);
  }
} finally {
  await proxy.close();
  await server.destroy();
}
const header = JSON.stringify(`-- captured by scripts/capture-orm-statements.ts on ${new Date().toISOString().slice(0, 10)}; ${perOrm.join('; ')}`);
writeFileSync(OUT, [header, ...[...seen].map((t) => JSON.stringify(t))].join('\n') + '\n');
console.log(perOrm.join('\n'));
console.log(`${seen.size} distinct statements written to ${OUT}`);

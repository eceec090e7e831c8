// What the overhead benchmark runs: the statements services run most (a primary-key lookup, a
// join with two parameters, a 100-row range read, an insert) and `SELECT 1` (the pure client
// cost), each written once for pg, postgres.js and pgbench.

export const ITEMS = 10_000;
export const CATEGORIES = 100;

export type Workload = 'select1' | 'pk' | 'join' | 'range' | 'insert';
export const WORKLOADS: readonly Workload[] = ['select1', 'pk', 'join', 'range', 'insert'];

export const WORKLOAD_LABEL: Record<Workload, string> = {
  select1: 'SELECT 1',
  pk: 'PK lookup',
  join: 'join, 2 params',
  range: 'range, 100 rows',
  insert: 'insert',
};

export const SCHEMA = `
  CREATE TABLE bench_categories (id integer PRIMARY KEY, name text NOT NULL);
  INSERT INTO bench_categories SELECT g, 'category ' || g FROM generate_series(1, ${CATEGORIES}) g;
  CREATE TABLE bench_items (id integer PRIMARY KEY, name text NOT NULL, price integer NOT NULL,
    category_id integer NOT NULL REFERENCES bench_categories (id));
  INSERT INTO bench_items SELECT g, 'item ' || g, g % 1000, g % ${CATEGORIES} + 1 FROM generate_series(1, ${ITEMS}) g;
  CREATE TABLE bench_events (id bigserial PRIMARY KEY, item_id integer NOT NULL, qty integer NOT NULL,
    at timestamptz NOT NULL DEFAULT now());
  ANALYZE bench_categories; ANALYZE bench_items;`;

/** Run between rounds so the insert workload starts every round from the same table. */
export const RESET = 'TRUNCATE bench_events';

/** pg's text and values for one call; `r` is a pseudo-random integer ≥ 0 drawn per call. */
export interface Statement {
  text: string;
  values(r: number): unknown[] | undefined;
}

export const STATEMENTS: Record<Workload, Statement> = {
  select1: { text: 'SELECT 1', values: () => undefined },
  pk: { text: 'SELECT id, name, price FROM bench_items WHERE id = $1', values: (r) => [1 + (r % ITEMS)] },
  join: {
    text: 'SELECT i.id, i.name, i.price, c.name AS category FROM bench_items i JOIN bench_categories c ON c.id = i.category_id WHERE i.id = $1 AND c.id = $2',
    values: (r) => {
      const id = 1 + (r % ITEMS);
      return [id, (id % CATEGORIES) + 1];
    },
  },
  range: {
    text: 'SELECT id, name, price FROM bench_items WHERE id >= $1 AND id < $2 ORDER BY id',
    values: (r) => {
      const lo = 1 + (r % (ITEMS - 100));
      return [lo, lo + 100];
    },
  },
  insert: { text: 'INSERT INTO bench_events (item_id, qty) VALUES ($1, $2)', values: (r) => [1 + (r % ITEMS), 1 + (r % 5)] },
};

/** The same statements as pgbench scripts (`:x` is a parameter with `-M prepared`, a literal with `-M simple`). */
export const PGBENCH_SCRIPTS: Record<Workload, string> = {
  select1: 'SELECT 1;\n',
  pk: `\\set id random(1, ${ITEMS})\nSELECT id, name, price FROM bench_items WHERE id = :id;\n`,
  join: `\\set id random(1, ${ITEMS})\n\\set cat :id % ${CATEGORIES} + 1\nSELECT i.id, i.name, i.price, c.name AS category FROM bench_items i JOIN bench_categories c ON c.id = i.category_id WHERE i.id = :id AND c.id = :cat;\n`,
  range: `\\set lo random(1, ${ITEMS - 100})\n\\set hi :lo + 100\nSELECT id, name, price FROM bench_items WHERE id >= :lo AND id < :hi ORDER BY id;\n`,
  insert: `\\set item random(1, ${ITEMS})\n\\set qty random(1, 5)\nINSERT INTO bench_events (item_id, qty) VALUES (:item, :qty);\n`,
};

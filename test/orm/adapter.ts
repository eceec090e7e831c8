// The contract between the ORM tier's harness and one ORM: wire it the way its documentation wires
// a pg pool or driver module, then read a row by primary key and upsert one. Each ORM lives in
// test/orm/adapters/<name>.ts and is loaded only by the child process that runs it.
import type { EventEmitter } from 'node:events';
import pg from 'pg';
import { Pool } from '../../src/index.ts';

/** `resilient`: pg-resilient's Pool or `pg-resilient/pg`; `raw`: pg.Pool or pg itself, the control. */
export type PoolKind = 'resilient' | 'raw';

export interface Conn {
  host: string;
  port: number;
  user: string;
  password: string;
  database: string;
}

export interface OrmSetup {
  kind: PoolKind;
  conn: Conn;
  /** A table of its own: `(id int PRIMARY KEY, name text NOT NULL)`, rows 1..ROWS present. */
  table: string;
  /** Connections in the pool (the ORM's pool option where the ORM owns the pool). */
  max: number;
  /**
   * pg-resilient options beyond the connection (the cluster tier's `retry` deadline, which must
   * outlast a failover), for the `resilient` kind only; adapters that hand pool options to the
   * ORM pass them where its documentation puts pool options.
   */
  poolOptions?: Record<string, unknown>;
}

export interface OrmDb {
  /** The row with this primary key, or undefined. */
  read(id: number): Promise<{ id: number; name: string } | undefined>;
  /** `INSERT … ON CONFLICT (id) DO UPDATE SET name = …` as the ORM writes it. */
  upsert(id: number, name: string): Promise<void>;
  /**
   * The pg-resilient Pool the ORM runs on, when there is one the application can reach, so the
   * harness can put upserts in `pool.idempotent(fn)`. Undefined where the ORM only takes a Client
   * class (Sequelize, Knex's own pool) or in the raw control.
   */
  pool?: unknown;
  close(): Promise<void>;
}

export interface OrmAdapter {
  setup(s: OrmSetup): Promise<OrmDb>;
}

/** Rows seeded in every table; reads and upserts pick ids in 1..ROWS. */
export const ROWS = 200;

export class NotWiredError extends Error {
  override name = 'NotWiredError';
}

/**
 * The pool an application hands its ORM: pg-resilient's, or pg.Pool for the control. Both get the
 * 'error' listener node-postgres's documentation asks for (without it, a killed idle client
 * crashes the process), so the two wirings differ by the class only.
 */
export function makePool(kind: PoolKind, conn: Conn, max: number, poolOptions?: Record<string, unknown>): Pool | pg.Pool {
  const pool = kind === 'resilient' ? new Pool({ ...poolOptions, ...conn, max }) : new pg.Pool({ ...conn, max });
  (pool as EventEmitter).on('error', () => undefined);
  return pool;
}

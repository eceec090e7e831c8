/**
 * `pg-resilient/pg`: a module shaped like `pg` itself, for libraries that take the driver module
 * rather than a pool: TypeORM's `driver`, Sequelize's `dialectModule`, Knex's pg client
 * (`_driver()`). It exports what `pg` exports (default export and named), with pg-resilient's
 * `Pool` in place of pg's.
 *
 * @example
 * import pgResilient from 'pg-resilient/pg';
 * new DataSource({ type: 'postgres', driver: pgResilient, host, username, password, database });
 * new Sequelize({ dialect: 'postgres', dialectModule: pgResilient, host, username, password, database });
 */
import pg from 'pg';
import { Pool } from './index.ts';

// The standalone connection libraries build with `new Client(config)` (Sequelize, Knex's own pool).
// For now it is pg's own Client: nothing of pg-resilient protects those libraries yet. The resilient
// standalone session replaces it here, on this one line.
const Client: typeof pg.Client = pg.Client;

// Everything else is pg's own object, not a copy: TypeORM sets `defaults.parseInt8` and Sequelize
// registers parsers through `types`, and both must reach the pg Clients our Pool opens.
const Query = pg.Query;
const types = pg.types;
const defaults = pg.defaults;
const Connection = pg.Connection;
const DatabaseError = pg.DatabaseError;
const TypeOverrides = pg.TypeOverrides;
const Result = pg.Result;
const escapeIdentifier = pg.escapeIdentifier;
const escapeLiteral = pg.escapeLiteral;
// pg-native would bypass everything here; as pg does when pg-native is not installed, `native` is
// null, so TypeORM (which switches to `driver.native` when it finds pg-native) stays on this module.
const native = null;

/** pg's default export, with pg-resilient's Pool. */
const pgResilient = {
  Client,
  Pool,
  Query,
  types,
  defaults,
  Connection,
  DatabaseError,
  TypeOverrides,
  Result,
  escapeIdentifier,
  escapeLiteral,
  native,
  // Not in @types/pg but on pg's runtime object (pg's own helpers: prepareValue, normalizeQueryConfig…).
  utils: (pg as unknown as { utils: unknown }).utils,
};

export default pgResilient;
export {
  Client,
  Pool,
  Query,
  types,
  defaults,
  Connection,
  DatabaseError,
  TypeOverrides,
  Result,
  escapeIdentifier,
  escapeLiteral,
  native,
};
export type {
  ClientConfig,
  ConnectionConfig,
  PoolConfig,
  PoolClient,
  QueryConfig,
  QueryArrayConfig,
  QueryResult,
  QueryArrayResult,
  QueryResultRow,
  FieldDef,
  Notification,
  Submittable,
  CustomTypesConfig,
} from 'pg';

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
// Types through a namespace import: the emitted declarations then read the same under `import`
// and `require`, with or without esModuleInterop (@types/pg has no default export for CommonJS).
import type * as PgTypes from 'pg';
import { Pool, idempotent } from './index.ts';
import { Client as ResilientClient } from './pool/standalone.ts';

// The standalone connection libraries build with `new Client(config)` (Sequelize, Knex's own pool):
// one resilient Session standing alone (src/pool/standalone.ts), typed as pg's Client for them.
const Client = ResilientClient as unknown as typeof PgTypes.Client;

// Everything else is pg's own object, not a copy: TypeORM sets `defaults.parseInt8` and Sequelize
// registers parsers through `types`, and both must reach the pg Clients our Pool opens.
// (Annotated, so the emitted declarations name `pg` rather than its dependency pg-types.)
const Query: typeof PgTypes.Query = pg.Query;
const types: typeof PgTypes.types = pg.types;
const defaults: typeof PgTypes.defaults = pg.defaults;
const Connection: typeof PgTypes.Connection = pg.Connection;
const DatabaseError: typeof PgTypes.DatabaseError = pg.DatabaseError;
const TypeOverrides: typeof PgTypes.TypeOverrides = pg.TypeOverrides;
const Result: typeof PgTypes.Result = pg.Result;
const escapeIdentifier: typeof PgTypes.escapeIdentifier = pg.escapeIdentifier;
const escapeLiteral: typeof PgTypes.escapeLiteral = pg.escapeLiteral;
// pg-native would bypass everything here; as pg does when pg-native is not installed, `native` is
// null, so TypeORM (which switches to `driver.native` when it finds pg-native) stays on this module.
const native = null;

/** The shape of pg's default export, with pg-resilient's Pool. */
export interface PgModule {
  Client: typeof PgTypes.Client;
  Pool: typeof Pool;
  Query: typeof PgTypes.Query;
  types: typeof PgTypes.types;
  defaults: typeof PgTypes.defaults;
  Connection: typeof PgTypes.Connection;
  DatabaseError: typeof PgTypes.DatabaseError;
  TypeOverrides: typeof PgTypes.TypeOverrides;
  Result: typeof PgTypes.Result;
  escapeIdentifier: typeof PgTypes.escapeIdentifier;
  escapeLiteral: typeof PgTypes.escapeLiteral;
  native: null;
  utils: unknown;
}

/** pg's default export, with pg-resilient's Pool. */
const pgResilient: PgModule = {
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
  idempotent,
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

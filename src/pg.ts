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
/** A resilient standalone connection, typed as pg's `Client` (for `new Client(config)` callers). */
const Client = ResilientClient as unknown as typeof PgTypes.Client;

// Everything else is pg's own object, not a copy: TypeORM sets `defaults.parseInt8` and Sequelize
// registers parsers through `types`, and both must reach the pg Clients our Pool opens.
// (Annotated, so the emitted declarations name `pg` rather than its dependency pg-types.)
/** pg's `Query`. */
const Query: typeof PgTypes.Query = pg.Query;
/** pg's type parsers (`types.setTypeParser`), shared with the Clients our Pool opens. */
const types: typeof PgTypes.types = pg.types;
/** pg's defaults (`defaults.parseInt8`…), shared likewise. */
const defaults: typeof PgTypes.defaults = pg.defaults;
/** pg's `Connection`. */
const Connection: typeof PgTypes.Connection = pg.Connection;
/** pg's `DatabaseError`: server errors are instances of it. */
const DatabaseError: typeof PgTypes.DatabaseError = pg.DatabaseError;
/** pg's `TypeOverrides`. */
const TypeOverrides: typeof PgTypes.TypeOverrides = pg.TypeOverrides;
/** pg's `Result`. */
const Result: typeof PgTypes.Result = pg.Result;
/** pg's `escapeIdentifier`. */
const escapeIdentifier: typeof PgTypes.escapeIdentifier = pg.escapeIdentifier;
/** pg's `escapeLiteral`. */
const escapeLiteral: typeof PgTypes.escapeLiteral = pg.escapeLiteral;
// pg-native would bypass everything here; as pg does when pg-native is not installed, `native` is
// null, so TypeORM (which switches to `driver.native` when it finds pg-native) stays on this module.
/** Always null: pg-native would bypass the resilient pool. */
const native = null;

/** The shape of pg's default export, with pg-resilient's Pool. */
export interface PgModule {
  /**
   * A resilient standalone connection, typed as pg's `Client` (for `new Client(config)` callers).
   */
  Client: typeof PgTypes.Client;
  /** pg-resilient's `Pool`. */
  Pool: typeof Pool;
  /** pg's `Query`. */
  Query: typeof PgTypes.Query;
  /** pg's type parsers (`types.setTypeParser`), shared with the Clients our Pool opens. */
  types: typeof PgTypes.types;
  /** pg's defaults (`defaults.parseInt8`…), shared likewise. */
  defaults: typeof PgTypes.defaults;
  /** pg's `Connection`. */
  Connection: typeof PgTypes.Connection;
  /** pg's `DatabaseError`: server errors are instances of it. */
  DatabaseError: typeof PgTypes.DatabaseError;
  /** pg's `TypeOverrides`. */
  TypeOverrides: typeof PgTypes.TypeOverrides;
  /** pg's `Result`. */
  Result: typeof PgTypes.Result;
  /** pg's `escapeIdentifier`. */
  escapeIdentifier: typeof PgTypes.escapeIdentifier;
  /** pg's `escapeLiteral`. */
  escapeLiteral: typeof PgTypes.escapeLiteral;
  /** Always null: pg-native would bypass the resilient pool. */
  native: null;
  /** pg's runtime helpers (not typed by @types/pg). */
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

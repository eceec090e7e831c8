/**
 * pg.Client's public data properties, on the Session `pool.connect()` lends (issue 28).
 *
 * Libraries read them off a checked-out client: `binary` and `pipeline` (what the pool's
 * options gave each client), `processID` and `secretKey` (cancel requests), `connectionParameters`,
 * `ssl`, `readyForQuery`, and the few fields pg keeps "private" that libraries still read
 * (Sequelize validates a connection by `_ending`). Each reads through to the physical client
 * under the session now, so after a swap it describes the new connection, as a pg.Client
 * describes its own. Read-only: writing them would change the physical client behind the pool.
 *
 * The list follows pg 8.23.1's Client constructor (`lib/client.js`); a property pg adds later
 * reads as `undefined` until it is listed here. All are accessors on the prototype, so none
 * shows in `Object.keys`, JSON or `util.inspect` of a session: the password (non-enumerable on
 * pg's Client) is among them and can be read, never enumerated.
 */
export const CLIENT_PROPERTIES = [
  'binary', 'pipeline', 'ssl', 'sslNegotiation', 'host', 'port', 'database', 'user', 'password', 'replication',
  'connectionParameters', 'processID', 'secretKey', 'readyForQuery', 'hasExecuted', 'enableChannelBinding',
  'scramMaxIterations', 'connection',
  // Not documented by pg, read by libraries all the same.
  '_ending', '_ended', '_connecting', '_connected', '_queryable',
] as const;

/** The surface's TypeScript shape (merged into the Session class). */
export interface ClientProperties {
  readonly binary: boolean;
  readonly pipeline: boolean;
  readonly ssl: unknown;
  readonly sslNegotiation: string;
  readonly host: string;
  readonly port: number;
  readonly database: string | undefined;
  readonly user: string | undefined;
  readonly password: unknown;
  readonly replication: unknown;
  readonly connectionParameters: unknown;
  readonly processID: number | null;
  readonly secretKey: number | null;
  readonly readyForQuery: boolean;
  readonly hasExecuted: boolean | undefined;
  readonly enableChannelBinding: boolean;
  readonly scramMaxIterations: number;
  /** pg's Connection of the current physical client (libraries listen for parameterStatus on it). */
  readonly connection: unknown;
  readonly _ending: boolean;
  readonly _ended: boolean;
  readonly _connecting: boolean;
  readonly _connected: boolean;
  readonly _queryable: boolean;
}

/**
 * Defines the read-through accessors on `prototype`; `physical(self)` is the client under a
 * session now. Non-enumerable and read-only (an assignment throws in strict mode, as for any
 * getter without a setter).
 */
export function defineClientProperties(prototype: object, physical: (self: object) => object): void {
  for (const name of CLIENT_PROPERTIES) {
    Object.defineProperty(prototype, name, {
      configurable: true,
      enumerable: false,
      get(this: object): unknown {
        return (physical(this) as Record<string, unknown>)[name];
      },
    });
  }
}

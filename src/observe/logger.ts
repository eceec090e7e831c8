/** pino-style logger. Every call gets a plain object of fields and a message; never credentials. */
export interface Logger {
  /** Routine detail: a connect that failed, a client moved to a new connection. */
  debug(fields: object, message: string): void;
  /** A notable change: a new Patroni leader, an idle connection closed by the server. */
  info(fields: object, message: string): void;
  /** Worth a look: a COMMIT resolved after a lost connection, a replayed transaction, a failover report. */
  warn(fields: object, message: string): void;
  /** A failure outside the pool's own work, e.g. an event listener that threw. */
  error(fields: object, message: string): void;
}

const noop = (): void => undefined;

/** The default: says nothing. */
export const silentLogger: Logger = Object.freeze({ debug: noop, info: noop, warn: noop, error: noop });

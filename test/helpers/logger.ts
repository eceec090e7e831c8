import type { Logger } from '../../src/index.ts';

/** One call the logger received. */
export interface LogCall {
  level: keyof Logger;
  fields: object;
  message: string;
}

/** A pino-style logger that records every call, for tests that inspect what was logged. */
export function capturingLogger(calls: LogCall[]): Logger {
  const at = (level: keyof Logger) => (fields: object, message: string): void => {
    calls.push({ level, fields, message });
  };
  return { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
}

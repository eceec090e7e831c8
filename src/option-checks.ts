import { invalidOption } from './errors.ts';
import type { Logger } from './observe/logger.ts';

// The checks every option goes through (its defaults and meaning stay in src/options.ts): each
// names the option it refuses and what it got (strings cut at 40 characters).

export function functionOption(name: string, value: unknown): ((...args: never[]) => unknown) | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'function') throw invalidOption(name, `expected a function, got ${describe(value)}`);
  return value as (...args: never[]) => unknown;
}

/** pg-pool's `log(message, ...details)`: our debug and above go to it, as pg-pool's own messages do. */
export function logToFunction(log: (...args: unknown[]) => void): Logger {
  const write = (fields: object, message: string): void => log(message, fields);
  return { debug: write, info: write, warn: write, error: write };
}

export function objectOption(name: string, value: unknown): void {
  if (value !== undefined && (typeof value !== 'object' || value === null || Array.isArray(value))) {
    throw invalidOption(name, `expected an object, got ${describe(value)}`);
  }
}

export function number(name: string, value: unknown, fallback: number, min: number, max = Infinity): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || Number.isNaN(value)) throw invalidOption(name, `expected a number, got ${describe(value)}`);
  if (value < min || value > max) {
    throw invalidOption(name, `expected a number in [${min}, ${max}], got ${value}`);
  }
  return value;
}

/**
 * The longest delay Node's timers take (2³¹−1 ms, about 24.8 days): a longer one, or Infinity,
 * fires at once (with a TimeoutOverflowWarning), which would turn "wait very long" into "don't
 * wait at all".
 */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * A time option: a finite number of milliseconds (or seconds, `unitMs` 1000) in
 * [min, 2³¹−1 ms]. Infinity, NaN and anything longer are refused, naming the option.
 */
export function duration(name: string, value: unknown, fallback: number, min: number, unitMs = 1): number {
  if (value === undefined) return fallback;
  const unit = unitMs === 1000 ? 'seconds' : 'milliseconds';
  const max = Math.floor(MAX_TIMER_MS / unitMs);
  if (typeof value !== 'number' || !Number.isFinite(value)) {
    throw invalidOption(name, `expected a finite number of ${unit}, got ${describe(value)}`);
  }
  if (value < min || value > max) {
    throw invalidOption(name, `expected a number of ${unit} in [${min}, ${max}] (a longer timer fires at once), got ${value}`);
  }
  return value;
}

export function integer(name: string, value: unknown, fallback: number, min: number, max = Infinity): number {
  const n = number(name, value, fallback, min, max);
  if (!Number.isInteger(n)) throw invalidOption(name, `expected an integer, got ${n}`);
  return n;
}

export function boolean(name: string, value: unknown, fallback: boolean): boolean {
  if (value === undefined) return fallback;
  if (typeof value !== 'boolean') throw invalidOption(name, `expected true or false, got ${describe(value)}`);
  return value;
}

export function describe(value: unknown): string {
  if (value === null) return 'null';
  if (typeof value === 'string') return `the string ${JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value)}`;
  return typeof value === 'object' ? (Array.isArray(value) ? 'an array' : 'an object') : `${typeof value} ${String(value)}`;
}

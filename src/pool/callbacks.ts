/**
 * Calls a user's callback outside the promise chain, so that an exception it throws is an
 * uncaught exception (as with pg and any callback API), not an unhandled rejection. `noError`
 * is what the callback gets as its first argument on success: pg.Pool passes `undefined`, a pg
 * Client `null`.
 */
export function deliver<T>(promise: Promise<T>, callback: (err: Error | undefined, value: T) => void): void;
export function deliver<T>(promise: Promise<T>, callback: (err: Error | null, value: T) => void, noError: null): void;
export function deliver<T>(promise: Promise<T>, callback: (err: never, value: T) => void, noError?: null): void {
  promise.then(
    (value) => process.nextTick(callback, noError, value),
    (err: Error) => process.nextTick(callback, err, undefined as unknown as T),
  );
}

import type { Clock, Random } from './clock.ts';

/**
 * The pool's warm-up of `min` connections, paced (issue #18): after a failover every pod of a
 * fleet refills at the same moment, so each one opens its reserve one connection at a time,
 * after a jittered delay, instead of `min` at once on a server that was just promoted.
 */

export interface WarmUpPlan {
  /** Connections to open. */
  readonly count: number;
  /** Opens one connection (through the gate, as any other); resolves true when it opened. */
  readonly open: () => Promise<boolean>;
  readonly clock: Clock;
  readonly random: Random;
  /**
   * Opens in flight at once. Defaults to 1: warm-up then never holds more than one place in
   * the gate's line, so a caller who needs a connection now waits behind at most one
   * background attempt.
   */
  readonly concurrency?: number;
  /**
   * Each open starts after a delay uniform in [0, spreadMs). Defaults to 250 ms: every pod of a
   * fleet sees the same failover at the same moment, and the jitter spreads their refills
   * instead of sending them to the new primary in one wave; the reserve is only for later
   * calls, so a quarter-second costs nothing a caller waits for.
   */
  readonly spreadMs?: number;
  /** Ends the warm-up (the pool is ending). */
  readonly signal?: AbortSignal;
}

export const WARM_UP_DEFAULTS = Object.freeze({ concurrency: 1, spreadMs: 250 });

export interface WarmUpResult {
  readonly opened: number;
  readonly failed: number;
  /** 'done': all opened; 'failure': stopped at the first failed open; 'aborted': the signal fired. */
  readonly stoppedBy: 'done' | 'failure' | 'aborted';
}

/**
 * Refills the pool's minimum without opening it all at once: at most `concurrency` opens in
 * flight, each after a jittered delay. Stops at the first failure (the host is in backoff
 * then; the caller runs the warm-up again later) or when `signal` fires. Its timers are
 * background timers: a warm-up alone does not keep the process alive.
 */
export async function paceWarmUp(plan: WarmUpPlan): Promise<WarmUpResult> {
  const concurrency = plan.concurrency ?? WARM_UP_DEFAULTS.concurrency;
  const spreadMs = plan.spreadMs ?? WARM_UP_DEFAULTS.spreadMs;
  let started = 0;
  let opened = 0;
  let failed = 0;
  let stoppedBy: WarmUpResult['stoppedBy'] = 'done';
  const pause = (ms: number): Promise<boolean> => new Promise((resolve) => {
    const signal = plan.signal;
    if (signal?.aborted === true) return resolve(false);
    const onAbort = (): void => {
      timer.cancel();
      resolve(false);
    };
    const timer = plan.clock.setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve(true);
    }, ms, { background: true });
    signal?.addEventListener('abort', onAbort, { once: true });
  });
  const worker = async (): Promise<void> => {
    while (started < plan.count && stoppedBy === 'done') {
      started += 1;
      if (!(await pause(Math.floor(plan.random() * spreadMs)))) {
        stoppedBy = 'aborted';
        return;
      }
      if (stoppedBy !== 'done') return;
      let ok = false;
      try {
        ok = await plan.open();
      } catch {
        ok = false;
      }
      if (ok) opened += 1;
      else {
        failed += 1;
        if (stoppedBy === 'done') stoppedBy = 'failure';
      }
    }
  };
  const workers = Math.max(1, Math.min(concurrency, plan.count));
  if (plan.count > 0) await Promise.all(Array.from({ length: workers }, worker));
  return { opened, failed, stoppedBy };
}

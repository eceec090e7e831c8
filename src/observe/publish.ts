import type { EventEmitter } from 'node:events';
import type { Channel } from 'node:diagnostics_channel';
import { describeError } from '../errors.ts';
import { CHANNELS, type PoolEventMap } from './events.ts';
import type { Logger } from './logger.ts';
import type { CallStartEvent } from './types.ts';

/**
 * The one way out for every pool event: pg.Pool's five and ours. Each is emitted on the Pool
 * (a throwing listener is logged, never thrown into the pool's bookkeeping) and, when it has
 * one, published on its diagnostics channel. Callers ask `listening(event)` before building a
 * payload, so an event nobody listens to costs no allocation.
 */

/** Every event the pool emits. */
export type PoolEvent = keyof PoolEventMap;

/** pg.Pool's own events, whose client arguments are the pool's connections until presented. */
export type PgPoolEvent = 'connect' | 'acquire' | 'release' | 'remove' | 'error';

/** What `publish` takes: our events' typed payload; pg.Pool's events, the connection itself. */
export type EventArgs<K extends PoolEvent> = K extends PgPoolEvent ? unknown[] : PoolEventMap[K];

export interface Publisher {
  /** Publishes `event` on its channel (if any, with the first argument) and emits it on the pool. */
  publish<K extends PoolEvent>(event: K, ...args: EventArgs<K>): void;
  /** Someone listens to `event` (a pool listener or a channel subscriber): build its payload. */
  listening(event: PoolEvent): boolean;
}

const channels: Partial<Record<PoolEvent, Channel>> = CHANNELS;

let lastCallId = 0;

/**
 * A call started: its `callId` (increasing within the process, so pools never share one) for
 * its `callEnd`, and `callStart` published when someone listens.
 */
export function callStarted(out: Publisher, kind: CallStartEvent['kind']): number {
  lastCallId += 1;
  const callId = lastCallId;
  if (out.listening('callStart')) out.publish('callStart', { callId, kind });
  return callId;
}

/**
 * The publisher of `pool`. `present` replaces, in place, arguments the application must see
 * differently (a connection becomes the Session it was lent as), and runs only when the pool
 * has a listener.
 */
export function publisher(pool: EventEmitter, present: (args: unknown[]) => void, logger: Logger): Publisher {
  return {
    publish(event, ...args) {
      const channel = channels[event];
      if (channel !== undefined && channel.hasSubscribers) channel.publish(args[0]);
      if (pool.listenerCount(event) === 0) return;
      present(args);
      try {
        pool.emit(event, ...args);
      } catch (err) {
        logger.error({ event, error: describeError(err) }, 'pg-resilient: an event listener threw');
      }
    },
    listening: (event) => channels[event]?.hasSubscribers === true || pool.listenerCount(event) > 0,
  };
}

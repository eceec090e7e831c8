// A TCP proxy on 127.0.0.1 that injects network faults between a pg client and a real server.
//
// Faults are real socket behaviour (RST, FIN, refused connects, silent drops, latency), so the
// errors a client sees are the ones the kernel and Node produce, not simulations of them.
import { once } from 'node:events';
import * as net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

export type FaultMode = 'pass' | 'delay' | 'refuse' | 'blackhole';

export interface FaultProxyTarget {
  host: string;
  port: number;
}

export interface FaultProxy {
  readonly host: string;
  readonly port: number;
  readonly mode: FaultMode;
  readonly delayMs: number;
  readonly target: FaultProxyTarget;
  /** Connections open now (client side or server side still open). */
  readonly connectionCount: number;
  /** Connections accepted since start. */
  readonly totalConnections: number;
  /** Forward normally (no latency); re-listens on the same port after refuse(). */
  pass(): Promise<void>;
  /** Close the listener: new connects get ECONNREFUSED. Existing connections are untouched. */
  refuse(): Promise<void>;
  /** Abort every open connection with a TCP RST on both sides. */
  resetAll(): void;
  /** End every open connection with a FIN on both sides. */
  closeAll(): void;
  /**
   * Partition: accept but never forward; existing connections silently drop data both ways.
   * Takes effect synchronously; the promise only covers re-listening after refuse().
   */
  blackhole(): Promise<void>;
  /** Forward with `ms` of added latency per chunk and direction (0 = pass()). */
  delay(ms: number): Promise<void>;
  /** New connections go to another server (e.g. simulating a VIP moving after failover). */
  retarget(target: FaultProxyTarget): void;
  close(): Promise<void>;
}

interface Direction {
  from: net.Socket;
  to: net.Socket;
  queue: { due: number; chunk: Buffer }[];
  lastDue: number;
  timer: NodeJS.Timeout | undefined;
}

interface Conn {
  client: net.Socket;
  upstream: net.Socket | undefined;
  blackholed: boolean;
  dirs: Direction[];
  clientClosed: boolean;
  upstreamClosed: boolean;
}

export async function startFaultProxy(target: FaultProxyTarget): Promise<FaultProxy> {
  const host = '127.0.0.1';
  let currentTarget: FaultProxyTarget = { ...target };
  let mode: FaultMode = 'pass';
  let delayMs = 0;
  let total = 0;
  let closed = false;
  const conns = new Set<Conn>();
  let server: net.Server | undefined;
  let port = 0;

  const clearQueues = (c: Conn): void => {
    for (const d of c.dirs) {
      if (d.timer !== undefined) clearTimeout(d.timer);
      d.timer = undefined;
      d.queue.length = 0;
    }
  };

  const maybeForget = (c: Conn): void => {
    if (c.clientClosed && (c.upstream === undefined || c.upstreamClosed)) {
      clearQueues(c);
      conns.delete(c);
    }
  };

  const flush = (c: Conn, d: Direction): void => {
    d.timer = undefined;
    if (c.blackholed) {
      d.queue.length = 0;
      return;
    }
    const now = Date.now();
    while (d.queue.length > 0 && d.queue[0]!.due <= now) {
      const item = d.queue.shift()!;
      if (!d.to.destroyed) d.to.write(item.chunk);
    }
    const next = d.queue[0];
    if (next !== undefined) d.timer = setTimeout(() => flush(c, d), Math.max(0, next.due - now));
  };

  const forward = (c: Conn, d: Direction, chunk: Buffer): void => {
    if (c.blackholed || d.to.destroyed) return;
    if (delayMs === 0 && d.queue.length === 0) {
      if (!d.to.write(chunk)) {
        // Backpressure keeps memory bounded when the receiver is slow.
        d.from.pause();
        d.to.once('drain', () => d.from.resume());
      }
      return;
    }
    // Chunks keep their order even when the delay changes between them.
    const due = Math.max(Date.now() + delayMs, d.lastDue);
    d.lastDue = due;
    d.queue.push({ due, chunk });
    if (d.timer === undefined) d.timer = setTimeout(() => flush(c, d), Math.max(0, due - Date.now()));
  };

  const abort = (s: net.Socket | undefined, withReset: boolean): void => {
    if (s === undefined || s.destroyed) return;
    try {
      if (withReset) s.resetAndDestroy();
      else s.destroy();
    } catch {
      s.destroy();
    }
  };

  const onConnection = (client: net.Socket): void => {
    total++;
    client.setNoDelay(true);
    const c: Conn = {
      client,
      upstream: undefined,
      blackholed: mode === 'blackhole',
      dirs: [],
      clientClosed: false,
      upstreamClosed: false,
    };
    conns.add(c);
    client.on('error', (err: NodeJS.ErrnoException) => {
      if (!c.blackholed) abort(c.upstream, err.code === 'ECONNRESET');
    });
    client.on('close', () => {
      c.clientClosed = true;
      // Even when blackholed, drop the server side once the client is gone so backends do not pile
      // up on the test server; the client no longer observes anything on this connection anyway.
      if (c.upstream !== undefined && !c.upstream.destroyed) c.upstream.destroy();
      maybeForget(c);
    });

    if (c.blackholed) {
      // A partition: the connect succeeds (as it would to a load balancer) but nothing ever comes
      // back; reading and discarding keeps the client's writes from blocking, like lost packets.
      client.on('data', () => {});
      return;
    }

    const upstream = net.connect({ host: currentTarget.host, port: currentTarget.port });
    upstream.setNoDelay(true);
    c.upstream = upstream;
    const up: Direction = { from: client, to: upstream, queue: [], lastDue: 0, timer: undefined };
    const down: Direction = { from: upstream, to: client, queue: [], lastDue: 0, timer: undefined };
    c.dirs = [up, down];
    client.on('data', (chunk: Buffer) => forward(c, up, chunk));
    upstream.on('data', (chunk: Buffer) => forward(c, down, chunk));
    client.on('end', () => {
      if (!c.blackholed) upstream.end();
    });
    upstream.on('end', () => {
      if (!c.blackholed) client.end();
    });
    upstream.on('error', (err: NodeJS.ErrnoException) => {
      // A refused upstream connect is reported to the client as a plain close, as a TCP load
      // balancer would; a reset is passed on as a reset.
      if (!c.blackholed) abort(client, err.code === 'ECONNRESET');
    });
    upstream.on('close', () => {
      c.upstreamClosed = true;
      if (!c.blackholed && !client.destroyed) client.destroySoon();
      maybeForget(c);
    });
  };

  const listen = async (): Promise<void> => {
    if (server !== undefined) return;
    // Right after a close() the port may still be held for a moment by the old handle.
    for (let attempt = 0; ; attempt++) {
      const s = net.createServer({ noDelay: true }, onConnection);
      s.listen({ host, port, exclusive: true });
      try {
        await Promise.race([
          once(s, 'listening'),
          once(s, 'error').then(([e]) => Promise.reject(e as Error)),
        ]);
        s.on('error', () => {});
        server = s;
        const addr = s.address();
        if (addr !== null && typeof addr !== 'string') port = addr.port;
        return;
      } catch (e) {
        s.close();
        if ((e as NodeJS.ErrnoException).code !== 'EADDRINUSE' || attempt >= 50) throw e;
        await sleep(20);
      }
    }
  };

  const unlisten = async (): Promise<void> => {
    const s = server;
    if (s === undefined) return;
    server = undefined;
    // close() stops accepting at once; its callback would wait for all connections, so wait only
    // until the listening handle itself is released.
    s.close();
    await sleep(0);
  };

  await listen();

  const proxy: FaultProxy = {
    host,
    get port() {
      return port;
    },
    get mode() {
      return mode;
    },
    get delayMs() {
      return delayMs;
    },
    get target() {
      return { ...currentTarget };
    },
    get connectionCount() {
      return conns.size;
    },
    get totalConnections() {
      return total;
    },
    async pass() {
      if (closed) throw new Error('proxy closed');
      mode = 'pass';
      delayMs = 0;
      await listen();
    },
    async refuse() {
      if (closed) return;
      mode = 'refuse';
      await unlisten();
    },
    resetAll() {
      for (const c of conns) {
        clearQueues(c);
        abort(c.client, true);
        abort(c.upstream, true);
      }
    },
    closeAll() {
      for (const c of conns) {
        clearQueues(c);
        if (!c.client.destroyed) c.client.destroySoon();
        if (c.upstream !== undefined && !c.upstream.destroyed) c.upstream.destroySoon();
      }
    },
    async blackhole() {
      if (closed) return;
      mode = 'blackhole';
      for (const c of conns) {
        c.blackholed = true;
        clearQueues(c);
        // Keep reading so nothing backs up, but the forwarders now discard every chunk; resume in
        // case backpressure had paused a side.
        c.client.resume();
        c.upstream?.resume();
      }
      // Blackholing also has to work after refuse(): connects then succeed and hang.
      await listen();
    },
    async delay(ms: number) {
      if (closed) throw new Error('proxy closed');
      delayMs = Math.max(0, ms);
      mode = delayMs > 0 ? 'delay' : 'pass';
      await listen();
    },
    retarget(t: FaultProxyTarget) {
      currentTarget = { ...t };
    },
    async close() {
      if (closed) return;
      closed = true;
      await unlisten();
      for (const c of conns) {
        clearQueues(c);
        abort(c.client, false);
        abort(c.upstream, false);
      }
      conns.clear();
    },
  };
  return proxy;
}

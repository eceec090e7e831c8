import net from 'node:net';
import type { HostTarget } from './hosts.ts';

// An SSLRequest: the one message a PostgreSQL postmaster answers (with 'S' or 'N') before any
// authentication, so it proves the server answers end to end without logging in.
const SSL_REQUEST = Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]);

/**
 * Does the server at `target` answer within `timeoutMs`? Used when a statement has been in
 * flight for long: a dead or partitioned server (packets dropped, no RST) leaves sockets that
 * hang for minutes, and TCP keepalive does not apply while data is unacknowledged. A slow
 * statement on a live server passes this check and keeps running.
 */
export function probeServer(target: HostTarget, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    let settled = false;
    const socket = net.connect({ host: target.host, port: target.port });
    const finish = (alive: boolean): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(alive);
    };
    const timer = setTimeout(() => finish(false), timeoutMs);
    timer.unref();
    socket.once('connect', () => socket.write(SSL_REQUEST));
    socket.once('data', (chunk: Buffer) => finish(chunk[0] === 0x53 || chunk[0] === 0x4e));
    socket.once('error', () => finish(false));
    socket.once('close', () => finish(false));
  });
}

/** The error a connection is closed with when its server stopped answering. */
export function unresponsiveError(target: HostTarget, afterMs: number): Error {
  return Object.assign(
    new Error(`pg-resilient: ${target.host}:${target.port} stopped answering (liveness probe failed after ${afterMs} ms); connection closed`),
    { code: 'ETIMEDOUT' },
  );
}

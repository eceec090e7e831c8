// A TCP proxy on 127.0.0.1 that reads the PostgreSQL protocol in both directions, so a test can
// lose a connection at an exact point of a conversation:
// - 'drop': when the client sends a statement whose text matches, the connection is reset
//   before that statement reaches the server (what was sent before it is answered first);
// - 'lose-answer': the statement reaches the server and runs to its end (its ReadyForQuery),
//   then the connection is reset without a byte of its answer reaching the client;
// - 'hold': the statement and what follows it wait `holdMs` before they go on to the server.
// A statement is a simple Query ('Q'), or a Bind ('B') of the extended protocol, named by the text
// its Parse gave the statement (a named statement is parsed once per connection and bound many
// times); its answer is everything the server sends up to the ReadyForQuery of its Sync. Each
// trap fires once.
import * as net from 'node:net';

export type TrapAction = 'drop' | 'lose-answer' | 'hold';

export interface ProtocolProxy {
  readonly port: number;
  /** Arms a trap for the next statement (on any connection) whose text matches. */
  arm(match: RegExp, action: TrapAction, holdMs?: number): void;
  /** Traps fired so far. */
  fired(): number;
  /** Statement texts seen from clients, in order (for assertions and debugging). */
  readonly statements: string[];
  /** Resets every open connection (both sides), as a crash of the network path would. */
  resetAll(): void;
  close(): Promise<void>;
}

interface Trap {
  match: RegExp;
  action: TrapAction;
  holdMs: number;
}

export async function startProtocolProxy(target: { host: string; port: number }): Promise<ProtocolProxy> {
  const traps: Trap[] = [];
  const statements: string[] = [];
  let fired = 0;
  const killers = new Set<() => void>();

  const server = net.createServer({ noDelay: true }, (client) => {
    const upstream = net.connect(target);
    upstream.setNoDelay(true);
    let up = Buffer.alloc(0);
    let down = Buffer.alloc(0);
    let startupDone = false;
    let syncsSent = 0; // frontend sync points forwarded (each gets one ReadyForQuery)
    let answered = 0; // ReadyForQuery messages forwarded
    let dropAt: number | undefined; // kill once `answered` reaches it
    let loseGroup: number | undefined; // swallow this group's answer, then kill
    let dead = false;
    const parsed = new Map<string, string>(); // statement name ('' unnamed) → text
    const kill = (): void => {
      if (dead) return;
      dead = true;
      killers.delete(kill);
      client.resetAndDestroy();
      upstream.resetAndDestroy();
    };
    killers.add(kill);
    // Answers that must reach the client first: handed to the kernel, then the reset (a reset
    // discards what is still unsent). Nothing else is forwarded meanwhile.
    let dying = false;
    const killAfter = (data: Buffer[]): void => {
      dying = true;
      if (data.length === 0) return kill();
      client.write(Buffer.concat(data), () => kill());
    };

    let holding = false;
    let skipMatch = false; // the held statement: matched already
    const fromClient = (chunk: Buffer): void => {
      if (dead || dying) return;
      up = Buffer.concat([up, chunk]);
      if (holding) return;
      const out: Buffer[] = [];
      while (!dead && dropAt === undefined) {
        if (!startupDone) {
          if (up.length < 4) break;
          const len = up.readInt32BE(0);
          if (up.length < len) break;
          const code = up.readInt32BE(4);
          out.push(up.subarray(0, len));
          up = up.subarray(len);
          // SSLRequest / GSSENCRequest are followed by the real startup message.
          if (code !== 80877103 && code !== 80877104) startupDone = true;
          continue;
        }
        if (up.length < 5) break;
        const type = String.fromCharCode(up[0]!);
        const len = up.readInt32BE(1);
        if (up.length < len + 1) break;
        const msg = up.subarray(0, len + 1);
        const text = statementText(type, msg, parsed);
        if (text !== undefined && skipMatch) {
          skipMatch = false;
          statements.push(text);
        } else if (text !== undefined) {
          statements.push(text);
          const i = traps.findIndex((t) => t.match.test(text));
          if (i >= 0) {
            const trap = traps.splice(i, 1)[0]!;
            fired += 1;
            if (trap.action === 'drop') {
              dropAt = syncsSent;
              break;
            }
            if (trap.action === 'hold') {
              // This message and everything after it wait; the rest of this chunk went on.
              holding = true;
              setTimeout(() => {
                holding = false;
                fromClient(Buffer.alloc(0));
              }, trap.holdMs);
              // Not looked at again when it goes on.
              statements.pop();
              skipMatch = true;
              break;
            }
            loseGroup = syncsSent;
          }
        }
        if (type === 'Q' || type === 'S') syncsSent += 1;
        out.push(msg);
        up = up.subarray(len + 1);
      }
      if (out.length > 0) upstream.write(Buffer.concat(out));
      if (dropAt !== undefined && answered >= dropAt) kill();
    };
    client.on('data', fromClient);

    upstream.on('data', (chunk: Buffer) => {
      if (dead || dying) return;
      down = Buffer.concat([down, chunk]);
      const out: Buffer[] = [];
      // Before the first ReadyForQuery the server may answer an SSLRequest with one byte.
      while (!dead && !dying) {
        if (down.length >= 1 && !startupDone && (down[0] === 0x4e || down[0] === 0x53) && down.length === 1) {
          out.push(down);
          down = Buffer.alloc(0);
          break;
        }
        if (down.length < 5) break;
        const type = String.fromCharCode(down[0]!);
        const len = down.readInt32BE(1);
        if (down.length < len + 1) break;
        const msg = down.subarray(0, len + 1);
        down = down.subarray(len + 1);
        // The startup's ReadyForQuery answers no statement.
        const counted = type === 'Z' && syncsSent > 0;
        if (loseGroup !== undefined && answered === loseGroup) {
          if (counted) {
            killAfter(out.splice(0)); // the statement ran to its end; its answer never arrives
            return;
          }
          continue;
        }
        out.push(msg);
        if (counted) answered += 1;
        if (dropAt !== undefined && answered >= dropAt) {
          killAfter(out.splice(0));
          return;
        }
      }
      if (out.length > 0 && !dead && !dying) client.write(Buffer.concat(out));
    });

    for (const s of [client, upstream]) {
      s.on('error', () => undefined);
      s.on('close', () => {
        killers.delete(kill);
        client.destroy();
        upstream.destroy();
      });
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  return {
    port: (server.address() as net.AddressInfo).port,
    arm(match, action, holdMs = 0) {
      traps.push({ match, action, holdMs });
    },
    fired: () => fired,
    statements,
    resetAll() {
      for (const k of [...killers]) k();
    },
    close: () => new Promise<void>((resolve) => {
      for (const k of [...killers]) k();
      server.close(() => resolve());
    }),
  };
}

/**
 * The SQL text a simple Query runs, or a Bind runs (the text its statement was parsed with);
 * undefined for every other message. Parse messages are remembered in `parsed`.
 */
function statementText(type: string, msg: Buffer, parsed: Map<string, string>): string | undefined {
  if (type === 'Q') return msg.toString('utf8', 5, msg.indexOf(0, 5));
  if (type === 'P') {
    const nameEnd = msg.indexOf(0, 5);
    parsed.set(msg.toString('utf8', 5, nameEnd), msg.toString('utf8', nameEnd + 1, msg.indexOf(0, nameEnd + 1)));
    return undefined;
  }
  if (type === 'B') {
    const portalEnd = msg.indexOf(0, 5);
    return parsed.get(msg.toString('utf8', portalEnd + 1, msg.indexOf(0, portalEnd + 1))) ?? '';
  }
  return undefined;
}

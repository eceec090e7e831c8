// PgBouncer's admin console (the virtual database "pgbouncer" on 6432), spoken over PostgreSQL's
// wire protocol with Node builtins only, so PAUSE/RESUME/SHOW work the same for both backends and
// need no psql on the machine. Enough of the protocol for the console: startup, md5 or cleartext
// password, simple queries, rows as objects. The credentials are the test cluster's own
// (cluster/pgbouncer-userlist.txt; `postgres` is in admin_users).
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { HOST, LOCAL_DIR, PGBOUNCER_PORT, fail } from './common.mjs';

const ADMIN_USER = 'postgres';
const ADMIN_PASSWORD = 'postgres';

// PgBouncer 1.18 shows no global PAUSE anywhere (SHOW STATE came later; SHOW DATABASES' `paused`
// is for `PAUSE db` only), so the driver remembers its own PAUSE until RESUME or a restart.
const PAUSE_MARK = path.join(LOCAL_DIR, 'pgbouncer-paused');

export function forgetPause() {
  fs.rmSync(PAUSE_MARK, { force: true });
}

const md5hex = (s) => crypto.createHash('md5').update(s).digest('hex');

function message(type, body) {
  const head = Buffer.alloc(5);
  head.write(type, 0, 'latin1');
  head.writeInt32BE(body.length + 4, 1);
  return Buffer.concat([head, body]);
}

const cstr = (s) => Buffer.from(`${s}\0`, 'utf8');

function startupMessage(params) {
  const body = Buffer.concat([
    Buffer.from([0, 3, 0, 0]), // protocol 3.0
    ...Object.entries(params).flatMap(([k, v]) => [cstr(k), cstr(v)]),
    Buffer.from([0]),
  ]);
  const len = Buffer.alloc(4);
  len.writeInt32BE(body.length + 4, 0);
  return Buffer.concat([len, body]);
}

/** Fields of an ErrorResponse/NoticeResponse: S severity, C code, M message. */
function errorFields(body) {
  const f = {};
  let i = 0;
  while (i < body.length && body[i] !== 0) {
    const key = String.fromCharCode(body[i]);
    const end = body.indexOf(0, i + 1);
    f[key] = body.toString('utf8', i + 1, end);
    i = end + 1;
  }
  return f;
}

/**
 * Runs `sql` (one admin command) on PgBouncer's console and resolves with its rows (objects keyed
 * by column) and command tag; rejects with the console's error (`code`, `message`) or a timeout.
 */
export function adminQuery(sql, { timeoutMs = 10_000, port = PGBOUNCER_PORT } = {}) {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host: HOST, port });
    let buf = Buffer.alloc(0);
    let columns = [];
    const rows = [];
    let command = null;
    let queryError = null;
    let sent = false;
    let settled = false;
    const done = (err, value) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (!sock.destroyed) {
        sock.end(message('X', Buffer.alloc(0)));
        sock.destroySoon?.();
      }
      if (err) reject(err);
      else resolve(value);
    };
    const timer = setTimeout(() => {
      sock.destroy();
      done(new Error(`PgBouncer admin console: no answer to "${sql}" within ${timeoutMs} ms`));
    }, timeoutMs);
    sock.on('error', (e) => done(new Error(`PgBouncer admin console on ${HOST}:${port}: ${e.message}`)));
    sock.on('close', () => done(new Error(`PgBouncer admin console closed the connection during "${sql}"`)));
    sock.on('connect', () => {
      sock.write(startupMessage({ user: ADMIN_USER, database: 'pgbouncer', application_name: 'pg-resilient-cluster' }));
    });
    sock.on('data', (chunk) => {
      buf = Buffer.concat([buf, chunk]);
      while (buf.length >= 5) {
        const type = String.fromCharCode(buf[0]);
        const len = buf.readInt32BE(1);
        if (buf.length < len + 1) return;
        const body = buf.subarray(5, len + 1);
        buf = buf.subarray(len + 1);
        if (type === 'R') {
          const code = body.readInt32BE(0);
          if (code === 0) continue;
          if (code === 3) sock.write(message('p', cstr(ADMIN_PASSWORD)));
          else if (code === 5) {
            const salt = body.subarray(4, 8);
            const inner = md5hex(ADMIN_PASSWORD + ADMIN_USER);
            const outer = crypto.createHash('md5').update(inner).update(salt).digest('hex');
            sock.write(message('p', cstr(`md5${outer}`)));
          } else return done(new Error(`PgBouncer admin console asks for authentication method ${code}, which this driver does not speak`));
        } else if (type === 'E') {
          const f = errorFields(body);
          const err = Object.assign(new Error(`PgBouncer admin console: ${f.M ?? 'error'} (${f.C ?? '?'})`), { code: f.C, pgMessage: f.M });
          if (!sent) return done(err); // login refused
          queryError = err;
        } else if (type === 'T') {
          const n = body.readInt16BE(0);
          columns = [];
          let i = 2;
          for (let c = 0; c < n; c++) {
            const end = body.indexOf(0, i);
            columns.push(body.toString('utf8', i, end));
            i = end + 1 + 18; // table oid, column, type oid, size, modifier, format
          }
        } else if (type === 'D') {
          const n = body.readInt16BE(0);
          const row = {};
          let i = 2;
          for (let c = 0; c < n; c++) {
            const l = body.readInt32BE(i);
            i += 4;
            row[columns[c] ?? `c${c}`] = l < 0 ? null : body.toString('utf8', i, i + l);
            if (l > 0) i += l;
          }
          rows.push(row);
        } else if (type === 'C') {
          command = body.toString('utf8', 0, body.length - 1);
        } else if (type === 'Z') {
          if (!sent) {
            sent = true;
            sock.write(message('Q', cstr(sql)));
          } else if (queryError) return done(queryError);
          else return done(null, { command, rows });
        }
        // 'S' ParameterStatus, 'K' BackendKeyData, 'N' notices: nothing to do
      }
    });
  });
}

/** PgBouncer's view for `status`: whether it answers, paused or not, its pool for the cluster's database. */
export async function pgbouncerStatus() {
  try {
    const [dbs, pools] = [await adminQuery('SHOW DATABASES', { timeoutMs: 3000 }), await adminQuery('SHOW POOLS', { timeoutMs: 3000 })];
    const db = dbs.rows.find((r) => r.name === 'postgres');
    const pool = pools.rows.find((r) => r.database === 'postgres');
    const num = (v) => (v === undefined || v === null ? null : Number(v));
    return {
      port: PGBOUNCER_PORT,
      answering: true,
      // PAUSE of the whole pooler by this driver, or of the database alone
      paused: fs.existsSync(PAUSE_MARK) || db?.paused === '1',
      pool: pool
        ? { clActive: num(pool.cl_active), clWaiting: num(pool.cl_waiting), svActive: num(pool.sv_active), svIdle: num(pool.sv_idle), svUsed: num(pool.sv_used), svLogin: num(pool.sv_login) }
        : null,
    };
  } catch (e) {
    return { port: PGBOUNCER_PORT, answering: false, error: e.message };
  }
}

/** PAUSE: PgBouncer waits for server connections to be released, then holds every new query. */
export async function pausePgbouncer() {
  const r = await adminQuery('PAUSE', { timeoutMs: 60_000 });
  fs.mkdirSync(LOCAL_DIR, { recursive: true });
  fs.writeFileSync(PAUSE_MARK, `${new Date().toISOString()}\n`);
  return r.command;
}

/** RESUME after PAUSE. False when PgBouncer was not paused (nothing to do). */
export async function resumePgbouncer() {
  try {
    await adminQuery('RESUME', { timeoutMs: 10_000 });
    forgetPause();
    return true;
  } catch (e) {
    if (/not paused|not suspended/i.test(e.pgMessage ?? '')) {
      forgetPause();
      return false;
    }
    return fail(e.message);
  }
}

import type { ConnectGate } from '../policy/connect-gate.ts';
import type { PreparedStatements } from '../prepared/prepared-statements.ts';
import type { ConnectionHooks } from './connection-factory.ts';
import type { Failures } from './failures.ts';
import type { Housekeeping } from './housekeeping.ts';
import type { PoolShared } from './shared.ts';

/**
 * What the bags' connection factories report to, and what they are given: failures go to the
 * failure path, a new connection is counted, watched and announced (pg.Pool's `connect`). Made
 * once per pool from parts built before the bags, so nothing here reaches back into them.
 */
export function connectionHooks(shared: PoolShared, failures: Failures, housekeeping: Housekeeping, prepared: PreparedStatements, connectGate: ConnectGate): ConnectionHooks {
  return {
    prepared,
    onBroken: (client, meta, err) => failures.connectionBroken(client, meta, err),
    onStatementFailure: (client, _meta, err) => failures.statementFailed(client, err),
    onRoleChange: (_client, meta, role) => failures.roleChanged(meta, role),
    onConnectFailure: (target, err) => failures.connectFailed(target, err),
    onConnected: (client, meta, timing) => {
      shared.clients.add(client);
      housekeeping.start();
      if (meta.server !== undefined) shared.topology.notePrimary(meta.server);
      if (shared.listening('connectionCreated')) shared.publish('connectionCreated', { host: meta.server ?? meta.target, ...timing });
      shared.publish('connect', client);
    },
    present: (client) => shared.present(client),
    onSetupFailed: (client, stage, err) => {
      // pg.Pool runs verify on a client it has counted and lent, so its events say so.
      if (stage !== 'verify') return;
      shared.publish('connect', client);
      shared.publish('acquire', client);
      shared.publish('release', err, client);
      shared.publish('remove', client);
    },
    connectGate,
  };
}

import type { TimelineSwitch } from '../transactions/timeline.ts';
import type { HostTarget } from './hosts.ts';

/** A source of role knowledge other than our own connections (Patroni's REST API). */
export interface Discovery {
  /** Members as last seen; undefined when discovery has not answered yet. */
  snapshot(): {
    leader: HostTarget | undefined;
    standbys: Array<HostTarget & { lagBytes: number | undefined }>;
    /** Standbys named synchronous (Patroni's sync_standby). */
    syncStandbys?: readonly HostTarget[];
  } | undefined;
  /** Ask for a refresh now (coalesced); resolves when it is done or failed. */
  refresh(reason: string): Promise<void>;
  /** Resolves once a first answer arrived, or after `timeoutMs`. */
  ready(timeoutMs: number): Promise<void>;
  /** The cluster's timeline switches (Patroni's `/history`); undefined when no endpoint answered. */
  history?(): Promise<readonly TimelineSwitch[] | undefined>;
  close(): void;
}

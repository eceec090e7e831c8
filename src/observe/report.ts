import type { Clock } from '../policy/clock.ts';
import type { FailoverEvent, FailoverReport, HostRef } from './types.ts';

interface Episode {
  startedAt: number;
  startedAtWall: number;
  first: { category: string; code: string | undefined };
  failures: Map<string, number>;
  retries: number;
  failedCalls: number;
  standbyReads: number;
  standbyMaxStalenessMs: number | undefined;
  lostCommits: number | undefined;
}

/**
 * Collects failures, retries and give-ups between a failover's first failure and its
 * completion, then hands out one report. Failures before detection belong to the episode too:
 * the first one is usually a terminated session, the detection its consequence.
 */
export class FailoverReporter {
  readonly #clock: Clock;
  readonly #emit: (report: FailoverReport) => void;
  #episode: Episode | undefined;
  #last: FailoverReport | undefined;
  #recent: { category: string; code: string | undefined; at: number; wall: number } | undefined;

  constructor(clock: Clock, emit: (report: FailoverReport) => void) {
    this.#clock = clock;
    this.#emit = emit;
  }

  get last(): FailoverReport | undefined {
    return this.#last;
  }

  noteFailure(category: string, code: string | undefined): void {
    const e = this.#episode;
    if (e === undefined) {
      // Usually the first symptom comes just before the failover is detected (it triggers it).
      this.#recent = { category, code, at: this.#clock.now(), wall: Date.now() };
      return;
    }
    e.failures.set(category, (e.failures.get(category) ?? 0) + 1);
  }

  noteRetry(): void {
    if (this.#episode !== undefined) this.#episode.retries += 1;
  }

  noteGiveUp(): void {
    if (this.#episode !== undefined) this.#episode.failedCalls += 1;
  }

  /** A read served by a standby while the primary was unavailable, with its staleness bound (ms). */
  noteStandbyRead(stalenessMs: number | undefined): void {
    const e = this.#episode;
    if (e === undefined) return;
    e.standbyReads += 1;
    if (stalenessMs !== undefined) e.standbyMaxStalenessMs = Math.max(e.standbyMaxStalenessMs ?? 0, stalenessMs);
  }

  /** A comparison of acknowledged commits with the new primary (lostCommits): `count` of them it lacks. */
  noteLostCommits(count: number): void {
    const e = this.#episode;
    if (e !== undefined) e.lostCommits = (e.lostCommits ?? 0) + count;
  }

  onFailover(event: FailoverEvent): void {
    if (event.phase === 'detected') {
      const recent = this.#recent;
      const e = this.#open(event.trigger, undefined);
      if (recent !== undefined && this.#clock.now() - recent.at < 10_000) {
        e.startedAt = recent.at;
        e.startedAtWall = recent.wall;
        e.first = { category: recent.category, code: recent.code };
        e.failures.set(recent.category, 1);
      }
      this.#recent = undefined;
      return;
    }
    const e = this.#episode;
    if (e === undefined) return;
    this.#episode = undefined;
    const recoveryMs = Math.round(this.#clock.now() - e.startedAt);
    const failuresByCategory = Object.fromEntries(e.failures);
    const where = (h: HostRef | undefined): string => (h === undefined ? 'unknown' : `${h.host}:${h.port}`);
    const moved = event.oldPrimary !== undefined && event.newPrimary !== undefined
      && (event.oldPrimary.host !== event.newPrimary.host || event.oldPrimary.port !== event.newPrimary.port);
    const total = [...e.failures.values()].reduce((a, b) => a + b, 0);
    const summary = `pg-resilient: ${moved ? `primary moved from ${where(event.oldPrimary)} to ${where(event.newPrimary)}` : `primary ${where(event.newPrimary ?? event.oldPrimary)} was unavailable`}; `
      + `first failure ${e.first.code ?? e.first.category} (${e.first.category}); queries succeeded again after ${(recoveryMs / 1000).toFixed(1)} s; `
      + `${total} failure${total === 1 ? '' : 's'} seen, ${e.retries} retr${e.retries === 1 ? 'y' : 'ies'}, ${e.failedCalls} call${e.failedCalls === 1 ? '' : 's'} failed for the application`
      + (e.standbyReads === 0 ? '' : `; ${e.standbyReads} read${e.standbyReads === 1 ? '' : 's'} served by standbys${e.standbyMaxStalenessMs === undefined ? '' : ` (staleness ≤ ${(e.standbyMaxStalenessMs / 1000).toFixed(1)} s)`}`)
      + (e.lostCommits === undefined ? '' : `; ${e.lostCommits} acknowledged commit${e.lostCommits === 1 ? '' : 's'} lost by the failover (see the lostCommits event)`);
    const report: FailoverReport = Object.freeze({
      generation: event.generation,
      firstFailureAt: new Date(e.startedAtWall).toISOString(),
      firstFailure: e.first,
      oldPrimary: event.oldPrimary,
      newPrimary: event.newPrimary,
      recoveryMs,
      failuresByCategory,
      retries: e.retries,
      failedCalls: e.failedCalls,
      standbyReads: e.standbyReads,
      standbyReadMaxStalenessMs: e.standbyMaxStalenessMs,
      ...(e.lostCommits === undefined ? {} : { lostCommits: e.lostCommits }),
      summary,
    });
    this.#last = report;
    this.#emit(report);
  }

  #open(category: string, code: string | undefined): Episode {
    if (this.#episode === undefined) {
      this.#episode = {
        startedAt: this.#clock.now(),
        startedAtWall: Date.now(),
        first: { category, code },
        failures: new Map(),
        retries: 0,
        failedCalls: 0,
        standbyReads: 0,
        standbyMaxStalenessMs: undefined,
        lostCommits: undefined,
      };
    }
    return this.#episode;
  }
}

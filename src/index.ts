/**
 * pg-resilient: a drop-in `pg.Pool` that rides out PostgreSQL restarts, Patroni switchovers,
 * failovers and partitions. This file is the whole public API.
 */
export { Pool } from './pool/pool.ts';
export type { ResilienceQueryOptions, ResilientQueryConfig } from './pool/query-args.ts';
export type { PoolOptions } from './options.ts';
export type { PatroniOptions } from './topology/patroni-options.ts';
export type { RetryOptions, BreakerOptions } from './policy/policy-options.ts';
export type { TransactionReplayOptions } from './transactions/replay-options.ts';
export type { Durability, LostCommitsOptions } from './transactions/durability-options.ts';
export type { PublicOptions } from './pool/public-options.ts';
export { idempotent } from './policy/idempotency.ts';
export { readYourWrites } from './topology/failover-reads.ts';
export { retryable, isRerunnable } from './transactions/retryable.ts';
export type { RetryableOptions } from './transactions/retryable.ts';
export { sessionEffect } from './classify/session-state.ts';
export type { SessionEffect } from './classify/session-state.ts';
export { classify } from './classify/classify.ts';
export type { Classification } from './classify/classify.ts';
export type { FailureCategory, FailureTraits } from './classify/tables.ts';
export { retrySafety, namedStatementRecovery } from './classify/retry-safety.ts';
export { isRecognisedRead } from './classify/read-rule.ts';
export type { FailurePhase, RetrySafetyDecision, RetrySafetyInput, NamedStatementInput } from './classify/retry-safety.ts';
export {
  ErrorCodes,
  PgResilientError,
  TransactionOutcomeUnknownError,
  InvalidOptionError,
  isPgResilientError,
} from './errors.ts';
export type { ErrorCode, PgResilientErrorDetails } from './errors.ts';
export type { TransactionOptions } from './transactions/pool-transaction.ts';
export type { Clock, Random } from './policy/clock.ts';
export type { Logger } from './observe/logger.ts';
export { CHANNELS as diagnosticsChannels } from './observe/events.ts';
export type { PoolEventMap } from './observe/events.ts';
export type { RetryEvent, GiveUpEvent } from './policy/retry.ts';
export type {
  FailoverEvent,
  ConnectionRetiredEvent,
  BreakerEvent,
  HostRef,
  StandbyReadEvent,
} from './observe/types.ts';
export type { BreakerState } from './policy/breaker.ts';
export type { FailoverReport } from './observe/types.ts';
export type { CallEndEvent, CallStartEvent, CommitResolvedEvent, ConnectionCreatedEvent, LostCommit, LostCommitsEvent, TransactionReplayEvent } from './observe/types.ts';
export { instrumentPoolOtel, DB_DURATION_BUCKETS_SECONDS, FAILOVER_BUCKETS_SECONDS, ATTEMPTS_ATTRIBUTE_CAP } from './observe/otel.ts';
export type { InstrumentPoolOtelOptions, PoolOtelInstrumentation, OtelMeterProviderLike, OtelMeterLike, OtelPoolLike, OtelAttributes, OtelObservableResultLike, InstrumentOptions as OtelInstrumentOptions, ObservableLike as OtelObservableLike, ObservableCallback as OtelObservableCallback } from './observe/otel.ts';
export { instrumentPool, RECOVERY_BUCKETS_SECONDS } from './observe/metrics.ts';
export type { InstrumentPoolOptions, PoolInstrumentation, PromClientLike, PromRegistryLike, PromCounterLike, PromGaugeLike, PromHistogramLike, MetricConfig as PromMetricConfig, Labels as PromLabels } from './observe/metrics.ts';
export type { TargetSessionAttrs } from './topology/hosts.ts';
export { parseCluster } from './topology/patroni.ts';
export type { ClusterView, PatroniMember } from './topology/patroni.ts';
export type { HostTarget } from './topology/hosts.ts';

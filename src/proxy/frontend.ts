/**
 * A frontend at runtime: its plan (admission, routes, peek), its counters and
 * its logger. Counters survive reloads: a reload builds a new runtime around
 * the same stats object.
 */
import type { FrontendPlan } from '../config/compile.js';
import type { Logger } from '../log.js';
import type { ResourceWatch } from './resources.js';
import { SourceLimits } from './source-limits.js';

export type RefusedReason = 'denied' | 'over_limit' | 'over_source_limit' | 'untrusted_proxy' | 'bad_proxy_header' | 'handshake_timeout' | 'no_route';

export const REFUSED_REASONS: readonly RefusedReason[] = ['denied', 'over_limit', 'over_source_limit', 'untrusted_proxy', 'bad_proxy_header', 'handshake_timeout', 'no_route'];

export interface FrontendStats {
  active: number;
  total: number;
  refused: Record<RefusedReason, number>;
  bytesIn: number;
  bytesOut: number;
  failovers: number;
  noBackend: number;
  connectFailed: number;
  /** accept() failures (EMFILE, ENFILE, ...): connections the kernel had and l4lb could not take. */
  acceptErrors: number;
}

export function newStats(): FrontendStats {
  return {
    active: 0,
    total: 0,
    refused: Object.fromEntries(REFUSED_REASONS.map((r) => [r, 0])) as Record<RefusedReason, number>,
    bytesIn: 0,
    bytesOut: 0,
    failovers: 0,
    noBackend: 0,
    connectFailed: 0,
    acceptErrors: 0,
  };
}

export class FrontendRuntime {
  readonly name: string;

  constructor(
    readonly plan: FrontendPlan,
    readonly stats: FrontendStats,
    /** Bound to { frontend }. */
    readonly log: Logger,
    /** The process's watch on its own descriptors. */
    readonly resources: ResourceWatch,
    /** limits.per_source, or null. */
    readonly sourceLimits: SourceLimits | null,
  ) {
    this.name = plan.name;
  }

  static build(plan: FrontendPlan, prev: FrontendRuntime | undefined, log: Logger, resources: ResourceWatch): FrontendRuntime {
    const want = plan.config.limits.per_source;
    // Open connections keep counting across a reload while the limits stay the same.
    const same = prev?.sourceLimits && want && JSON.stringify(prev.sourceLimits.opts) === JSON.stringify(want);
    const limits = want === null ? null : same ? prev!.sourceLimits : new SourceLimits(want);
    return new FrontendRuntime(plan, prev?.stats ?? newStats(), log.child({ frontend: plan.name }), resources, limits);
  }
}

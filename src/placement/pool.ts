/**
 * A pool at runtime: its router (ring), backend states, table, health policy
 * and placement, built from a PoolPlan once per load or reload. A reload
 * builds a new PoolRuntime and carries over the backends that still exist
 * (their state and counters) and the table; open connections keep the
 * runtime (and lease) they started with.
 */
import type { PoolPlan } from '../config/compile.js';
import { ActiveHealth, type CheckObserver } from '../health/checker.js';
import { BackendRuntime, PassiveHealth, type HealthPolicy, type TransitionListener } from '../health/state.js';
import type { Logger } from '../log.js';
import type { Dialer } from '../proxy/dialer.js';
import type { BackendView } from '../routing/balancer.js';
import type { PersistenceTable } from '../routing/persistence.js';
import { Router, type RoutingStats } from '../routing/router.js';
import { LocalPlacement, type Placement } from './lease.js';

export class PoolRuntime {
  readonly name: string;
  readonly router: Router;
  /** Where outcomes of real traffic go: passive counting, or the active checker. */
  readonly health: HealthPolicy;
  private readonly checker: ActiveHealth | null;
  readonly view: BackendView;
  /** This process's own placement (what the primary answers workers with). */
  readonly local: LocalPlacement;
  /** How sessions place: locally, through the store, or (in a worker) through the primary. */
  placement: Placement;
  private readonly byName: ReadonlyMap<string, BackendRuntime>;

  constructor(
    readonly plan: PoolPlan,
    /** Indexed like router.names. */
    readonly backends: readonly BackendRuntime[],
    /** null with affinity.key none, or in a worker (the primary holds the table). */
    readonly table: PersistenceTable | null,
    /** Persistence hits and misses: carried over reloads. */
    stats: RoutingStats,
    readonly log: Logger,
    dialer: Dialer,
    observe?: CheckObserver,
  ) {
    this.name = plan.name;
    const c = plan.config;
    this.byName = new Map(backends.map((b) => [b.name, b]));
    this.router = new Router(plan.backends, c.balance.algorithm, c.balance.vnodes, { boundedLoad: c.balance.bounded_load, onRecovery: c.persistence.on_recovery }, stats);
    const transition: TransitionListener = (b, to, reason) =>
      to === 'down' ? log.warn({ backend: b.name, reason }, 'backend down') : log.info({ backend: b.name, reason }, 'backend up');
    const hc = c.health_check;
    this.checker = hc ? new ActiveHealth(backends, hc, dialer, transition, observe) : null;
    this.health = this.checker ?? new PassiveHealth(c.passive, transition);
    const bs = backends;
    this.view = {
      acceptsNew: (i) => {
        const b = bs[i]!;
        return b.health === 'up' && b.mode === 'normal' && b.plan.weight > 0;
      },
      keeps: (i) => {
        const b = bs[i]!;
        return b.health === 'up' && b.mode !== 'disabled';
      },
      hasRoom: (i) => {
        const b = bs[i]!;
        return b.plan.maxConnections === 0 || b.active < b.plan.maxConnections;
      },
      active: (i) => bs[i]!.active,
      lastResort: (i) => {
        const b = bs[i]!;
        return b.health === 'up' && b.mode === 'draining' && b.plan.weight > 0;
      },
    };
    this.local = new LocalPlacement(this);
    this.placement = this.local;
  }

  backendByName(name: string): BackendRuntime | undefined {
    return this.byName.get(name);
  }

  /** Is this backend eligible to keep an existing entry? */
  keeps(name: string): boolean {
    const i = this.router.index.get(name);
    return i !== undefined && this.view.keeps(i);
  }

  /** Start active checks (if configured). */
  start(): void {
    this.checker?.start();
  }

  /** Stop active checks; open connections are not affected. */
  stop(): void {
    this.checker?.stop();
  }

  /** Build a runtime for `plan`, reusing what `prev` (the same pool's last runtime) holds. */
  static build(
    plan: PoolPlan,
    prev: PoolRuntime | undefined,
    log: Logger,
    dialer: Dialer,
    table: PersistenceTable | null,
    observe?: CheckObserver,
  ): PoolRuntime {
    const old = new Map(prev?.backends.map((b) => [b.name, b]));
    const backends = plan.backends.map((bp) => {
      const b = old.get(bp.name);
      if (!b) return new BackendRuntime(bp);
      old.delete(bp.name);
      b.plan = bp;
      return b;
    });
    for (const gone of old.values()) gone.dispose();
    const bindings = plan.implicitOf !== null ? { frontend: plan.implicitOf, pool: plan.name } : { pool: plan.name };
    return new PoolRuntime(plan, backends, table, prev?.router.stats ?? { hits: 0, misses: 0 }, log.child(bindings), dialer, observe);
  }
}

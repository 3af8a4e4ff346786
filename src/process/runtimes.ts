/**
 * The runtimes of one plan: a PoolRuntime per pool and a FrontendRuntime per
 * frontend, rebuilt on every reload around what survives (backends, tables,
 * counters). Every process role has one; roles differ in how pools place
 * (locally, through the store, through the primary) and whether they run
 * health checks.
 */
import type { Plan, PoolPlan } from '../config/compile.js';
import type { CheckObserver } from '../health/checker.js';
import type { Logger } from '../log.js';
import type { Placement } from '../placement/lease.js';
import { PoolRuntime } from '../placement/pool.js';
import type { Dialer } from '../proxy/dialer.js';
import { FrontendRuntime } from '../proxy/frontend.js';
import type { ResourceWatch } from '../proxy/resources.js';
import type { PersistenceTable } from '../routing/persistence.js';

export interface RuntimeDeps {
  readonly log: Logger;
  readonly dialer: Dialer;
  /** The pool's table; null in a worker (the primary holds it). */
  table(p: PoolPlan): PersistenceTable | null;
  /** How the pool's sessions place, when not by its own LocalPlacement. */
  placement(p: PoolRuntime): Placement | null;
  observe?: (pool: string) => CheckObserver;
  readonly resources: ResourceWatch;
}

export class Runtimes {
  private pools = new Map<string, PoolRuntime>();
  private frontends = new Map<string, FrontendRuntime>();

  constructor(private readonly deps: RuntimeDeps) {}

  pool(name: string): PoolRuntime | undefined {
    return this.pools.get(name);
  }

  frontend(name: string): FrontendRuntime | undefined {
    return this.frontends.get(name);
  }

  allPools(): IterableIterator<PoolRuntime> {
    return this.pools.values();
  }

  allFrontends(): IterableIterator<FrontendRuntime> {
    return this.frontends.values();
  }

  /** Runtimes for `plan`, carrying over the pools' backends and counters and the frontends' counters. */
  apply(plan: Plan): void {
    const d = this.deps;
    const pools = new Map<string, PoolRuntime>();
    for (const pp of plan.pools.values()) {
      const p = PoolRuntime.build(pp, this.pools.get(pp.name), d.log, d.dialer, d.table(pp), d.observe?.(pp.name));
      p.placement = d.placement(p) ?? p.local;
      pools.set(pp.name, p);
    }
    for (const [name, p] of this.pools) {
      p.stop();
      if (!pools.has(name)) for (const b of p.backends) b.dispose();
    }
    const frontends = new Map<string, FrontendRuntime>();
    for (const fp of plan.frontends) frontends.set(fp.name, FrontendRuntime.build(fp, this.frontends.get(fp.name), d.log, d.resources));
    this.pools = pools;
    this.frontends = frontends;
  }

  /** Start the active health checks of every pool (once per pool, whatever the number of frontends). */
  startChecks(): void {
    for (const p of this.pools.values()) p.start();
  }

  stopChecks(): void {
    for (const p of this.pools.values()) p.stop();
  }

  dispose(): void {
    for (const p of this.pools.values()) for (const b of p.backends) b.dispose();
  }
}

/**
 * The routing decision, shared by live traffic and `l4lb explain`: an
 * eligible persistence entry wins; otherwise the balancer places the key.
 * No I/O here: the caller passes the key, its hash and a BackendView.
 */
import type { Balancer, BackendView, PoolMember } from './balancer.js';
import { createBalancer } from './balancer.js';
import { hashKey } from './hash.js';
import type { PersistenceTable } from './persistence.js';
import type { Algorithm } from '../config/schema.js';

/** How the backend was chosen. */
export type Via =
  | 'table' //      the key's persistence entry
  | 'placed' //     a new key (or one whose backend is no longer eligible), by the balancer
  | 'overflow' //   the entry's backend is at max_connections: elsewhere for this connection only
  | 'failover' //   a previous attempt of this connection failed
  | 'last_resort'; // no backend takes new keys but a draining one: placed there rather than refused

export interface Decision {
  readonly backend: number;
  readonly via: Via;
  /** Ring point index (consistent_hash), else -1. */
  readonly point: number;
  /** Whether a successful connect should (re)write the key's entry. */
  readonly write: boolean;
}

export interface RoutingPolicy {
  /** balance.bounded_load: the cap factor, or null. */
  readonly boundedLoad: number | null;
  /** persistence.on_recovery. */
  readonly onRecovery: 'stay' | 'return';
}

const DEFAULT_POLICY: RoutingPolicy = { boundedLoad: null, onRecovery: 'stay' };

export interface RoutingStats {
  hits: number;
  misses: number;
}

export class Router {
  readonly names: readonly string[];
  readonly index: ReadonlyMap<string, number>;
  readonly balancer: Balancer;
  constructor(
    readonly members: readonly PoolMember[],
    readonly algorithm: Algorithm,
    vnodes: number,
    readonly policy: RoutingPolicy = DEFAULT_POLICY,
    /** Hits and misses; a reload passes the last router's, so they keep counting. */
    readonly stats: RoutingStats = { hits: 0, misses: 0 },
  ) {
    this.names = members.map((m) => m.name);
    this.index = new Map(this.names.map((n, i) => [n, i]));
    this.balancer = createBalancer(algorithm, members, vnodes);
  }

  hash(key: string | null): number {
    return key === null ? 0 : hashKey(key);
  }

  /** The hash only when on_recovery: return will walk the ring for this hit. */
  private resolveIf(key: string | null, hash: number): number {
    return this.policy.onRecovery === 'return' && this.algorithm === 'consistent_hash' ? this.resolve(key, hash) : hash;
  }

  /** `hash` is the key's hash, or UNHASHED: then it is computed here, only if a ring walk needs it. */
  private resolve(key: string | null, hash: number): number {
    return hash === UNHASHED ? this.hash(key) : hash;
  }

  /**
   * First decision for a connection. `table` is null when affinity is none.
   * Returns null when no backend is eligible.
   */
  decide(key: string | null, hash: number, table: PersistenceTable | null, view: BackendView): Decision | null {
    // A table hit (the common case) needs no hash; it is computed at the first ring walk.
    if (key !== null && table !== null) {
      const name = table.lookup(key);
      const idx = name === undefined ? undefined : this.index.get(name);
      if (idx !== undefined && view.keeps(idx) && !(this.members[idx]!.backup && this.anyPrimary(view)) && !this.returnsHome(idx, (hash = this.resolveIf(key, hash)), view)) {
        this.stats.hits++;
        if (view.hasRoom(idx)) return { backend: idx, via: 'table', point: -1, write: false };
        const p = this.balancer.pick(this.resolve(key, hash), view, new Set([idx]));
        return p && { backend: p.backend, via: 'overflow', point: p.point, write: false };
      }
      this.stats.misses++;
    }
    hash = this.resolve(key, hash);
    const p = this.balancer.pick(hash, this.placementView(view), EMPTY) ?? (this.policy.boundedLoad !== null ? this.balancer.pick(hash, view, EMPTY) : null);
    if (p) return { backend: p.backend, via: 'placed', point: p.point, write: key !== null };
    return this.lastResort(hash, view, EMPTY, key);
  }

  /** Nothing takes new keys: a draining backend does, rather than refusing the client. */
  private lastResort(hash: number, view: BackendView, tried: ReadonlySet<number>, key: string | null): Decision | null {
    const lr = view.lastResort;
    if (lr === undefined) return null;
    const p = this.balancer.pick(hash, { ...view, acceptsNew: (i) => lr.call(view, i) }, tried);
    return p && { backend: p.backend, via: 'last_resort', point: p.point, write: key !== null };
  }

  /** on_recovery: return — the entry is away from its ring home, and the home takes new keys again. */
  private returnsHome(idx: number, hash: number, view: BackendView): boolean {
    if (this.policy.onRecovery !== 'return' || this.algorithm !== 'consistent_hash') return false;
    const home = this.balancer.pick(hash, view, EMPTY);
    return home !== null && home.backend !== idx;
  }

  /**
   * Bounded load: after placing, no eligible backend may hold more than
   * ceil(factor × open connections / eligible backends); full ones are walked past.
   */
  private placementView(view: BackendView): BackendView {
    const factor = this.policy.boundedLoad;
    if (factor === null) return view;
    let open = 0;
    let eligible = 0;
    for (let i = 0; i < this.members.length; i++) {
      if (!view.acceptsNew(i)) continue;
      eligible++;
      open += view.active(i);
    }
    if (eligible === 0) return view;
    const cap = Math.ceil((factor * (open + 1)) / eligible);
    return {
      acceptsNew: (i) => view.acceptsNew(i),
      keeps: (i) => view.keeps(i),
      hasRoom: (i) => view.hasRoom(i) && view.active(i) + 1 <= cap,
      active: (i) => view.active(i),
    };
  }

  /** The next backend after the ones in `tried` failed to connect. */
  next(key: string | null, hash: number, view: BackendView, tried: ReadonlySet<number>): Decision | null {
    hash = this.resolve(key, hash);
    const p = this.balancer.pick(hash, this.placementView(view), tried) ?? (this.policy.boundedLoad !== null ? this.balancer.pick(hash, view, tried) : null);
    if (p) return { backend: p.backend, via: 'failover', point: p.point, write: key !== null };
    return this.lastResort(hash, view, tried, key);
  }

  private anyPrimary(view: BackendView): boolean {
    return this.members.some((m, i) => !m.backup && view.acceptsNew(i) && view.hasRoom(i));
  }
}

const EMPTY: ReadonlySet<number> = new Set();

/** "Not computed yet": hashes are 0 .. 2^32-1. */
export const UNHASHED = -1;

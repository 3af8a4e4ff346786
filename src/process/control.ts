/**
 * What the admin API sees and does in a process that holds the routing state
 * (single process, or the primary of workers): status built from the
 * runtimes (plus the open sessions' bytes where this process serves them),
 * and the three verbs on pools. It knows nothing of sockets.
 */
import type { AdminAction, BackendStatus, Control, FrontendStatus, Lookup, PoolStatus, Status } from '../admin/control.js';
import { describeMatch } from '../config/compile.js';
import type { BackendRuntime } from '../health/state.js';
import { PoolRuntime } from '../placement/pool.js';
import type { ResourceWatch } from '../proxy/resources.js';
import type { PersistenceEntry } from '../routing/persistence.js';
import type { PersistenceSet } from '../store/persistence-set.js';
import type { RedisStore } from '../store/redis.js';
import { VERSION } from '../version.js';
import type { Runtimes } from './runtimes.js';
import type { Live, Serving } from './serving.js';

const started = Date.now();

/** This process's own figures. `serving`: where this process holds connections (not in the primary). */
export function ownStatus(runtimes: Runtimes, persistence: PersistenceSet | null, serving: Serving | null, resources: ResourceWatch | null): Status {
  const live: Live = serving?.live() ?? { frontends: new Map(), backends: new Map() };
  const pools = [...runtimes.allPools()].map((p): PoolStatus => {
    const t = p.table;
    return {
      name: p.name,
      implicit: p.plan.implicitOf !== null,
      persistence: { size: t?.size ?? 0, hits: p.router.stats.hits, misses: p.router.stats.misses, evictions: t?.evictions ?? 0 },
      ...storeStatus(persistence?.store(p.plan) ?? null),
      backends: p.backends.map((b) => backendStatus(b, live.backends.get(b))),
    };
  });
  const frontends = [...runtimes.allFrontends()].map((fe): FrontendStatus => {
    const st = fe.stats;
    const l = live.frontends.get(fe.name);
    const routes = fe.plan.config.routes;
    return {
      name: fe.name,
      listen: serving?.boundAddresses(fe.name) ?? [],
      pools: [...fe.plan.pools],
      ...(routes ? { routes: routes.map((r) => ({ name: r.name ?? null, match: describeMatch(r.match), pool: r.pool })) } : {}),
      active: st.active,
      total: st.total,
      refused: { ...st.refused },
      bytes_in: st.bytesIn + (l?.in ?? 0),
      bytes_out: st.bytesOut + (l?.out ?? 0),
      failovers: st.failovers,
      no_backend: st.noBackend,
      connect_failed: st.connectFailed,
      accept_errors: st.acceptErrors,
      persistence: { size: 0, hits: 0, misses: 0, evictions: 0 },
      backends: [],
    };
  });
  return withPoolViews({ version: VERSION, uptime_s: Math.round((Date.now() - started) / 1000), fd_exhaustion_episodes: resources?.episodes ?? 0, frontends, pools });
}

/**
 * The §4 view of a frontend that sends every connection to one pool: that pool's persistence, store and
 * backends (so /status reads as before for §3 configs). Applied after the workers' figures are summed.
 */
export function withPoolViews(s: Status): Status {
  const byName = new Map(s.pools.map((p) => [p.name, p]));
  const frontends = s.frontends.map((fe) => {
    const only = fe.pools.length === 1 ? byName.get(fe.pools[0]!) : undefined;
    if (!only) return fe;
    const { store, persistence, backends } = only;
    return { ...fe, persistence, ...(store ? { store } : {}), backends };
  });
  return { ...s, frontends };
}

export class PoolControl implements Control {
  constructor(
    private readonly runtimes: Runtimes,
    private readonly persistence: PersistenceSet,
    private readonly statusOf: () => Status | Promise<Status>,
    private readonly isAccepting: () => boolean,
  ) {}

  accepting(): boolean {
    return this.isAccepting();
  }

  status(): Status | Promise<Status> {
    return this.statusOf();
  }

  /** A pool by name; a frontend's name also answers for the one pool it sends every connection to. */
  private resolve(name: string): PoolRuntime | { error: string } {
    const r = this.runtimes;
    const p = r.pool(name);
    if (p) return p;
    const fe = r.frontend(name);
    if (fe && fe.plan.pool !== null) return r.pool(fe.plan.pool) ?? { error: `no pool "${name}"` };
    if (fe) return { error: `frontend "${name}" routes to several pools (${fe.plan.pools.join(', ')}): name one` };
    return { error: `no pool or frontend "${name}"` };
  }

  entries(pool: string, key?: string): Lookup<PersistenceEntry[]> {
    const p = this.resolve(pool);
    if (!(p instanceof PoolRuntime)) return { ok: false, error: p.error };
    if (key === undefined) return { ok: true, value: p.table ? [...p.table.entries()] : [] };
    const e = p.table?.get(key);
    return e ? { ok: true, value: [e] } : { ok: false, error: `no entry for key "${key}" in pool "${p.name}"` };
  }

  forget(pool: string, which: { key?: string; backend?: string }): Lookup<number> {
    const p = this.resolve(pool);
    if (!(p instanceof PoolRuntime)) return { ok: false, error: p.error };
    const t = p.table;
    const store = this.persistence.store(p.plan);
    if (which.key !== undefined) {
      store?.delete(which.key);
      return t?.delete(which.key) ? { ok: true, value: 1 } : { ok: false, error: `no entry for key "${which.key}" in pool "${p.name}"` };
    }
    if (which.backend !== undefined) {
      const name = which.backend;
      if (!p.router.index.has(name)) return { ok: false, error: `no backend "${name}" in pool "${p.name}"` };
      return { ok: true, value: t ? t.retain((b, key) => b !== name || (store?.delete(key), false)) : 0 };
    }
    if (store && t) for (const e of t.entries()) store.delete(e.key);
    return { ok: true, value: t ? t.clear() : 0 };
  }

  setMode(pool: string, backend: string, action: AdminAction): Lookup<BackendStatus> {
    const p = this.resolve(pool);
    if (!(p instanceof PoolRuntime)) return { ok: false, error: p.error };
    const b = p.backendByName(backend);
    if (!b) return { ok: false, error: `no backend "${backend}" in pool "${p.name}"` };
    b.setMode(action === 'drain' ? 'draining' : action === 'disable' ? 'disabled' : 'normal');
    return { ok: true, value: backendStatus(b, undefined) };
  }
}

function storeStatus(s: RedisStore | null): { store?: PoolStatus['store'] } {
  return s ? { store: { url: s.url, up: s.up, errors: s.errors } } : {};
}

function backendStatus(b: BackendRuntime, live: { in: number; out: number } | undefined): BackendStatus {
  return {
    name: b.name,
    address: b.plan.address.text,
    state: b.state,
    health: b.health,
    weight: b.plan.weight,
    backup: b.plan.backup,
    active: b.active,
    total: b.total,
    bytes_in: b.bytesIn + (live?.in ?? 0),
    bytes_out: b.bytesOut + (live?.out ?? 0),
    connect_failures: b.connectFailures,
  };
}

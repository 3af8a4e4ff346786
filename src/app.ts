/**
 * The composition root: Config → frontend runtimes, listeners, health
 * checks and the admin API. A reload builds new runtimes and swaps them in;
 * a stop closes listeners and lets open connections finish for up to
 * shutdown_grace.
 */
import type { AdminAction, BackendStatus, Control, FrontendStatus, Lookup, PoolStatus, Status } from './admin/control.js';
import { AdminServer } from './admin/server.js';
import { compile, describeMatch, type Plan } from './config/compile.js';
import type { Config } from './config/schema.js';
import type { BackendRuntime } from './health/state.js';
import type { Logger } from './log.js';
import type { Metrics } from './metrics/registry.js';
import type { Placement } from './placement/lease.js';
import { PoolRuntime } from './placement/pool.js';
import { netDialer, type Dialer } from './proxy/dialer.js';
import { FrontendRuntime } from './proxy/frontend.js';
import { Listener, type SessionHost } from './proxy/listener.js';
import type { Session } from './proxy/session.js';
import type { PersistenceEntry } from './routing/persistence.js';
import type { RedisStore } from './store/redis.js';
import { PersistenceSet } from './store/persistence-set.js';
import { VERSION } from './version.js';

export interface AppOptions {
  /** In a worker: how sessions of a pool place (through the primary). */
  readonly remotePlacement?: (pool: string) => Placement;
  /** In a worker: report bound sockets instead of logging them. */
  readonly onListening?: (frontend: string, address: string, port: number) => void;
  /** In the primary of workers: bind nothing (workers serve), and add the workers' figures to /status. */
  readonly primary?: { mergeStatus(own: Status): Promise<Status> };
}

export class App implements SessionHost, Control {
  readonly sessions = new Set<Session>();
  /** Loaded only with an admin listener: prom-client costs memory nobody else needs. */
  private metrics: Metrics | null = null;
  private plan: Plan;
  private frontends = new Map<string, FrontendRuntime>();
  private pools = new Map<string, PoolRuntime>();
  /** Tables, stores and snapshots; unused in a worker (the primary holds them). */
  private readonly persistence: PersistenceSet;
  private listeners: Listener[] = [];
  private admin: AdminServer | null = null;
  private stopping: Promise<void> | null = null;
  private readonly started = Date.now();

  constructor(
    private config: Config,
    readonly log: Logger,
    readonly dialer: Dialer = netDialer,
    private readonly opts: AppOptions = {},
  ) {
    this.persistence = new PersistenceSet(log);
    this.plan = compile(config);
  }

  private get isWorker(): boolean {
    return this.opts.remotePlacement !== undefined;
  }

  frontend(name: string): FrontendRuntime | undefined {
    return this.stopping ? undefined : this.frontends.get(name);
  }

  pool(name: string): PoolRuntime | undefined {
    return this.stopping ? undefined : this.pools.get(name);
  }

  /** Bind every listen address and the admin listener; throws BindError (nothing left bound) if one fails. */
  async start(): Promise<void> {
    this.build(this.plan);
    if (!this.isWorker) await this.persistence.load();
    if (!this.opts.primary) this.listeners = await this.bindAll(this.config, new Map());
    const a = this.config.admin;
    if (a && !this.isWorker) {
      const { Metrics } = require('./metrics/registry.js') as typeof import('./metrics/registry.js');
      this.metrics = new Metrics();
      this.admin = new AdminServer({ host: a.listen.host, port: a.listen.port, token: a.token }, this, this.metrics, this.log);
      try {
        await this.admin.listen();
      } catch (err) {
        await Promise.all(this.listeners.map((l) => l.close()));
        throw err;
      }
    }
    this.startChecks();
  }

  private startChecks(): void {
    this.scheduleSweep();
    if (this.isWorker) return;
    for (const p of this.pools.values()) p.start();
    this.persistence.schedule();
  }

  /** Apply a validated config. Throws BindError and keeps the running config if a new address cannot be bound. */
  async reload(next: Config): Promise<void> {
    const plan = compile(next);
    const { keep, rest } = this.matchListeners(next);
    const bound = this.opts.primary ? [...keep.keys()] : await this.bindAll(next, keep);
    for (const [l, fe] of keep) l.frontend = fe; // only now: a failed bind keeps the running config whole
    for (const l of rest) void l.close();
    for (const p of this.pools.values()) p.stop();
    const oldPools = this.pools;
    this.build(plan);
    for (const [name, p] of oldPools) if (!this.pools.has(name)) for (const b of p.backends) b.dispose();
    if (JSON.stringify(next.admin ?? null) !== JSON.stringify(this.config.admin ?? null)) {
      this.log.warn('admin settings changed: they take effect at the next restart');
    }
    this.listeners = bound;
    this.config = next;
    this.plan = plan;
    this.startChecks();
  }

  /**
   * The running listeners the next config asks for again, however it writes them: a fixed address
   * matches a listener bound there (also one the old config wrote as port 0); a port-0 address keeps
   * its frontend's port-0 listener on that host. Each listener is kept at most once.
   */
  private matchListeners(next: Config): { keep: Map<Listener, string>; rest: Listener[] } {
    const free = new Set(this.listeners);
    const keep = new Map<Listener, string>();
    const take = (pred: (l: Listener) => boolean, frontend: string): boolean => {
      for (const l of free) {
        if (!pred(l)) continue;
        free.delete(l);
        keep.set(l, frontend);
        return true;
      }
      return false;
    };
    const zero: { fe: string; host: string }[] = [];
    for (const fe of next.frontends) {
      for (const a of fe.listen) {
        if (a.port === 0) zero.push({ fe: fe.name, host: a.host });
        else take((l) => l.address.host === a.host && l.port === a.port, fe.name);
      }
    }
    for (const z of zero) take((l) => l.address.port === 0 && l.frontend === z.fe && l.address.host === z.host, z.fe);
    return { keep, rest: [...free] };
  }

  /** Stop accepting, wait for open connections up to shutdown_grace, then close the rest. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      await Promise.all(this.listeners.map((l) => l.close()));
      for (const p of this.pools.values()) p.stop();
      if (this.sessions.size > 0) {
        this.log.info({ open: this.sessions.size, grace_ms: this.config.shutdown_grace }, 'waiting for open connections');
        await this.drained(this.config.shutdown_grace);
        for (const s of [...this.sessions]) s.abort('shutdown');
      }
      if (this.sweeper) clearInterval(this.sweeper);
      for (const p of this.pools.values()) for (const b of p.backends) b.dispose();
      if (!this.isWorker) await this.persistence.close();
      await this.admin?.close();
    })();
    return this.stopping;
  }

  // --- Control (admin API) ---------------------------------------------

  accepting(): boolean {
    return this.stopping === null;
  }

  status(): Status | Promise<Status> {
    const own = this.ownStatus();
    return this.opts.primary ? this.opts.primary.mergeStatus(own) : own;
  }

  private ownStatus(): Status {
    const live = new Map<string, { in: number; out: number }>();
    const liveBackend = new Map<BackendRuntime, { in: number; out: number }>();
    for (const s of this.sessions) {
      const f = live.get(s.frontend) ?? { in: 0, out: 0 };
      f.in += s.bytesIn;
      f.out += s.bytesOut;
      live.set(s.frontend, f);
      const b = s.backendRuntime;
      if (b) {
        const x = liveBackend.get(b) ?? { in: 0, out: 0 };
        x.in += s.bytesIn;
        x.out += s.bytesOut;
        liveBackend.set(b, x);
      }
    }
    const pools = [...this.pools.values()].map((p): PoolStatus => {
      const t = p.table;
      return {
        name: p.name,
        implicit: p.plan.implicitOf !== null,
        persistence: { size: t?.size ?? 0, hits: p.router.stats.hits, misses: p.router.stats.misses, evictions: t?.evictions ?? 0 },
        ...storeStatus(this.persistence.store(p.plan)),
        backends: p.backends.map((b) => backendStatus(b, liveBackend.get(b))),
      };
    });
    const frontends = [...this.frontends.values()].map((fe): FrontendStatus => {
      const st = fe.stats;
      const l = live.get(fe.name);
      return {
        name: fe.name,
        listen: this.boundAddresses(fe.name),
        pools: [...fe.plan.pools],
        ...(fe.plan.config.routes ? { routes: fe.plan.config.routes.map((r) => ({ name: r.name ?? null, match: describeMatch(r.match), pool: r.pool })) } : {}),
        active: st.active,
        total: st.total,
        refused: { ...st.refused },
        bytes_in: st.bytesIn + (l?.in ?? 0),
        bytes_out: st.bytesOut + (l?.out ?? 0),
        failovers: st.failovers,
        no_backend: st.noBackend,
        connect_failed: st.connectFailed,
        persistence: { size: 0, hits: 0, misses: 0, evictions: 0 },
        backends: [],
      };
    });
    return withPoolViews({ version: VERSION, uptime_s: Math.round((Date.now() - this.started) / 1000), frontends, pools });
  }

  /** A pool by name; a frontend's name also answers for the one pool it sends every connection to. */
  private resolvePool(name: string): PoolRuntime | { error: string } {
    const p = this.pools.get(name);
    if (p) return p;
    const fe = this.frontends.get(name);
    if (fe && fe.plan.pool !== null) return this.pools.get(fe.plan.pool) ?? { error: `no pool "${name}"` };
    if (fe) return { error: `frontend "${name}" routes to several pools (${fe.plan.pools.join(', ')}): name one` };
    return { error: `no pool or frontend "${name}"` };
  }

  entries(poolName: string, key?: string): Lookup<PersistenceEntry[]> {
    const p = this.resolvePool(poolName);
    if (!(p instanceof PoolRuntime)) return { ok: false, error: p.error };
    if (key === undefined) return { ok: true, value: p.table ? [...p.table.entries()] : [] };
    const e = p.table?.get(key);
    return e ? { ok: true, value: [e] } : { ok: false, error: `no entry for key "${key}" in pool "${p.name}"` };
  }

  forget(poolName: string, which: { key?: string; backend?: string }): Lookup<number> {
    const p = this.resolvePool(poolName);
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

  setMode(poolName: string, backend: string, action: AdminAction): Lookup<BackendStatus> {
    const p = this.resolvePool(poolName);
    if (!(p instanceof PoolRuntime)) return { ok: false, error: p.error };
    const b = p.backendByName(backend);
    if (!b) return { ok: false, error: `no backend "${backend}" in pool "${p.name}"` };
    b.setMode(action === 'drain' ? 'draining' : action === 'disable' ? 'disabled' : 'normal');
    return { ok: true, value: backendStatus(b, undefined) };
  }

  /** Bound addresses of a frontend (the real port for :0). */
  boundAddresses(frontend: string): string[] {
    const out: string[] = [];
    for (const l of this.listeners) {
      if (l.frontend !== frontend) continue;
      const h = l.address.host;
      out.push(h.includes(':') ? `[${h}]:${l.port}` : `${h}:${l.port}`);
    }
    return out;
  }

  // --- internals ----------------------------------------------------------

  /** Runtimes for `plan`, carrying over the pools' backends, tables and counters and the frontends' counters. */
  private build(plan: Plan): void {
    if (!this.isWorker) this.persistence.apply(plan);
    const pools = new Map<string, PoolRuntime>();
    for (const pp of plan.pools.values()) {
      const p = PoolRuntime.build(pp, this.pools.get(pp.name), this.log, this.dialer, this.isWorker ? null : this.persistence.table(pp), (b, seconds, ok) =>
        this.metrics?.checkDuration.observe({ pool: pp.name, backend: b.name, result: ok ? 'pass' : 'fail' }, seconds),
      );
      if (this.opts.remotePlacement) p.placement = this.opts.remotePlacement(pp.name);
      const store = this.isWorker ? null : this.persistence.store(pp);
      if (store && p.table) {
        const { StorePlacement } = require('./store/redis.js') as typeof import('./store/redis.js');
        p.placement = new StorePlacement(p.local, p.table, store, (name) => p.keeps(name));
      }
      pools.set(pp.name, p);
    }
    const frontends = new Map<string, FrontendRuntime>();
    for (const fp of plan.frontends) frontends.set(fp.name, FrontendRuntime.build(fp, this.frontends.get(fp.name), this.log));
    this.pools = pools;
    this.frontends = frontends;
  }

  /** Bind what `config` asks for beyond `kept` (listener → the frontend it will serve). */
  private async bindAll(config: Config, kept: ReadonlyMap<Listener, string>): Promise<Listener[]> {
    const out = [...kept.keys()];
    const fresh: Listener[] = [];
    try {
      for (const fe of config.frontends) {
        const mine = out.filter((l) => kept.get(l) === fe.name);
        for (const a of fe.listen) {
          // already kept: the same fixed address, or a port-0 listener of this frontend on this host
          const kept = mine.find((l) => l.address.host === a.host && (a.port === 0 ? l.address.port === 0 : l.port === a.port));
          if (kept) {
            mine.splice(mine.indexOf(kept), 1);
            continue;
          }
          const l = new Listener(a, fe.name, this);
          await l.listen();
          fresh.push(l);
          out.push(l);
          if (this.opts.onListening) this.opts.onListening(fe.name, a.host, l.port);
          else this.log.info({ frontend: fe.name, address: a.host, port: l.port }, 'listening');
        }
      }
    } catch (err) {
      await Promise.all(fresh.map((l) => l.close()));
      throw err;
    }
    return out;
  }

  private whenEmpty: (() => void) | null = null;
  private sweeper: NodeJS.Timeout | null = null;

  /**
   * Idle timeouts: one timer for every connection, ticking at a quarter of the shortest timeouts.idle
   * (between 50 ms and 1 s), instead of a timer per socket re-armed on every chunk. A pair closes between
   * idle and idle + 2 ticks after its last byte; never before.
   */
  private scheduleSweep(): void {
    if (this.opts.primary) return; // workers hold the connections
    const idle = Math.min(...[...this.plan.pools.values()].map((p) => p.idleMs).filter((ms) => ms > 0));
    const tick = Number.isFinite(idle) ? Math.min(1000, Math.max(50, Math.floor(idle / 4))) : 1000;
    if (this.sweeper) clearInterval(this.sweeper);
    this.sweeper = setInterval(() => this.sweep(), tick);
    this.sweeper.unref();
  }

  private sweep(): void {
    const now = performance.now();
    for (const s of this.sessions) s.sweep(now);
  }

  sessionEnded(s: Session): void {
    this.sessions.delete(s);
    if (this.sessions.size === 0) this.whenEmpty?.();
  }

  /** Resolves when the last open session ends, or after graceMs. */
  private drained(graceMs: number): Promise<void> {
    return new Promise((resolve) => {
      const finish = () => {
        clearTimeout(timer);
        this.whenEmpty = null;
        resolve();
      };
      const timer = setTimeout(finish, graceMs);
      this.whenEmpty = finish;
    });
  }
}

function storeStatus(s: RedisStore | null): { store?: PoolStatus['store'] } {
  return s ? { store: { url: s.url, up: s.up, errors: s.errors } } : {};
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
